/**
 * Typed tensor ops. Each op states its shapes twice: in its signature, so the
 * compiler rejects what it can, and in a run-time check that names the op,
 * the argument and the bound dims. The products run the matmul kernel of
 * `kernels.ts`.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from './errors.js';
import { fastBiasAdd, fastMatMul } from './kernels.js';
import {
  ANY_LEADING,
  checkArgs,
  typed,
  type BroadcastsTo,
  type Dim,
  type DropAxis,
  type Permute,
  type ReshapeCheck,
  type SetAxis,
  type Shape,
  type Tensor,
} from './shape.js';


/**
 * Matrix product of `[M, K]` and `[K, N]`. `NoInfer` makes `K` come from `x`
 * alone, so `[B, 784] × [785, 10]` is a compile error rather than `K = 784 | 785`.
 *
 * @example
 * ```ts
 * const y = matmul(x, w); // x: Tensor<['B', 784]>, w: Tensor<[784, 10]> → Tensor<['B', 10]>
 * ```
 * @category Ops
 */
export function matmul<M extends Dim, K extends Dim, N extends Dim>(
  x: Tensor<readonly [M, K]>,
  w: Tensor<readonly [NoInfer<K>, N]>,
): Tensor<[M, N]> {
  checkArgs('matmul', [
    ['x', x, ['M', 'K']],
    ['w', w, ['K', 'N']],
  ]);
  return typed(fastMatMul(x, w));
}

/**
 * Batched matrix product: `[...L, M, K] × [...L, K, N] → [...L, M, N]`, the
 * leading dims equal (no broadcasting).
 * @example
 * ```ts
 * const scores = batchMatmul(q, k); // q: Tensor<['B', 4, 'T', 16]>, k: Tensor<['B', 4, 16, 'T']> → Tensor<['B', 4, 'T', 'T']>
 * ```
 * @category Ops
 */
export function batchMatmul<const L extends Shape, M extends Dim, K extends Dim, N extends Dim>(
  x: Tensor<readonly [...L, M, K]>,
  w: Tensor<readonly [...L, NoInfer<K>, N]>,
): Tensor<[...L, M, N]> {
  if (x.rank !== w.rank || x.rank < 2) {
    throw new ShapeError(`batchMatmul: arguments x and w must have the same rank >= 2, got [${x.shape}] and [${w.shape}]`);
  }
  const lead = x.shape.slice(0, -2).map((_, i) => `L${i}`);
  checkArgs('batchMatmul', [
    ['x', x, [...lead, 'M', 'K']],
    ['w', w, [...lead, 'K', 'N']],
  ]);
  return typed(fastMatMul(x, w));
}

/**
 * A dense layer's product over any leading dims: `[...L, K] × [K, N] → [...L, N]`
 * (the rows of every leading index share `w`).
 * @example
 * ```ts
 * const y = linear(tokens, w); // tokens: Tensor<['B', 'T', 64]>, w: Tensor<[64, 128]> → Tensor<['B', 'T', 128]>
 * ```
 * @category Ops
 */
export function linear<const L extends Shape, K extends Dim, N extends Dim>(
  x: Tensor<readonly [...L, K]>,
  w: Tensor<readonly [NoInfer<K>, N]>,
): Tensor<[...L, N]> {
  checkArgs('linear', [
    ['x', x, [ANY_LEADING, 'K']],
    ['w', w, ['K', 'N']],
  ]);
  const k = w.shape[0]!;
  const n = w.shape[1]!;
  const lead = x.shape.slice(0, -1);
  const flat = x.rank === 2 ? x : tf.reshape(x, [-1, k]);
  const y = fastMatMul(flat, w);
  return typed(x.rank === 2 ? y : tf.reshape(y, [...lead, n]));
}

/**
 * Adds a bias vector along the last axis: `[...L, N] + [N]`.
 * @example
 * ```ts
 * const y = biasAdd(linear(x, w), b); // b: Tensor<[10]>
 * ```
 * @category Ops
 */
export function biasAdd<const L extends Shape, N extends Dim>(
  x: Tensor<readonly [...L, N]>,
  b: Tensor<readonly [NoInfer<N>]>,
): Tensor<[...L, N]> {
  checkArgs('biasAdd', [
    ['x', x, [ANY_LEADING, 'N']],
    ['b', b, ['N']],
  ]);
  // Its own kernel: the bias's gradient is then one pass over the rows on wasm (kernels.ts columnSums).
  return typed(fastBiasAdd(x, b));
}

function broadcastCheck(op: string, a: tf.Tensor, b: tf.Tensor | number): void {
  if (typeof b === 'number') return;
  const ok =
    b.rank <= a.rank &&
    b.shape.every((d, i) => {
      const ad = a.shape[a.rank - b.rank + i]!;
      return d === ad || d === 1;
    });
  if (!ok) {
    throw new ShapeError(
      `${op}: argument b: expected a shape that broadcasts onto a's [${a.shape.join(', ')}] (a trailing part of it, 1s allowed), got [${b.shape.join(', ')}]`,
    );
  }
}

/**
 * Elementwise arithmetic where `b` (a tensor or a number) broadcasts onto
 * `a`'s shape; the result has `a`'s shape.
 */
function elementwise(op: string, f: (a: tf.Tensor, b: tf.Tensor | number) => tf.Tensor) {
  return <S extends Shape>(a: Tensor<S>, b: Tensor<BroadcastsTo<S>> | number): Tensor<S> => {
    broadcastCheck(op, a, b);
    return typed(f(a, b));
  };
}

/**
 * `a + b`, `b` broadcasting onto `a` (a number, or a trailing part of `a`'s shape with 1s allowed).
 * @example
 * ```ts
 * const y = add(x, 1); // or add(x, b) with b: Tensor<[10]> for x: Tensor<['B', 10]>
 * ```
 * @category Ops
 */
export const add = elementwise('add', tf.add);
/**
 * `a - b`, `b` broadcasting onto `a`.
 * @example
 * ```ts
 * const centred = sub(x, 0.5);
 * ```
 * @category Ops
 */
export const sub = elementwise('sub', tf.sub);
/**
 * `a * b`, `b` broadcasting onto `a`.
 * @example
 * ```ts
 * const scaled = mul(x, 2);
 * ```
 * @category Ops
 */
export const mul = elementwise('mul', tf.mul);
/**
 * `a / b`, `b` broadcasting onto `a`.
 * @example
 * ```ts
 * const normalised = div(x, 255);
 * ```
 * @category Ops
 */
export const div = elementwise('div', tf.div);

/**
 * Reshapes `x` to `shape`. With small literal dims the compiler checks the
 * element counts (a shared leading symbolic dim cancels); at run time `-1`
 * is not accepted, so the declared shape is the real one: symbolic dims in
 * `shape` must be given as numbers in `dims`.
 *
 * @example
 * ```ts
 * const flat = reshape(images, ['B', 784], { B: batch }); // images: Tensor<['B', 28, 28, 1]>
 * ```
 * @category Ops
 */
export function reshape<S extends Shape, const T extends Shape>(
  x: Tensor<S> & ReshapeCheck<S, T>,
  shape: T,
  dims: Readonly<Record<Extract<T[number], string>, number>> = {} as Record<Extract<T[number], string>, number>,
): Tensor<T> {
  const target = shape.map((d) => {
    if (typeof d === 'number') return d;
    const v = (dims as Record<string, number | undefined>)[d];
    if (v === undefined) throw new ShapeError(`reshape: argument dims: no value for symbolic dim ${d}`);
    return v;
  });
  const size = target.reduce((p, d) => p * d, 1);
  if (size !== x.size) {
    throw new ShapeError(`reshape: argument shape: [${target.join(', ')}] holds ${size} elements, x [${x.shape.join(', ')}] holds ${x.size}`);
  }
  return typed(tf.reshape(x, target));
}

function axisOf(op: string, rank: number, axis: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new ShapeError(`${op}: argument axis: ${axis} is out of range for rank ${rank}`);
  return a;
}

/**
 * Permutes axes: output axis `i` is input axis `perm[i]`.
 * @example
 * ```ts
 * const t = transpose(x, [1, 0]); // x: Tensor<['B', 10]> → Tensor<[10, 'B']>
 * ```
 * @category Ops
 */
export function transpose<S extends Shape, const P extends readonly number[]>(x: Tensor<S>, perm: P): Tensor<Permute<S, P>> {
  const sorted = [...perm].sort((a, b) => a - b);
  if (perm.length !== x.rank || sorted.some((p, i) => p !== i)) {
    throw new ShapeError(`transpose: argument perm: [${perm.join(', ')}] is not a permutation of the ${x.rank} axes of [${x.shape.join(', ')}]`);
  }
  return typed(tf.transpose(x, [...perm]));
}

/**
 * Concatenates along `axis`; every other dim must agree.
 * @example
 * ```ts
 * const both = concat([view1, view2], 0); // two [B, F] batches → [2B, F]
 * ```
 * @category Ops
 */
export function concat<S extends Shape, const A extends number>(xs: readonly Tensor<S>[], axis: A): Tensor<SetAxis<S, A, number>> {
  const first = xs[0];
  if (first === undefined) throw new ShapeError('concat: argument xs: needs at least one tensor');
  const a = axisOf('concat', first.rank, axis);
  xs.forEach((t, i) => {
    if (t.rank !== first.rank || t.shape.some((d, j) => j !== a && d !== first.shape[j])) {
      const want = first.shape.map((d, j) => (j === a ? '*' : d));
      throw new ShapeError(`concat: argument xs[${i}]: expected [${want.join(', ')}], got [${t.shape.join(', ')}]`);
    }
  });
  return typed(tf.concat([...xs], a));
}

/**
 * Takes `size` entries from `begin` along `axis`.
 * @example
 * ```ts
 * const cls = slice(tokens, 1, 0, 1); // tokens: Tensor<['B', 'T', 64]> → Tensor<['B', 1, 64]>
 * ```
 * @category Ops
 */
export function slice<S extends Shape, const A extends number, const N extends number>(
  x: Tensor<S>,
  axis: A,
  begin: number,
  size: N,
): Tensor<SetAxis<S, A, N>> {
  const a = axisOf('slice', x.rank, axis);
  const len = x.shape[a]!;
  if (!Number.isInteger(begin) || !Number.isInteger(size) || begin < 0 || size < 0 || begin + size > len) {
    throw new ShapeError(`slice: argument begin/size: [${begin}, ${begin + size}) is outside axis ${a} of length ${len} in [${x.shape.join(', ')}]`);
  }
  const b = x.shape.map((_, i) => (i === a ? begin : 0));
  const s = x.shape.map((d, i) => (i === a ? size : d));
  return typed(tf.slice(x, b, s));
}

/**
 * Splits `x` into `n` equal parts along `axis`.
 * @example
 * ```ts
 * const [q, k, v] = split(qkv, 2, 3); // qkv: Tensor<['B', 'T', 192]> → three [B, T, 64]
 * ```
 * @category Ops
 */
export function split<S extends Shape, const A extends number>(x: Tensor<S>, axis: A, n: number): Tensor<SetAxis<S, A, number>>[] {
  const a = axisOf('split', x.rank, axis);
  const len = x.shape[a]!;
  if (!Number.isInteger(n) || n < 1 || len % n !== 0) {
    throw new ShapeError(`split: argument n: axis ${a} of length ${len} in [${x.shape.join(', ')}] cannot split into ${n} equal parts`);
  }
  return tf.split(x, n, a).map((t) => typed(t));
}

function reduction(op: string, f: (x: tf.Tensor, axis: number, keep: boolean) => tf.Tensor) {
  return <S extends Shape, const A extends number>(x: Tensor<S>, axis: A): Tensor<DropAxis<S, A>> =>
    typed(f(x, axisOf(op, x.rank, axis), false));
}

/**
 * Sum over one axis, which disappears from the shape.
 * @example
 * ```ts
 * const perRow = sum(x, 1); // x: Tensor<['B', 10]> → Tensor<['B']>
 * ```
 * @category Ops
 */
export const sum = reduction('sum', tf.sum);
/**
 * Mean over one axis, which disappears from the shape.
 * @example
 * ```ts
 * const pooled = mean(tokens, 1); // tokens: Tensor<['B', 'T', 64]> → Tensor<['B', 64]>
 * ```
 * @category Ops
 */
export const mean = reduction('mean', tf.mean);
/**
 * Maximum over one axis, which disappears from the shape.
 * @example
 * ```ts
 * const best = max(logits, 1); // logits: Tensor<['B', 10]> → Tensor<['B']>
 * ```
 * @category Ops
 */
export const max = reduction('max', tf.max);

/**
 * Sum of every entry, as a scalar (e.g. a loss).
 * @example
 * ```ts
 * const total = sumAll(x); // Tensor<[]>
 * ```
 * @category Ops
 */
export function sumAll(x: Tensor): Tensor<[]> {
  return typed(tf.sum(x));
}

/**
 * Mean of every entry, as a scalar.
 * @example
 * ```ts
 * const loss = meanAll(sub(outputs, targets)); // Tensor<[]>
 * ```
 * @category Ops
 */
export function meanAll(x: Tensor): Tensor<[]> {
  return typed(tf.mean(x));
}

/**
 * One-hot encodes int32 labels `[B]` into float32 `[B, D]`. Like tfjs, a
 * label outside `[0, depth)` gives a zero row; validate labels once at the
 * data boundary rather than paying a device read on every step.
 * @example
 * ```ts
 * const targets = oneHot(labels, 10); // labels: int32 Tensor<['B']> → Tensor<['B', 10]>
 * ```
 * @category Ops
 */
export function oneHot<B extends Dim, const D extends number>(labels: Tensor<readonly [B]>, depth: D): Tensor<[B, D]> {
  checkArgs('oneHot', [['labels', labels, ['B']]]);
  if (labels.dtype !== 'int32') throw new ShapeError(`oneHot: argument labels: expected dtype int32, got ${labels.dtype}`);
  return typed(tf.cast(tf.oneHot(labels as tf.Tensor1D, depth), 'float32'));
}
