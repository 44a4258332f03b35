/**
 * Your own data in a few lines: a validated data set from typed arrays or
 * tensors, a report of what it holds, a seeded train/val/test split, and
 * image resizing. Browser-safe; the image-folder loader that decodes files
 * is in `sparsetune/node`.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DataError, ShapeError } from '../core/index.js';
import { checkLayout, labelWidth, sampleSize, showShape, splitIndices, subset, type DataSet, type Labels, type SampleShape } from './images.js';

/**
 * What {@link dataSet} builds from.
 * @category Data
 */
export interface DataSetInput<S extends SampleShape> {
  /** Sample values, sample-major (`n × ∏shape`), or a tensor `[n, ...shape]`. Images belong in [0, 1]. */
  readonly images: ArrayLike<number> | tf.Tensor;
  /**
   * Int32 classes (an `Int32Array`, a plain array of integers or an int32
   * tensor), or regression targets (a `Float32Array` or float32 tensor of
   * `n × T` values).
   */
  readonly labels: ArrayLike<number> | tf.Tensor;
  /** Per-sample shape, e.g. `[32, 32, 3]` or `[20]`; optional when `images` is a tensor. */
  readonly shape?: S;
  /** When given, every class label must be an integer in [0, classes). */
  readonly classes?: number;
}

function firstBad(values: ArrayLike<number>, ok: (v: number) => boolean): number {
  for (let i = 0; i < values.length; i++) if (!ok(values[i]!)) return i;
  return -1;
}

/**
 * A data set from typed arrays, plain arrays or tensors, validated: the
 * sample count matches the labels, every value is finite, class labels are
 * integers (in [0, classes) when `classes` is given). The values are copied,
 * so later changes to the inputs do not reach the set; tensors are read, not
 * disposed. A `Float32Array` (or float32 tensor) of labels means regression
 * targets, `T = labels.length / n` per sample.
 * @example
 * ```ts
 * const set = dataSet({ images: pixels, labels: [0, 2, 1, 0], shape: [16, 16, 3], classes: 3 });
 * console.log(summarize(set).text); // 4 samples of shape [16, 16, 3], 3 classes: 0: 2, 1: 1, 2: 1
 * ```
 * @category Data
 */
export function dataSet<const S extends SampleShape>(input: DataSetInput<S> & { readonly labels: Float32Array }): DataSet<S, Float32Array>;
export function dataSet<const S extends SampleShape>(input: DataSetInput<S> & { readonly labels: Int32Array | readonly number[] }): DataSet<S>;
export function dataSet<const S extends SampleShape>(input: DataSetInput<S>): DataSet<S, Labels>;
export function dataSet<const S extends SampleShape>(input: DataSetInput<S>): DataSet<S, Labels> {
  const shape = (input.shape ?? (input.images instanceof tf.Tensor ? input.images.shape.slice(1) : undefined)) as S | undefined;
  if (shape === undefined) throw new ShapeError('dataSet: give shape (the per-sample shape, e.g. [32, 32, 3]) with images in a flat array');
  if (shape.length === 0 || shape.some((d) => !Number.isInteger(d) || d < 1)) throw new ShapeError(`dataSet: shape must be positive integer dims, got ${showShape(shape)}`);
  if (input.images instanceof tf.Tensor && (input.images.rank !== shape.length + 1 || input.images.shape.slice(1).some((d, i) => d !== shape[i]))) {
    throw new ShapeError(`dataSet: argument images: a tensor of shape ${showShape(input.images.shape)} does not hold samples of shape ${showShape(shape)}`);
  }
  const images = input.images instanceof tf.Tensor ? new Float32Array(input.images.dataSync()) : Float32Array.from(input.images);
  const per = sampleSize(shape);
  if (images.length % per !== 0) throw new ShapeError(`dataSet: argument images: ${images.length} values are not a whole number of samples of shape ${showShape(shape)} (${per} values each)`);
  const n = images.length / per;
  const badPixel = firstBad(images, Number.isFinite);
  if (badPixel >= 0) throw new DataError(`dataSet: images value ${images[badPixel]} of sample ${Math.floor(badPixel / per)} is not finite`);
  const regression = input.labels instanceof tf.Tensor ? input.labels.dtype === 'float32' : input.labels instanceof Float32Array;
  const raw = input.labels instanceof tf.Tensor ? input.labels.dataSync() : input.labels;
  // A labels tensor is [n] (classes or one target) or [n, T] (targets).
  if (input.labels instanceof tf.Tensor && (input.labels.shape[0] !== n || input.labels.rank > (regression ? 2 : 1))) {
    throw new ShapeError(`dataSet: argument labels: a tensor of shape ${showShape(input.labels.shape)} for ${n} samples (expected [${n}]${regression ? ` or [${n}, T]` : ''})`);
  }
  let labels: Labels;
  if (regression) {
    if (n === 0 ? raw.length !== 0 : raw.length === 0 || raw.length % n !== 0) throw new ShapeError(`dataSet: argument labels: ${raw.length} regression targets for ${n} samples (need T per sample)`);
    const bad = firstBad(raw, Number.isFinite);
    if (bad >= 0) throw new DataError(`dataSet: regression target ${raw[bad]} at index ${bad} is not finite`);
    labels = Float32Array.from(raw);
  } else {
    if (raw.length !== n) throw new ShapeError(`dataSet: argument labels: expected ${n} labels (one per sample of shape ${showShape(shape)}), got ${raw.length}`);
    const bad = firstBad(raw, Number.isInteger);
    if (bad >= 0) throw new DataError(`dataSet: label ${raw[bad]} at index ${bad} is not an integer class (use a Float32Array for regression targets)`);
    if (input.classes !== undefined) {
      if (!Number.isInteger(input.classes) || input.classes < 1) throw new ConfigError(`dataSet: classes must be a positive integer, got ${input.classes}`);
      const out = firstBad(raw, (c) => c >= 0 && c < input.classes!);
      if (out >= 0) throw new DataError(`dataSet: label ${raw[out]} at index ${out} is outside [0, ${input.classes})`);
    }
    labels = Int32Array.from(raw);
  }
  return { images, labels, n, shape };
}

/**
 * What a data set holds, for a log line or a check.
 * @category Data
 */
export interface DataSummary {
  /** Number of samples. */
  readonly n: number;
  /** Per-sample shape. */
  readonly shape: SampleShape;
  /** Number of classes (class names, or the largest label + 1); 0 for regression targets. */
  readonly classes: number;
  /** Samples per class, indexed by class. */
  readonly counts: readonly number[];
  /** Class names, when given. */
  readonly names?: readonly string[];
  /** Regression targets per sample (absent for classes). */
  readonly targets?: number;
  /** All of the above in one line. */
  readonly text: string;
}

/**
 * Counts per class, shape and size of a data set.
 * @example
 * ```ts
 * summarize(folder.set, folder.classes).text; // '90 samples of shape [32, 32, 3], 3 classes: circle 30, square 30, stripes 30'
 * ```
 * @category Data
 */
export function summarize(set: DataSet<SampleShape, Labels>, names?: readonly string[]): DataSummary {
  const head = `${set.n} samples of shape ${showShape(set.shape)}`;
  if (set.labels instanceof Float32Array) {
    const targets = labelWidth(set);
    return { n: set.n, shape: set.shape, classes: 0, counts: [], targets, text: `${head}, ${targets} regression target${targets === 1 ? '' : 's'} each` };
  }
  const classes = Math.max(names?.length ?? 0, ...Array.from(set.labels, (c) => c + 1), 0);
  const counts = new Array<number>(classes).fill(0);
  for (const c of set.labels) counts[c] = (counts[c] ?? 0) + 1;
  const parts = counts.map((k, c) => `${names?.[c] ?? c}${names ? ' ' : ': '}${k}`);
  return { n: set.n, shape: set.shape, classes, counts, ...(names ? { names } : {}), text: `${head}, ${classes} classes: ${parts.join(', ')}` };
}

/**
 * Sizes of {@link splitDataSet}'s parts: fractions of the set (in [0, 1)) or counts.
 * @category Data
 */
export interface SplitOptions {
  /** Validation part: a fraction (< 1) or a count (default 0). */
  readonly val?: number;
  /** Test part: a fraction (< 1) or a count (default 0). */
  readonly test?: number;
  /** Seed of the shuffle (default 0). */
  readonly seed?: number;
}

/**
 * A seeded train/val/test split: one shuffle, then disjoint parts that
 * together hold every sample once; the same seed gives the same parts.
 * Fractions are rounded to whole samples; training gets the rest.
 * @example
 * ```ts
 * const { train, val, test } = splitDataSet(folder.set, { val: 0.1, test: 0.2, seed: 0 });
 * ```
 * @category Data
 */
export function splitDataSet<S extends SampleShape, L extends Labels = Int32Array>(
  set: DataSet<S, L>,
  options: SplitOptions = {},
): { train: DataSet<S, L>; val: DataSet<S, L>; test: DataSet<S, L> } {
  const count = (name: string, v: number | undefined): number => {
    if (v === undefined) return 0;
    if (!(v >= 0) || (v >= 1 && !Number.isInteger(v))) throw new ConfigError(`splitDataSet: ${name} must be a fraction in [0, 1) or a whole count, got ${v}`);
    return v < 1 ? Math.round(v * set.n) : v;
  };
  const nVal = count('val', options.val);
  const nTest = count('test', options.test);
  if (nVal + nTest > set.n) throw new ConfigError(`splitDataSet: val (${nVal}) and test (${nTest}) take more than the ${set.n} samples`);
  const [test, val, train] = splitIndices(set.n, [nTest, nVal, set.n - nVal - nTest], options.seed ?? 0);
  return { train: subset(set, train!), val: subset(set, val!), test: subset(set, test!) };
}

/**
 * How {@link resizeImage} resamples: `'bilinear'` interpolates between the
 * four nearest pixels (half-pixel centres, as `tf.image.resizeBilinear` with
 * `halfPixelCenters`); `'area'` averages the source pixels each output pixel
 * covers, weighted by overlap — the better choice when shrinking, since it
 * does not alias.
 * @category Data
 */
export type ResizeMethod = 'bilinear' | 'area';

/**
 * Resizes one `h × w × c` image (channels last) to `height × width × c`.
 * @example
 * ```ts
 * const small = resizeImage(pixels, [480, 640, 3], [32, 32], 'area');
 * ```
 * @category Data
 */
export function resizeImage(src: ArrayLike<number>, from: readonly [number, number, number], to: readonly [number, number], method: ResizeMethod = 'area'): Float32Array {
  const [h, w, c] = from;
  const [oh, ow] = to;
  if (src.length !== h * w * c) throw new ShapeError(`resizeImage: argument src: expected ${h * w * c} values for ${showShape(from)}, got ${src.length}`);
  if (![oh, ow].every((d) => Number.isInteger(d) && d >= 1)) throw new ConfigError(`resizeImage: size must be positive integers, got ${showShape(to)}`);
  const out = new Float32Array(oh * ow * c);
  if (method === 'bilinear') {
    const sy = h / oh;
    const sx = w / ow;
    for (let y = 0; y < oh; y++) {
      const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), h - 1);
      const y0 = Math.floor(fy);
      const y1 = Math.min(y0 + 1, h - 1);
      const ty = fy - y0;
      for (let x = 0; x < ow; x++) {
        const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), w - 1);
        const x0 = Math.floor(fx);
        const x1 = Math.min(x0 + 1, w - 1);
        const tx = fx - x0;
        for (let ch = 0; ch < c; ch++) {
          const at = (yy: number, xx: number) => src[(yy * w + xx) * c + ch]!;
          const top = at(y0, x0) * (1 - tx) + at(y0, x1) * tx;
          const bottom = at(y1, x0) * (1 - tx) + at(y1, x1) * tx;
          out[(y * ow + x) * c + ch] = top * (1 - ty) + bottom * ty;
        }
      }
    }
    return out;
  }
  // Area: output pixel (y, x) covers source rows [y·h/oh, (y+1)·h/oh) and likewise columns.
  const spans = (n: number, on: number) =>
    Array.from({ length: on }, (_, i) => {
      const a = (i * n) / on;
      const b = ((i + 1) * n) / on;
      const parts: [number, number][] = [];
      for (let k = Math.floor(a); k < Math.min(Math.ceil(b), n); k++) parts.push([k, Math.min(b, k + 1) - Math.max(a, k)]);
      return { parts, total: b - a };
    });
  const rows = spans(h, oh);
  const cols = spans(w, ow);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const norm = rows[y]!.total * cols[x]!.total;
      for (let ch = 0; ch < c; ch++) {
        let s = 0;
        for (const [yy, wy] of rows[y]!.parts) for (const [xx, wx] of cols[x]!.parts) s += src[(yy * w + xx) * c + ch]! * wy * wx;
        out[(y * ow + x) * c + ch] = s / norm;
      }
    }
  }
  return out;
}

/**
 * Every image of a data set resized to `to = [height, width, channels]`
 * with {@link resizeImage}, labels copied: how a task's images are brought to
 * a pre-trained network's input, such as the built-in 28×28 grey tasks to an
 * ImageNet model's RGB input. `channels` must equal the set's, or the set
 * must be grey (1 channel), whose one channel is then repeated into each of
 * the `channels` (grey in RGB is equal R, G and B). The default `'area'`
 * averages when shrinking; `'bilinear'` gives smoother images when enlarging.
 * Returns a new set; `set` is not changed.
 * @example
 * ```ts
 * const rgb = resizeDataSet(digits().train, [96, 96, 3], 'bilinear'); // DataSet<readonly [96, 96, 3]>
 * ```
 * @category Data
 */
export function resizeDataSet<const T extends readonly [number, number, number], L extends Labels = Int32Array>(
  set: DataSet<SampleShape, L>,
  to: T,
  method: ResizeMethod = 'area',
): DataSet<T, L> {
  checkLayout('resizeDataSet', 'set', set);
  if (set.shape.length !== 3) throw new ShapeError(`resizeDataSet: argument set: samples of shape ${showShape(set.shape)} are not [H, W, C] images`);
  const [h, w, c] = set.shape as readonly [number, number, number];
  const [oh, ow, oc] = to;
  if (!Number.isInteger(oc) || oc < 1) throw new ConfigError(`resizeDataSet: channels must be a positive integer, got ${showShape(to)}`);
  if (oc !== c && c !== 1) throw new ShapeError(`resizeDataSet: ${c} channels cannot become ${oc}: give the set's own channel count, or start from grey (1 channel)`);
  const per = oh * ow * oc;
  const images = new Float32Array(set.n * per);
  for (let i = 0; i < set.n; i++) {
    // Resized at the source's channel count, then spread: a grey image is resized once, not oc times.
    const small = resizeImage(set.images.subarray(i * h * w * c, (i + 1) * h * w * c), [h, w, c], [oh, ow], method);
    const out = images.subarray(i * per, (i + 1) * per);
    if (oc === c) out.set(small);
    else for (let p = 0; p < oh * ow; p++) out.fill(small[p]!, p * oc, (p + 1) * oc);
  }
  return { images, labels: set.labels.slice() as L, n: set.n, shape: to };
}
