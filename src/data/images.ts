/**
 * Data sets on the host: samples and labels in typed arrays, each set
 * carrying its per-sample shape (`[H, W, C]` images of any size and channel
 * count, `[D]` feature vectors), subsets and seeded splits. Nothing here
 * reads files, so it runs in a browser too; the datasets that npm packages
 * ship are read in `datasets.ts` and image folders in `sparsetune/node`.
 *
 * @module
 */
import { DataError, rng, ShapeError, type Shape, type ShapeErrorMessage, ConfigError } from '../core/index.js';

/** Side of the built-in tasks' images. */
export const SIDE = 28;
/** Pixels per built-in task image. */
export const PIXELS = SIDE * SIDE;
/**
 * Per-sample shape of the built-in tasks' images: 28×28 grey.
 * @example
 * ```ts
 * IMAGE_SHAPE; // [28, 28, 1], the shape of every built-in task's samples
 * ```
 */
export const IMAGE_SHAPE = [SIDE, SIDE, 1] as const;

/**
 * A per-sample shape: `[H, W, C]` for images, `[D]` for feature vectors.
 * @category Data
 */
export type SampleShape = readonly number[];

/**
 * What a data set's `labels` hold: an `Int32Array` of one class per sample
 * (classification), or a `Float32Array` of `n × T` regression targets,
 * sample-major (`T` values per sample, batched as float32 `[B, T]`).
 * @category Data
 */
export type Labels = Int32Array | Float32Array;

/**
 * Samples and labels on the host, with their per-sample shape `S` in the
 * type (when it is literal) and in `shape` (always).
 * @category Data
 */
export interface DataSet<S extends SampleShape = SampleShape, L extends Labels = Int32Array> {
  /** `n × ∏shape` values, sample-major then row-major (channels last); images in [0, 1]. */
  readonly images: Float32Array;
  /** One int32 class per sample, or `n × T` float32 regression targets. */
  readonly labels: L;
  /** Number of samples. */
  readonly n: number;
  /** Per-sample shape, e.g. `[32, 32, 3]` or `[20]`. */
  readonly shape: S;
}

/**
 * The built-in tasks' data: `n` 28×28 grey images with values in [0, 1].
 * @category Data
 */
export type ImageSet = DataSet<readonly [28, 28, 1]>;

/**
 * `unknown` when samples of shape `S` may fit a model whose input is `I`;
 * a {@link ShapeErrorMessage} when both are literal and differ. Intersected
 * with a data argument it makes a data/model mismatch a compile error; a
 * shape only known at run time (`number[]`) is checked then, with a
 * `ShapeError` naming both shapes.
 * @category Data
 */
export type DataFits<I extends Shape, S extends SampleShape> = number extends S['length']
  ? unknown
  : [S] extends [I]
    ? unknown
    : ShapeErrorMessage<'the data set\'s sample shape does not fit the model\'s input shape'>;

/**
 * Number of values in one sample of `shape`.
 * @example
 * ```ts
 * sampleSize([32, 32, 3]); // 3072
 * ```
 * @internal
 */
export function sampleSize(shape: SampleShape): number {
  return shape.reduce((p, d) => p * d, 1);
}

/**
 * Labels per sample: 1 for classes, `T` for regression targets.
 * @example
 * ```ts
 * labelWidth({ images, labels: new Float32Array(2 * n), n, shape: [20] }); // 2
 * ```
 * @internal
 */
export function labelWidth(set: DataSet<SampleShape, Labels>): number {
  if (set.labels instanceof Int32Array) return 1;
  return set.n === 0 ? 0 : set.labels.length / set.n;
}

/**
 * `[a, b, c]`, for messages.
 * @example
 * ```ts
 * showShape([28, 28, 1]); // '[28, 28, 1]'
 * ```
 * @internal
 */
export const showShape = (shape: readonly (number | string)[]): string => `[${shape.join(', ')}]`;

/**
 * Throws a {@link DataError} unless the set's arrays agree with its `n` and
 * `shape`: a set whose sizes disagree would be read out of step, silently.
 * The cheap structural part of {@link assertDataSet}, for functions that
 * only slice the arrays (batches, views).
 * @example
 * ```ts
 * checkLayout('batches', 'set', set);
 * ```
 * @internal
 */
export function checkLayout(op: string, arg: string, set: DataSet<SampleShape, Labels>): void {
  if (typeof set !== 'object' || set === null) throw new DataError(`${op}: argument ${arg}: expected a data set { images, labels, n, shape }, got ${String(set)}`);
  if (!(set.images instanceof Float32Array)) throw new DataError(`${op}: argument ${arg}: images must be a Float32Array`);
  if (!(set.labels instanceof Int32Array || set.labels instanceof Float32Array)) {
    throw new DataError(`${op}: argument ${arg}: labels must be an Int32Array of classes or a Float32Array of regression targets`);
  }
  if (!Number.isInteger(set.n) || set.n < 0) throw new DataError(`${op}: argument ${arg}: n must be a non-negative integer, got ${set.n}`);
  if (!Array.isArray(set.shape) || set.shape.length === 0 || set.shape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new DataError(`${op}: argument ${arg}: shape must be positive integer dims, got ${String(set.shape)}`);
  }
  const per = sampleSize(set.shape);
  if (set.images.length !== set.n * per) {
    throw new DataError(`${op}: argument ${arg}: expected ${set.n} samples of shape ${showShape(set.shape)} (${set.n * per} values), got ${set.images.length} values`);
  }
  if (set.labels instanceof Int32Array ? set.labels.length !== set.n : set.n > 0 && (set.labels.length % set.n !== 0 || set.labels.length === 0)) {
    throw new DataError(`${op}: argument ${arg}: expected ${set.labels instanceof Int32Array ? set.n : `a positive multiple of ${set.n}`} labels, got ${set.labels.length}`);
  }
}

/**
 * Throws a {@link ShapeError} naming both shapes unless samples of
 * `data` fit a model taking `input`. Symbolic dims in `input` match any size.
 * @example
 * ```ts
 * assertFits('fineTune', 'train', model.input, set.shape);
 * ```
 * @internal
 */
export function assertFits(op: string, arg: string, input: readonly (number | string)[], data: SampleShape): void {
  const fits = input.length === data.length && input.every((d, i) => typeof d !== 'number' || d === data[i]);
  if (!fits) throw new ShapeError(`${op}: argument ${arg}: samples of shape ${showShape(data)} do not fit the model's input ${showShape(input)}`);
}

/**
 * The samples at `indices`, in that order.
 * @example
 * ```ts
 * const firstTen = subset(task.train, [...Array(10).keys()]);
 * ```
 * @category Data
 */
export function subset<S extends SampleShape, L extends Labels = Int32Array>(set: DataSet<S, L>, indices: ArrayLike<number>): DataSet<S, L> {
  const n = indices.length;
  const per = sampleSize(set.shape);
  const t = labelWidth(set);
  const images = new Float32Array(n * per);
  const labels = (set.labels instanceof Float32Array ? new Float32Array(n * t) : new Int32Array(n)) as L;
  for (let i = 0; i < n; i++) {
    const j = indices[i]!;
    if (!(j >= 0 && j < set.n)) throw new RangeError(`subset: index ${j} is outside [0, ${set.n})`);
    images.set(set.images.subarray(j * per, (j + 1) * per), i * per);
    if (t === 1) labels[i] = set.labels[j]!;
    else labels.set(set.labels.subarray(j * t, (j + 1) * t), i * t);
  }
  return { images, labels, n, shape: set.shape };
}

/**
 * Splits `0…n−1` into consecutive parts of the given sizes after one seeded
 * shuffle: disjoint, and the same for the same seed. Sizes must not exceed `n`.
 * @example
 * ```ts
 * const [train, val] = splitIndices(1000, [800, 200], 0);
 * ```
 * @category Data
 */
export function splitIndices(n: number, sizes: readonly number[], seed: number): Int32Array[] {
  const total = sizes.reduce((s, k) => s + k, 0);
  if (sizes.some((k) => !Number.isInteger(k) || k < 0) || total > n) {
    throw new ConfigError(`splitIndices: sizes [${sizes.join(', ')}] must be non-negative integers summing to at most ${n}`);
  }
  const order = rng(seed).fork('split').shuffle([...Array(n).keys()]);
  let at = 0;
  return sizes.map((k) => Int32Array.from(order.slice(at, (at += k))));
}
