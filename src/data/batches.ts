/**
 * Batches as tensors, from host image sets.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Rng, Tensor } from '../core/index.js';
import { SIDE, subset, type ImageSet } from './images.js';

/**
 * One batch: images `[B, 28, 28, 1]`, int32 labels `[B]`, and which images
 * of the set they are.
 * @category Data
 */
export interface Batch {
  /** Images, float32 in [0, 1]. */
  readonly x: Tensor<['B', 28, 28, 1]>;
  /** Labels, int32. */
  readonly y: Tensor<['B']>;
  /** Positions of these images in the set. */
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
 * The whole set as tensors (images `[n, 28, 28, 1]`, labels `[n]`); the caller disposes them.
 * @category Data
 */
export function toTensors(set: ImageSet): { x: Tensor<['B', 28, 28, 1]>; y: Tensor<['B']> } {
  return {
    x: tf.tensor4d(set.images, [set.n, SIDE, SIDE, 1]) as Tensor<['B', 28, 28, 1]>,
    y: tf.tensor1d(set.labels, 'int32') as Tensor<['B']>,
  };
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
export function* batches(set: ImageSet, batchSize: number, options: BatchOptions = {}): Generator<Batch, void, undefined> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batches: batchSize must be a positive integer, got ${batchSize}`);
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


