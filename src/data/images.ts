/**
 * Image sets on the host: pixels and labels in typed arrays, subsets and
 * seeded splits. Nothing here reads files, so it runs in a browser too; the
 * datasets that npm packages ship are read in `datasets.ts` (Node only).
 *
 * @module
 */
import { rng } from '../core/index.js';

/** Side of every image here. */
export const SIDE = 28;
/** Pixels per image. */
export const PIXELS = SIDE * SIDE;

/**
 * Images and labels on the host: `images` holds `n` 28×28 images in
 * row-major order with values in [0, 1]; `labels` the class of each.
 * @category Data
 */
export interface ImageSet {
  /** `n × 28 × 28` pixel values in [0, 1]. */
  readonly images: Float32Array;
  /** One int32 class per image. */
  readonly labels: Int32Array;
  /** Number of images. */
  readonly n: number;
}

/**
 * The images at `indices`, in that order.
 * @category Data
 */
export function subset(set: ImageSet, indices: ArrayLike<number>): ImageSet {
  const n = indices.length;
  const images = new Float32Array(n * PIXELS);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const j = indices[i]!;
    if (!(j >= 0 && j < set.n)) throw new RangeError(`subset: index ${j} is outside [0, ${set.n})`);
    images.set(set.images.subarray(j * PIXELS, (j + 1) * PIXELS), i * PIXELS);
    labels[i] = set.labels[j]!;
  }
  return { images, labels, n };
}

/**
 * Splits `0…n−1` into consecutive parts of the given sizes after one seeded
 * shuffle: disjoint, and the same for the same seed. Sizes must not exceed `n`.
 * @category Data
 */
export function splitIndices(n: number, sizes: readonly number[], seed: number): Int32Array[] {
  const total = sizes.reduce((s, k) => s + k, 0);
  if (sizes.some((k) => !Number.isInteger(k) || k < 0) || total > n) {
    throw new RangeError(`splitIndices: sizes [${sizes.join(', ')}] must be non-negative integers summing to at most ${n}`);
  }
  const order = rng(seed).fork('split').shuffle([...Array(n).keys()]);
  let at = 0;
  return sizes.map((k) => Int32Array.from(order.slice(at, (at += k))));
}
