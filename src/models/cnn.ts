/**
 * A small convolutional network.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { avgPool2x2, relu, type Tensor, ConfigError } from '../core/index.js';
import { conv, convLeaves, dense, denseLeaves, he, type Leaf } from './layers.js';
import { defineModel, type Model } from './model.js';

/**
 * CNN config.
 * @category Models
 */
export interface CnnConfig<H extends number, W extends number, C extends number, F extends number, K extends number> {
  /** Per-sample input shape `[H, W, C]`. */
  readonly input: readonly [H, W, C];
  /** Output channels of each `3×3 conv → ReLU → 2×2 average pool` stage, e.g. `[32, 64]`. */
  readonly channels: readonly number[];
  /** Width of the dense layer after the convolutions: the feature width. */
  readonly features: F;
  /** Number of classes. */
  readonly classes: K;
}

/**
 * A CNN: per stage a 3×3 'same' convolution, ReLU and 2×2 average pooling;
 * then flatten, `dense → ReLU` to the features, and the head. Leaves:
 * `convs.<i>.kernel` `[3, 3, cin, cout]` (neuron axis 3), `convs.<i>.bias`,
 * `fc.kernel` `[flat, F]` (neuron axis 1), `fc.bias`, `head.*`.
 * Trains on wasm through the core's convolution gradients.
 * @example
 * ```ts
 * const model = cnn({ input: [28, 28, 1], channels: [32, 64], features: 128, classes: 10 });
 * ```
 * @category Models
 */
export function cnn<const H extends number, const W extends number, const C extends number, const F extends number, const K extends number>(
  config: CnnConfig<H, W, C, F, K>,
): Model<readonly [H, W, C], F, K> {
  const { input, channels, features, classes } = config;
  if (channels.length === 0) throw new ConfigError('cnn: channels needs at least one stage');
  let [h, w] = input as readonly number[] as [number, number, number];
  const cins = [input[2] as number, ...channels];
  const backbone: Leaf[] = channels.flatMap((cout, i) => convLeaves(`convs.${i}`, 3, cins[i]!, cout));
  for (let i = 0; i < channels.length; i++) {
    h = Math.floor(h / 2);
    w = Math.floor(w / 2);
  }
  if (h < 1 || w < 1) throw new ConfigError(`cnn: ${channels.length} pooling stages shrink the ${input[0]}×${input[1]} input to nothing`);
  const flat = h * w * channels[channels.length - 1]!;
  backbone.push(...denseLeaves('fc', flat, features, 'kernel', he));
  type T4 = Tensor<readonly [number, number, number, number]>;
  return defineModel(
    {
      name: 'cnn',
      config: { input, channels, features },
      input,
      features,
      backbone,
      forward: (params, x, options) => {
        let z = x as T4;
        channels.forEach((_, i) => {
          z = avgPool2x2(relu(conv(params, `convs.${i}`, z, options.tap)));
        });
        const flatZ = tf.reshape(z, [x.shape[0]!, flat]) as Tensor<readonly [number, number]>;
        return relu(dense(params, 'fc', flatZ, options.tap));
      },
    },
    classes,
  );
}
