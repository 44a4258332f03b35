/**
 * Batches as tensors, from host data sets of any per-sample shape.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, type Rng, type Tensor } from '../core/index.js';
import { checkLayout, labelWidth, subset, type DataSet, type Labels, type SampleShape } from './images.js';

/**
 * The label tensor of a batch: int32 `[B]` for classes, float32 `[B, T]`
 * for regression targets.
 * @category Data
 */
export type LabelTensor<L extends Labels> = L extends Float32Array ? Tensor<['B', number]> : Tensor<['B']>;

/**
 * One batch: samples `[B, ...S]`, labels (int32 `[B]`, or float32 `[B, T]`
 * regression targets), and which samples of the set they are.
 * @category Data
 */
export interface Batch<S extends SampleShape = SampleShape, L extends Labels = Int32Array> {
  /** Samples, float32. */
  readonly x: Tensor<['B', ...S]>;
  /** Labels. */
  readonly y: LabelTensor<L>;
  /** Positions of these samples in the set. */
  readonly indices: Int32Array;
}

/**
 * Options of {@link batches}.
 * @category Data
 */
export interface BatchOptions {
  /** Shuffles the order with this stream; omitted, the set's own order. */
  readonly rng?: Rng;
  /** Drops a last batch smaller than `batchSize` (default false). */
  readonly dropLast?: boolean;
}

/**
 * The whole set as tensors (samples `[n, ...shape]`, labels `[n]` or
 * `[n, T]`); the caller disposes them.
 * @example
 * ```ts
 * const { x, y } = toTensors(task.test); // x: Tensor<['B', 28, 28, 1]>
 * ```
 * @category Data
 */
export function toTensors<S extends SampleShape, L extends Labels = Int32Array>(set: DataSet<S, L>): { x: Tensor<['B', ...S]>; y: LabelTensor<L> } {
  checkLayout('toTensors', 'set', set);
  const x = tf.tensor(set.images, [set.n, ...set.shape]) as Tensor<['B', ...S]>;
  const y = set.labels instanceof Int32Array ? tf.tensor1d(set.labels, 'int32') : tf.tensor2d(set.labels, [set.n, labelWidth(set)], 'float32');
  return { x, y: y as LabelTensor<L> };
}

/**
 * Iterates over a set in batches. A batch's tensors live until the next
 * batch is requested (or the loop ends, however it ends), when the iterator
 * disposes them; `tf.keep` or clone what must outlive that.
 * @example
 * ```ts
 * for (const { x, y } of batches(task.train, 32, { rng: rng(0).fork('epoch0') })) {
 *   tf.tidy(() => step(x, y));
 * }
 * ```
 * @category Data
 */
export function* batches<S extends SampleShape, L extends Labels = Int32Array>(set: DataSet<S, L>, batchSize: number, options: BatchOptions = {}): Generator<Batch<S, L>, void, undefined> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError(`batches: batchSize must be a positive integer, got ${batchSize}`);
  checkLayout('batches', 'set', set);
  const order = options.rng ? options.rng.shuffle([...Array(set.n).keys()]) : [...Array(set.n).keys()];
  const end = options.dropLast ? set.n - (set.n % batchSize) : set.n;
  for (let at = 0; at < end; at += batchSize) {
    const indices = Int32Array.from(order.slice(at, Math.min(at + batchSize, end)));
    const { x, y } = toTensors(subset(set, indices));
    try {
      yield { x, y, indices };
    } finally {
      x.dispose();
      y.dispose();
    }
  }
}
