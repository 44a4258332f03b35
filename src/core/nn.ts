/**
 * Neural-network ops on typed tensors: activations, normalisation,
 * convolution and attention-head reshapes. The convolutions run the
 * kernels of `kernels.ts`, whose gradients train on wasm.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from './errors.js';
import { fastConv2d, fastDepthwiseConv2d, fastGelu, fastLayerNorm, fastMergeHeads, fastSplitHeads, fastStridedConv2d, stockGradients } from './kernels.js';
import {
  ANY_LEADING,
  checkArgs,
  typed,
  type Dim,
  type Divide,
  type Shape,
  type ShapeErrorMessage,
  type Tensor,
} from './shape.js';

/**
 * max(x, 0).
 * @example
 * ```ts
 * const h = relu(linear(x, w)); // negative entries become 0
 * ```
 * @category Ops
 */
export function relu<S extends Shape>(x: Tensor<S>): Tensor<S> {
  return typed(tf.relu(x));
}

const GELU_C = Math.sqrt(2 / Math.PI);

/**
 * GELU, tanh approximation (as ViT implementations use):
 * `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, computed as the equal
 * `x·σ(2√(2/π)·(x + 0.044715·x³))` with a hand-written gradient (wasm's
 * Tanh is a scalar loop, its Sigmoid vectorised); equal to the tanh form to
 * float rounding.
 * @example
 * ```ts
 * const h = gelu(dense); // same shape as dense
 * ```
 * @category Ops
 */
export function gelu<S extends Shape>(x: Tensor<S>): Tensor<S> {
  if (!stockGradients()) return typed(fastGelu(x));
  return typed(
    tf.tidy(() => {
      // x·x·x, not pow(x, 3): wasm's Pow kernel is several times slower than two products.
      const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), 0.044715)), GELU_C);
      return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
    }),
  );
}

/**
 * Softmax over the last axis.
 * @example
 * ```ts
 * const probs = softmax(logits); // logits: Tensor<['B', 10]>, rows sum to 1
 * ```
 * @category Ops
 */
export function softmax<S extends Shape>(x: Tensor<S>): Tensor<S> {
  return typed(tf.softmax(x));
}

/**
 * Log-softmax over the last axis (tfjs's stable form, max subtracted first).
 * @example
 * ```ts
 * const logProbs = logSoftmax(logits); // logits: Tensor<['B', 10]>
 * ```
 * @category Ops
 */
export function logSoftmax<S extends Shape>(x: Tensor<S>): Tensor<S> {
  return typed(tf.logSoftmax(x));
}

/**
 * Layer normalisation over the last axis with scale `gamma` and shift `beta`.
 * @example
 * ```ts
 * const y = layerNorm(x, gamma, beta); // x: Tensor<['B', 'T', 64]>, gamma, beta: Tensor<[64]>
 * ```
 * @category Ops
 */
export function layerNorm<const L extends Shape, D extends Dim>(
  x: Tensor<readonly [...L, D]>,
  gamma: Tensor<readonly [NoInfer<D>]>,
  beta: Tensor<readonly [NoInfer<D>]>,
  epsilon = 1e-5,
): Tensor<[...L, D]> {
  checkArgs('layerNorm', [
    ['x', x, [ANY_LEADING, 'D']],
    ['gamma', gamma, ['D']],
    ['beta', beta, ['D']],
  ]);
  if (!stockGradients()) return typed(fastLayerNorm(epsilon)(x, gamma, beta));
  return typed(
    tf.tidy(() => {
      const mu = tf.mean(x, -1, true);
      const centred = tf.sub(x, mu);
      const variance = tf.mean(tf.square(centred), -1, true);
      return tf.add(tf.mul(tf.mul(centred, tf.rsqrt(tf.add(variance, epsilon))), gamma), beta);
    }),
  );
}

/**
 * Scales each row (last axis) to unit L2 norm; rows with norm below
 * `epsilon` are divided by `epsilon` instead (no NaN for a zero row).
 * @example
 * ```ts
 * const z = l2Normalize(features); // every row of z has norm 1
 * ```
 * @category Ops
 */
export function l2Normalize<S extends Shape>(x: Tensor<S>, epsilon = 1e-12): Tensor<S> {
  return typed(
    tf.tidy(() => {
      const sq = tf.sum(tf.square(x), -1, true);
      return tf.mul(x, tf.rsqrt(tf.maximum(sq, epsilon * epsilon)));
    }),
  );
}

/** Convolution padding: `'same'` keeps the spatial size, `'valid'` uses no padding. */
export type Padding = 'same' | 'valid';

/** [top, bottom, left, right] zero padding that makes a stride-1 'valid' conv equal the requested one. */
function padsFor(padding: Padding, kh: number, kw: number): [number, number, number, number] {
  if (padding === 'valid') return [0, 0, 0, 0];
  // tfjs/TensorFlow 'same': the extra row/column of an even kernel goes at the bottom/right.
  const top = Math.floor((kh - 1) / 2);
  const left = Math.floor((kw - 1) / 2);
  return [top, kh - 1 - top, left, kw - 1 - left];
}

type ConvOut<H extends Dim, P extends Padding> = P extends 'same' ? H : number;

/**
 * 2-D convolution, stride 1, NHWC input `[B, H, W, C]` and filter
 * `[KH, KW, C, O]`. The compiler checks the input channels; with `'same'`
 * the spatial dims are kept in the type. For non-overlapping patches
 * (stride = kernel) use {@link patchify} and a dense product, which is faster.
 * @example
 * ```ts
 * const y = conv2d(images, filter); // images: Tensor<['B', 28, 28, 1]>, filter: Tensor<[3, 3, 1, 8]> → Tensor<['B', 28, 28, 8]>
 * ```
 * @category Ops
 */
export function conv2d<B extends Dim, H extends Dim, W extends Dim, C extends Dim, KH extends Dim, KW extends Dim, O extends Dim, P extends Padding = 'same'>(
  x: Tensor<readonly [B, H, W, C]>,
  filter: Tensor<readonly [KH, KW, NoInfer<C>, O]>,
  padding: P = 'same' as P,
): Tensor<[B, ConvOut<H, P>, ConvOut<W, P>, O]> {
  checkArgs('conv2d', [
    ['x', x, ['B', 'H', 'W', 'C']],
    ['filter', filter, ['KH', 'KW', 'C', 'O']],
  ]);
  const [kh, kw] = filter.shape;
  if (padding === 'valid' && (x.shape[1]! < kh! || x.shape[2]! < kw!)) {
    throw new ShapeError(`conv2d: argument filter: a ${kh}×${kw} 'valid' window does not fit the ${x.shape[1]}×${x.shape[2]} input`);
  }
  if (stockGradients()) return typed(tf.conv2d(x as tf.Tensor4D, filter as tf.Tensor4D, 1, padding));
  return typed(fastConv2d(padsFor(padding, kh!, kw!))(x, filter));
}

/**
 * 2×2 average pooling with stride 2 (odd trailing rows/columns dropped),
 * written as reshape + mean so its gradient needs no pooling kernel.
 * @example
 * ```ts
 * const pooled = avgPool2x2(y); // [B, 28, 28, 8] → [B, 14, 14, 8]
 * ```
 * @category Ops
 */
export function avgPool2x2<B extends Dim, H extends Dim, W extends Dim, C extends Dim>(x: Tensor<readonly [B, H, W, C]>): Tensor<[B, number, number, C]> {
  checkArgs('avgPool2x2', [['x', x, ['B', 'H', 'W', 'C']]]);
  const [b, h, w, c] = x.shape as [number, number, number, number];
  const h2 = Math.floor(h / 2);
  const w2 = Math.floor(w / 2);
  return typed(
    tf.tidy(() => {
      const cropped = h % 2 || w % 2 ? tf.slice(x, [0, 0, 0, 0], [b, h2 * 2, w2 * 2, c]) : x;
      return tf.mean(tf.reshape(cropped, [b, h2, 2, w2, 2, c]), [2, 4]);
    }),
  );
}

/**
 * Cuts images `[B, H, W, C]` into non-overlapping `P×P` patches, flattened
 * in (row, column, channel) order: `[B, (H/P)·(W/P), P·P·C]`. With
 * a dense product this is a stride-P convolution (ViT's patch embedding).
 * @example
 * ```ts
 * const patches = patchify(images, 7); // [B, 28, 28, 1] → [B, 16, 49]
 * ```
 * @category Ops
 */
export function patchify<B extends Dim, H extends Dim, W extends Dim, C extends Dim>(
  x: Tensor<readonly [B, H, W, C]>,
  patch: number,
): Tensor<[B, number, number]> {
  checkArgs('patchify', [['x', x, ['B', 'H', 'W', 'C']]]);
  const [b, h, w, c] = x.shape as [number, number, number, number];
  if (!Number.isInteger(patch) || patch < 1 || h % patch || w % patch) {
    throw new ShapeError(`patchify: argument patch: ${patch} does not divide the ${h}×${w} image`);
  }
  const gh = h / patch;
  const gw = w / patch;
  return typed(
    tf.tidy(() => {
      const grid = tf.reshape(x, [b, gh, patch, gw, patch, c]);
      return tf.reshape(tf.transpose(grid, [0, 1, 3, 2, 4, 5]), [b, gh * gw, patch * patch * c]);
    }),
  );
}

/**
 * `unknown` when `heads` divides `D` (or it cannot be known statically),
 * otherwise a readable compile error.
 * @category Shapes
 */
export type HeadsCheck<D extends Dim, H extends number> = Divide<D, H> extends 'indivisible'
  ? ShapeErrorMessage<`heads: ${H} heads do not divide width ${D & number}`>
  : unknown;

/**
 * Splits the width of `[B, T, D]` into `heads` heads: `[B, heads, T, D/heads]`.
 * A width the head count does not divide is a compile error for literal dims
 * (`splitHeads(x /* [B, T, 64] *\/, 5)`) and a run-time error otherwise.
 * @example
 * ```ts
 * const q = splitHeads(x, 4); // x: Tensor<['B', 'T', 64]> → Tensor<['B', 4, 'T', 16]>
 * ```
 * @category Ops
 */
export function splitHeads<B extends Dim, T extends Dim, D extends Dim, const H extends number>(
  x: Tensor<readonly [B, T, D]>,
  heads: H & HeadsCheck<D, H>,
): Tensor<[B, H, T, Divide<D, H>]> {
  checkArgs('splitHeads', [['x', x, ['B', 'T', 'D']]]);
  const d = x.shape[2] as number;
  const h = heads as number;
  if (!Number.isInteger(h) || h < 1 || d % h !== 0) {
    throw new ShapeError(`splitHeads: argument heads: ${h} heads do not divide width D=${d}`);
  }
  return typed(fastSplitHeads(x, h, 1)[0]!);
}

/**
 * Inverse of {@link splitHeads}: `[B, H, T, E]` → `[B, T, H·E]`.
 * @example
 * ```ts
 * const out = mergeHeads(q); // [B, 4, T, 16] → [B, T, 64]
 * ```
 * @category Ops
 */
export function mergeHeads<B extends Dim, H extends Dim, T extends Dim, E extends Dim>(x: Tensor<readonly [B, H, T, E]>): Tensor<[B, T, number]> {
  checkArgs('mergeHeads', [['x', x, ['B', 'H', 'T', 'E']]]);
  return typed(fastMergeHeads([x]));
}

/**
 * Stride and padding of {@link stridedConv2d} and {@link depthwiseConv2d}.
 * @example
 * ```ts
 * const options: ConvOptions = { strides: [2, 1], padding: 'same' };
 * ```
 * @category Ops
 */
export interface ConvOptions {
  /** Step between windows: one number for both axes or `[rows, columns]` (default 1). */
  readonly strides?: number | readonly [number, number];
  /** `'valid'` (default, as Keras) or `'same'` (TensorFlow's rule for any stride). */
  readonly padding?: Padding;
}

/** [top, bottom, left, right] zero padding TensorFlow applies for `padding` at these strides. */
function stridedPads(padding: Padding, h: number, w: number, kh: number, kw: number, sh: number, sw: number): [number, number, number, number] {
  if (padding === 'valid') return [0, 0, 0, 0];
  // TensorFlow 'same': ceil(size / stride) outputs, the odd padding row/column at the bottom/right.
  const th = Math.max((Math.ceil(h / sh) - 1) * sh + kh - h, 0);
  const tw = Math.max((Math.ceil(w / sw) - 1) * sw + kw - w, 0);
  return [Math.floor(th / 2), th - Math.floor(th / 2), Math.floor(tw / 2), tw - Math.floor(tw / 2)];
}

function convArgs(op: string, x: tf.Tensor, kh: number, kw: number, options: ConvOptions): { pads: [number, number, number, number]; sh: number; sw: number; padding: Padding } {
  const s = options.strides ?? 1;
  const [sh, sw] = typeof s === 'number' ? [s, s] : s;
  if (![sh, sw].every((v) => Number.isInteger(v) && v >= 1)) throw new ShapeError(`${op}: argument options.strides: expected positive integers, got ${String(s)}`);
  const padding = options.padding ?? 'valid';
  const [, h, w] = x.shape as [number, number, number, number];
  const pads = stridedPads(padding, h, w, kh, kw, sh, sw);
  if (h + pads[0] + pads[1] < kh || w + pads[2] + pads[3] < kw) {
    throw new ShapeError(`${op}: argument filter: a ${kh}×${kw} '${padding}' window does not fit the ${h}×${w} input`);
  }
  return { pads, sh, sw, padding };
}

/**
 * 2-D convolution at any stride, NHWC input `[B, H, W, C]`, filter
 * `[KH, KW, C, O]`, with TensorFlow's `'same'`/`'valid'` padding (default
 * `'valid'`, as Keras). Its gradient is made of forward ops, so it trains on
 * wasm; for stride 1 and `'same'` padding {@link conv2d} keeps the spatial
 * dims in the type.
 * @example
 * ```ts
 * // MobileNet's stem: 3×3, stride 2.
 * const y = stridedConv2d(images, filter, { strides: 2, padding: 'same' }); // [B, 112, 112, 32] from [B, 224, 224, 3]
 * ```
 * @category Ops
 */
export function stridedConv2d<B extends Dim, H extends Dim, W extends Dim, C extends Dim, KH extends Dim, KW extends Dim, O extends Dim>(
  x: Tensor<readonly [B, H, W, C]>,
  filter: Tensor<readonly [KH, KW, NoInfer<C>, O]>,
  options: ConvOptions = {},
): Tensor<[B, number, number, O]> {
  checkArgs('stridedConv2d', [
    ['x', x, ['B', 'H', 'W', 'C']],
    ['filter', filter, ['KH', 'KW', 'C', 'O']],
  ]);
  const [kh, kw] = filter.shape as [number, number];
  const { pads, sh, sw, padding } = convArgs('stridedConv2d', x, kh, kw, options);
  if (stockGradients()) return typed(tf.conv2d(x as tf.Tensor4D, filter as tf.Tensor4D, [sh, sw], padding));
  return typed(fastStridedConv2d(pads, sh, sw)(x, filter));
}

/**
 * Depthwise 2-D convolution: input `[B, H, W, C]`, filter `[KH, KW, C, M]`
 * (M, the depth multiplier, filters per input channel), output channel
 * `c·M + q` from input channel `c` alone. Any stride, TensorFlow's padding
 * (default `'valid'`). Its gradient is made of forward ops: wasm has no
 * depthwise backprop kernels, so tfjs's own gradient cannot run there.
 * @example
 * ```ts
 * const y = depthwiseConv2d(x, filter, { strides: 1, padding: 'same' }); // x [B, 8, 8, 4], filter [3, 3, 4, 1] → [B, 8, 8, 4]
 * ```
 * @category Ops
 */
export function depthwiseConv2d<B extends Dim, H extends Dim, W extends Dim, C extends Dim, KH extends Dim, KW extends Dim, M extends Dim>(
  x: Tensor<readonly [B, H, W, C]>,
  filter: Tensor<readonly [KH, KW, NoInfer<C>, M]>,
  options: ConvOptions = {},
): Tensor<[B, number, number, number]> {
  checkArgs('depthwiseConv2d', [
    ['x', x, ['B', 'H', 'W', 'C']],
    ['filter', filter, ['KH', 'KW', 'C', 'M']],
  ]);
  const [kh, kw] = filter.shape as [number, number];
  const { pads, sh, sw, padding } = convArgs('depthwiseConv2d', x, kh, kw, options);
  if (stockGradients()) return typed(tf.depthwiseConv2d(x as tf.Tensor4D, filter as tf.Tensor4D, [sh, sw], padding));
  return typed(fastDepthwiseConv2d(pads, sh, sw)(x, filter));
}
