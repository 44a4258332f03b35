/**
 * A multi-layer perceptron on flattened images.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { relu, type Shape, type Tensor, ConfigError } from '../core/index.js';
import { dense, denseLeaves, dropout, he, type Leaf } from './layers.js';
import { defineModel, type Model } from './model.js';

/**
 * MLP config.
 * @category Models
 */
export interface MlpConfig<I extends Shape, H extends readonly number[], K extends number> {
  /** Per-sample input shape, e.g. `[28, 28, 1]`; it is flattened. */
  readonly input: I;
  /** Hidden widths, e.g. `[256, 256]`; the last one is the feature width. At least one. */
  readonly hidden: H;
  /** Number of classes. */
  readonly classes: K;
  /** Dropout rate after each hidden layer in training mode (default 0). */
  readonly dropout?: number;
}

type Last<H extends readonly number[]> = H extends readonly [...unknown[], infer L extends number] ? L : number;

/**
 * An MLP: flatten, then `dense → ReLU` per hidden width, then the head.
 * Leaves: `layers.<i>.kernel` `[in, out]` (neuron axis 1), `layers.<i>.bias`, `head.*`.
 * @example
 * ```ts
 * const model = mlp({ input: [28, 28, 1], hidden: [256, 256], classes: 10 });
 * const params = model.init(0);
 * const { logits } = model.apply(params, images); // images: Tensor<['B', 28, 28, 1]>
 * ```
 * @category Models
 */
export function mlp<const I extends Shape, const H extends readonly number[], const K extends number>(config: MlpConfig<I, H, K>): Model<I, Last<H>, K> {
  const { input, hidden, classes } = config;
  const rate = config.dropout ?? 0;
  if (hidden.length === 0) throw new ConfigError('mlp: hidden needs at least one width');
  const din = input.reduce<number>((p, d) => p * (d as number), 1);
  const widths = [din, ...hidden];
  const backbone: Leaf[] = hidden.flatMap((out, i) => denseLeaves(`layers.${i}`, widths[i]!, out, 'kernel', he));
  return defineModel(
    {
      name: 'mlp',
      config: { input, hidden, dropout: rate },
      input,
      features: hidden[hidden.length - 1] as Last<H>,
      backbone,
      forward: (params, x, options) => {
        let h = tf.reshape(x, [x.shape[0]!, din]) as Tensor<readonly [number, number]>;
        hidden.forEach((_, i) => {
          h = dropout(relu(dense(params, `layers.${i}`, h, options.tap)), rate, options.training ?? false, options.rng?.fork(`dropout${i}`));
        });
        return h;
      },
    },
    classes,
  );
}
