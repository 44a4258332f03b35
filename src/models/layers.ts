/**
 * Layers as pure functions over a parameter tree. Each layer has a spec
 * function (its leaves, with roles and neuron axes) and an apply function
 * that reads its leaves by path prefix. Initialisation draws from a fork of
 * the model's stream labelled by the leaf's path, so adding a layer never
 * changes another layer's initial weights.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  batchMatmul,
  biasAdd,
  conv2d,
  gelu,
  layerNorm,
  linear,
  mergeHeads,
  mul,
  patchify,
  randomNormal,
  randomUniform,
  softmax,
  ShapeError,
  transpose,
  type Dim,
  type LeafSpec,
  type Params,
  type Rng,
  type Tensor,
} from '../core/index.js';
import { fastSplitHeads } from '../core/kernels.js';
import type { Tap } from './model.js';

/** A spec entry before {@link paramSpec} freezes it. */
export type LeafEntry = readonly [string, Omit<LeafSpec, 'dtype'>];

/** How a leaf starts: its path decides the random stream. */
export type Init = (r: Rng, shape: readonly number[]) => tf.Tensor;

/**
 * Glorot/Xavier uniform on (fan-in, fan-out) of a kernel whose last axis is the neuron axis.
 * @example
 * ```ts
 * const w = layers.glorot(rng(0), [784, 10]); // uniform in ±√(6 / (784 + 10))
 * ```
 */
export const glorot: Init = (r, shape) => {
  const fanOut = shape[shape.length - 1]!;
  const fanIn = shape.slice(0, -1).reduce((p, d) => p * d, 1);
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  return randomUniform(r, shape, -limit, limit);
};
/**
 * He normal for kernels followed by ReLU.
 * @example
 * ```ts
 * const f = layers.he(rng(0), [3, 3, 1, 8]); // normal, std √(2 / 9)
 * ```
 */
export const he: Init = (r, shape) => randomNormal(r, shape, Math.sqrt(2 / shape.slice(0, -1).reduce((p, d) => p * d, 1)));
/**
 * Zeros (biases, LayerNorm shift).
 * @example
 * ```ts
 * const b = layers.zeros(rng(0), [10]);
 * ```
 */
export const zeros: Init = (_r, shape) => tf.zeros([...shape]);
/**
 * Ones (LayerNorm scale).
 * @example
 * ```ts
 * const scale = layers.ones(rng(0), [64]);
 * ```
 */
export const ones: Init = (_r, shape) => tf.ones([...shape]);
/**
 * Small normal draws (ViT tokens and position embeddings).
 * @example
 * ```ts
 * const pos = layers.smallNormal(rng(0), [17, 64]); // std 0.02
 * ```
 */
export const smallNormal: Init = (r, shape) => randomNormal(r, shape, 0.02);

/** One leaf: its spec and how it starts. */
export interface Leaf {
  readonly path: string;
  readonly spec: Omit<LeafSpec, 'dtype'>;
  readonly init: Init;
}

/**
 * A dense layer `[in, out]`: kernel (neuron axis 1) and bias.
 * @example
 * ```ts
 * const head = layers.denseLeaves('head', 64, 10, 'head'); // head.kernel [64, 10], head.bias [10]
 * ```
 */
export function denseLeaves(prefix: string, din: number, dout: number, role: 'kernel' | 'head' = 'kernel', init: Init = glorot): Leaf[] {
  return [
    { path: `${prefix}.kernel`, spec: { shape: [din, dout], role, neuronAxis: 1 }, init },
    { path: `${prefix}.bias`, spec: { shape: [dout], role: role === 'head' ? 'head' : 'bias', neuronAxis: 0 }, init: zeros },
  ];
}

/**
 * A conv layer `[kh, kw, cin, cout]`: filter (neuron axis 3, the output channel) and bias.
 * @example
 * ```ts
 * const c = layers.convLeaves('conv1', 3, 1, 8); // conv1.kernel [3, 3, 1, 8], conv1.bias [8]
 * ```
 */
export function convLeaves(prefix: string, k: number, cin: number, cout: number): Leaf[] {
  return [
    { path: `${prefix}.kernel`, spec: { shape: [k, k, cin, cout], role: 'kernel', neuronAxis: 3 }, init: he },
    { path: `${prefix}.bias`, spec: { shape: [cout], role: 'bias', neuronAxis: 0 }, init: zeros },
  ];
}

/**
 * LayerNorm scale and shift, role `norm`.
 * @example
 * ```ts
 * const n = layers.layerNormLeaves('norm', 64); // norm.scale [64], norm.shift [64]
 * ```
 */
export function layerNormLeaves(prefix: string, d: number): Leaf[] {
  return [
    { path: `${prefix}.scale`, spec: { shape: [d], role: 'norm', neuronAxis: 0 }, init: ones },
    { path: `${prefix}.shift`, spec: { shape: [d], role: 'norm', neuronAxis: 0 }, init: zeros },
  ];
}

/**
 * Multi-head self-attention with a fused q/k/v kernel `[d, 3d]` and an output projection.
 * @example
 * ```ts
 * const a = layers.attentionLeaves('blocks.0.attn', 64); // qkv [64, 192] and proj [64, 64], with biases
 * ```
 */
export function attentionLeaves(prefix: string, d: number): Leaf[] {
  return [...denseLeaves(`${prefix}.qkv`, d, 3 * d), ...denseLeaves(`${prefix}.proj`, d, d)];
}

/**
 * The transformer MLP: `d → hidden → d` with GELU.
 * @example
 * ```ts
 * const m = layers.mlpBlockLeaves('blocks.0.mlp', 64, 128); // fc1 [64, 128], fc2 [128, 64], with biases
 * ```
 */
export function mlpBlockLeaves(prefix: string, d: number, hidden: number): Leaf[] {
  return [...denseLeaves(`${prefix}.fc1`, d, hidden), ...denseLeaves(`${prefix}.fc2`, hidden, d)];
}

/**
 * A pre-norm transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
 * @example
 * ```ts
 * const b = layers.blockLeaves('blocks.0', 64, 128); // norm1, attn, norm2, mlp
 * ```
 */
export function blockLeaves(prefix: string, d: number, hidden: number): Leaf[] {
  return [
    ...layerNormLeaves(`${prefix}.norm1`, d),
    ...attentionLeaves(`${prefix}.attn`, d),
    ...layerNormLeaves(`${prefix}.norm2`, d),
    ...mlpBlockLeaves(`${prefix}.mlp`, d, hidden),
  ];
}

/**
 * Initial values of leaves, each from the fork of `r` named by its path.
 * @example
 * ```ts
 * const params = tree(layers.initLeaves(layers.denseLeaves('fc', 784, 10), rng(0)));
 * ```
 */
export function initLeaves(leaves: readonly Leaf[], r: Rng): [string, tf.Tensor][] {
  return leaves.map((l) => [l.path, l.init(r.fork(l.path), l.spec.shape)]);
}

// ---------------------------------------------------------------------------
// Apply functions. Leaves are read by path; shapes were checked against the
// spec when the parameters entered the model, so the casts below only name
// what is already known.

type T<S extends readonly Dim[]> = Tensor<S>;

/**
 * Reads a leaf, with a clear error when a tree lacks it.
 * @example
 * ```ts
 * const w = layers.leaf<readonly [number, number]>(params, 'fc.kernel'); // throws if the tree lacks it
 * ```
 */
export function leaf<S extends readonly Dim[]>(p: Params, path: string): T<S> {
  const t = p[path];
  if (t === undefined) throw new Error(`missing parameter '${path}'`);
  return t as T<S>;
}

/**
 * `x · kernel + bias` over any leading dims.
 * @example
 * ```ts
 * const y = layers.dense(params, 'fc', x); // x · fc.kernel + fc.bias
 * ```
 */
export function dense<L extends readonly Dim[]>(p: Params, prefix: string, x: T<readonly [...L, number]>, tap?: Tap): T<[...L, number]> {
  tap?.({ path: `${prefix}.kernel`, input: x });
  return biasAdd(linear(x, leaf<readonly [number, number]>(p, `${prefix}.kernel`)), leaf<readonly [number]>(p, `${prefix}.bias`));
}

/**
 * Stride-1 'same' convolution plus bias.
 * @example
 * ```ts
 * const y = layers.conv(params, 'conv1', images); // [B, 28, 28, 1] → [B, 28, 28, 8]
 * ```
 */
export function conv(p: Params, prefix: string, x: T<readonly [number, number, number, number]>, tap?: Tap): T<[number, number, number, number]> {
  if (tap) {
    const [kh, kw] = leaf<readonly [number, number, number, number]>(p, `${prefix}.kernel`).shape as unknown as [number, number];
    tap({ path: `${prefix}.kernel`, input: x, window: { size: [kh, kw], strides: [1, 1], padding: 'same', depthwise: false } });
  }
  return biasAdd(conv2d(x, leaf<readonly [number, number, number, number]>(p, `${prefix}.kernel`)), leaf<readonly [number]>(p, `${prefix}.bias`));
}

/**
 * LayerNorm over the last axis.
 * @example
 * ```ts
 * const y = layers.norm(params, 'blocks.0.norm1', tokens);
 * ```
 */
export function norm<L extends readonly Dim[]>(p: Params, prefix: string, x: T<readonly [...L, number]>): T<[...L, number]> {
  return layerNorm(x, leaf<readonly [number]>(p, `${prefix}.scale`), leaf<readonly [number]>(p, `${prefix}.shift`));
}

/**
 * Inverted dropout: in training mode zeroes each entry with probability
 * `rate` and scales the rest by `1 / (1 − rate)`; otherwise returns `x`.
 * The mask is drawn on the host from `r`, so a seed reproduces it on any backend.
 * @example
 * ```ts
 * const y = layers.dropout(x, 0.1, true, rng(0).fork('dropout')); // x unchanged when training is false
 * ```
 */
export function dropout<S extends readonly Dim[]>(x: T<S>, rate: number, training: boolean, r: Rng | undefined): T<S> {
  if (!training || rate === 0) return x;
  if (r === undefined) throw new Error('dropout: training with dropout needs an rng in the apply options');
  return tf.tidy(() => {
    const keep = tf.cast(tf.greaterEqual(randomUniform(r, x.shape), rate), 'float32');
    return tf.mul(x, tf.mul(keep, 1 / (1 - rate)));
  }) as T<S>;
}

/**
 * Multi-head self-attention over `[B, T, D]`.
 * @example
 * ```ts
 * const y = layers.attention(params, 'blocks.0.attn', tokens, 4); // tokens: [B, T, 64], 4 heads
 * ```
 */
export function attention(p: Params, prefix: string, x: T<readonly [number, number, number]>, heads: number, tap?: Tap): T<[number, number, number]> {
  const d = x.shape[2]!;
  return tf.tidy(() => {
    const qkv = dense(p, `${prefix}.qkv`, x, tap);
    // [B, T, 3D] → three [B, H, T, D/H], in one pass (splitHeads of each third, the same floats).
    if (!Number.isInteger(heads) || heads < 1 || d % heads !== 0) throw new ShapeError(`splitHeads: argument heads: ${heads} heads do not divide width D=${d}`);
    const [q, k, v] = fastSplitHeads(qkv, heads, 3) as [T<[number, number, number, number]>, T<[number, number, number, number]>, T<[number, number, number, number]>];
    const scores = mul(batchMatmul(q, transpose(k, [0, 1, 3, 2])), 1 / Math.sqrt(d / heads));
    const out = mergeHeads(batchMatmul(softmax(scores), v));
    return dense(p, `${prefix}.proj`, out as T<readonly [number, number, number]>, tap) as T<[number, number, number]>;
  });
}

/**
 * The transformer MLP with GELU.
 * @example
 * ```ts
 * const y = layers.mlpBlock(params, 'blocks.0.mlp', tokens);
 * ```
 */
export function mlpBlock(p: Params, prefix: string, x: T<readonly [number, number, number]>, tap?: Tap): T<[number, number, number]> {
  return dense(p, `${prefix}.fc2`, gelu(dense(p, `${prefix}.fc1`, x, tap)), tap);
}

/**
 * A pre-norm transformer block.
 * @example
 * ```ts
 * const y = layers.block(params, 'blocks.0', tokens, 4); // [B, T, D] → [B, T, D]
 * ```
 */
export function block(p: Params, prefix: string, x: T<readonly [number, number, number]>, heads: number, tap?: Tap): T<[number, number, number]> {
  return tf.tidy(() => {
    const h = tf.add(x, attention(p, `${prefix}.attn`, norm(p, `${prefix}.norm1`, x), heads, tap)) as T<[number, number, number]>;
    return tf.add(h, mlpBlock(p, `${prefix}.mlp`, norm(p, `${prefix}.norm2`, h), tap)) as T<[number, number, number]>;
  });
}

/**
 * Patch embedding: non-overlapping `patch×patch` patches, then a dense projection (a stride-`patch` convolution).
 * @example
 * ```ts
 * const tokens = layers.patchEmbed(params, 'embed', images, 7); // [B, 28, 28, 1] → [B, 16, D]
 * ```
 */
export function patchEmbed(p: Params, prefix: string, x: T<readonly [number, number, number, number]>, patch: number, tap?: Tap): T<[number, number, number]> {
  return dense(p, prefix, patchify(x, patch), tap);
}
