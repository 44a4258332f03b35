/**
 * A Vision Transformer.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { slice, type Divide, type ShapeErrorMessage, type Tensor, ConfigError } from '../core/index.js';
import { block, blockLeaves, denseLeaves, dropout, layerNormLeaves, leaf, norm, patchEmbed, smallNormal, type Leaf } from './layers.js';
import { defineModel, type Model } from './model.js';

/**
 * ViT config.
 * @category Models
 */
export interface VitConfig<H extends number, W extends number, C extends number, D extends number, K extends number> {
  /** Per-sample input shape `[H, W, C]`; the patch size must divide H and W. */
  readonly input: readonly [H, W, C];
  /** Patch side, e.g. 7 on 28×28 images → 16 patches. */
  readonly patch: number;
  /** Token width D: the feature width. */
  readonly width: D;
  /** Number of transformer blocks. */
  readonly depth: number;
  /** Attention heads; must divide the width. */
  readonly heads: number;
  /** Hidden width of each block's MLP (default 4 × width, as ViT). */
  readonly mlpHidden?: number;
  /** Number of classes. */
  readonly classes: K;
  /** Dropout rate on the embeddings and each block's output in training mode (default 0). */
  readonly dropout?: number;
}

type HeadsDivide<D extends number, Hd extends number> = Divide<D, Hd> extends 'indivisible'
  ? ShapeErrorMessage<`vit: ${Hd} heads do not divide width ${D}`>
  : unknown;

/**
 * A ViT: patch embedding (a dense projection of non-overlapping patches),
 * a class token, a learned position embedding, `depth` pre-norm blocks, a
 * final LayerNorm and the head. Its features are the final-norm class token.
 * Leaves: `patch.kernel` (neuron axis 1), `patch.bias`, `cls` (role
 * `token`), `pos` (role `embedding`), `blocks.<i>.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`,
 * `norm.*`, `head.*`. Heads that do not divide the width are a compile
 * error for literal configs and a run-time error otherwise.
 * @example
 * ```ts
 * const model = vit({ input: [28, 28, 1], patch: 7, width: 64, depth: 4, heads: 4, classes: 10 });
 * ```
 * @category Models
 */
export function vit<const H extends number, const W extends number, const C extends number, const D extends number, const K extends number, const Hd extends number>(
  config: VitConfig<H, W, C, D, K> & { readonly heads: Hd } & HeadsDivide<D, Hd>,
): Model<readonly [H, W, C], D, K> {
  const { input, patch, width, depth, heads, classes } = config;
  const hidden = config.mlpHidden ?? 4 * width;
  const rate = config.dropout ?? 0;
  const [ih, iw, ic] = input as readonly number[] as [number, number, number];
  if (!Number.isInteger(patch) || patch < 1 || ih % patch || iw % patch) throw new ConfigError(`vit: patch ${patch} does not divide the ${ih}×${iw} input`);
  if (!Number.isInteger(heads) || heads < 1 || width % heads) throw new ConfigError(`vit: ${heads} heads do not divide width ${width}`);
  const tokens = (ih / patch) * (iw / patch);
  const backbone: Leaf[] = [
    ...denseLeaves('patch', patch * patch * ic, width),
    { path: 'cls', spec: { shape: [1, 1, width], role: 'token', neuronAxis: 2 }, init: smallNormal },
    { path: 'pos', spec: { shape: [1, tokens + 1, width], role: 'embedding', neuronAxis: 2 }, init: smallNormal },
    ...Array.from({ length: depth }, (_, i) => blockLeaves(`blocks.${i}`, width, hidden)).flat(),
    ...layerNormLeaves('norm', width),
  ];
  type T3 = Tensor<readonly [number, number, number]>;
  return defineModel(
    {
      name: 'vit',
      config: { input, patch, width, depth, heads, mlpHidden: hidden, dropout: rate },
      input,
      features: width,
      backbone,
      forward: (params, x, options) => {
        const b = x.shape[0]!;
        const training = options.training ?? false;
        const patches = patchEmbed(params, 'patch', x as Tensor<readonly [number, number, number, number]>, patch, options.tap);
        const cls = tf.tile(leaf(params, 'cls'), [b, 1, 1]);
        let z = tf.add(tf.concat([cls, patches], 1), leaf(params, 'pos')) as T3;
        z = dropout(z, rate, training, options.rng?.fork('embed'));
        for (let i = 0; i < depth; i++) z = dropout(block(params, `blocks.${i}`, z, heads, options.tap), rate, training, options.rng?.fork(`block${i}`));
        const normed = norm(params, 'norm', z);
        return tf.reshape(slice(normed, 1, 0, 1), [b, width]);
      },
    },
    classes,
  );
}
