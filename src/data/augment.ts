/**
 * Seeded augmentation for the two views SupCon compares, for images
 * `[H, W, C]` of any size and channel count and for feature vectors `[D]`.
 * @module
 */
import { ShapeError, type Rng, ConfigError } from '../core/index.js';
import { checkLayout, labelWidth, sampleSize, showShape, type DataSet, type Labels, type SampleShape } from './images.js';

/**
 * Augmentation strengths. An image view (`[H, W, C]`) gets either a random
 * translation or a random crop resized back to `H × W` (equal odds), the
 * same for every channel, then intensity jitter and Gaussian noise, clipped
 * to [0, 1]. A feature-vector view (`[D]`) has no spatial or intensity
 * structure to exploit: it gets feature dropout and Gaussian noise only,
 * unclipped.
 * @category Data
 */
export interface AugmentOptions {
  /** Largest shift in pixels, each axis (default 3). Images only. */
  readonly maxShift?: number;
  /** Smallest crop side as a fraction of the image (default 0.7). Images only. */
  readonly minCrop?: number;
  /** Contrast factor drawn from [1 − c, 1 + c] (default 0.3). Images only. */
  readonly contrast?: number;
  /** Brightness offset drawn from [−b, b] (default 0.1). Images only. */
  readonly brightness?: number;
  /** Standard deviation of added noise (default 0.05). */
  readonly noise?: number;
  /** Probability of zeroing each feature, survivors scaled by 1/(1 − p) (default 0.1). Feature vectors only. */
  readonly featureDropout?: number;
}

const IMAGE_ONLY = ['maxShift', 'minCrop', 'contrast', 'brightness'] as const;

/** Bilinear sample of channel `ch` at (y, x); 0 outside the image. */
function bilinear(src: Float32Array, h: number, w: number, c: number, ch: number, y: number, x: number): number {
  if (y < 0 || x < 0 || y > h - 1 || x > w - 1) return 0;
  const y0 = Math.floor(y);
  const x0 = Math.floor(x);
  const y1 = Math.min(y0 + 1, h - 1);
  const x1 = Math.min(x0 + 1, w - 1);
  const fy = y - y0;
  const fx = x - x0;
  const at = (yy: number, xx: number) => src[(yy * w + xx) * c + ch]!;
  const top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx;
  const bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx;
  return top * (1 - fy) + bottom * fy;
}

/**
 * Writes one augmented view of the image `src` (`h × w × c`) into `dst`.
 * The draws come in the order the 28×28 grey version always made them
 * (branch, geometry, contrast, brightness, then one noise draw per value in
 * memory order), so the built-in tasks' views are unchanged.
 */
function augmentImage(src: Float32Array, dst: Float32Array, h: number, w: number, c: number, r: Rng, o: Required<AugmentOptions>): void {
  let sample: (y: number, x: number, ch: number) => number;
  if (r.uniform() < 0.5) {
    const dy = r.int(2 * o.maxShift + 1) - o.maxShift;
    const dx = r.int(2 * o.maxShift + 1) - o.maxShift;
    sample = (y, x, ch) => {
      const sy = y - dy;
      const sx = x - dx;
      return sy < 0 || sx < 0 || sy >= h || sx >= w ? 0 : src[(sy * w + sx) * c + ch]!;
    };
  } else {
    // One crop fraction for both axes keeps the aspect ratio.
    const frac = o.minCrop + (1 - o.minCrop) * r.uniform();
    const sideY = frac * (h - 1);
    const sideX = frac * (w - 1);
    const top = r.uniform() * (h - 1 - sideY);
    const left = r.uniform() * (w - 1 - sideX);
    const scaleY = h > 1 ? sideY / (h - 1) : 1;
    const scaleX = w > 1 ? sideX / (w - 1) : 1;
    sample = (y, x, ch) => bilinear(src, h, w, c, ch, top + y * scaleY, left + x * scaleX);
  }
  const k = 1 + o.contrast * (2 * r.uniform() - 1);
  const b = o.brightness * (2 * r.uniform() - 1);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let ch = 0; ch < c; ch++) {
        const v = sample(y, x, ch) * k + b + o.noise * r.normal();
        dst[(y * w + x) * c + ch] = Math.min(1, Math.max(0, v));
      }
    }
  }
}

/** Writes one augmented view of the feature vector `src` into `dst`: dropout, then noise. */
function augmentFeatures(src: Float32Array, dst: Float32Array, r: Rng, o: Required<AugmentOptions>): void {
  const keep = 1 - o.featureDropout;
  for (let i = 0; i < src.length; i++) {
    const kept = r.uniform() < keep ? src[i]! / keep : 0;
    dst[i] = kept + o.noise * r.normal();
  }
}

/**
 * Two independently augmented views of every sample: the result holds `2n`
 * samples, the first views (`0…n−1`) then the second views (`n…2n−1`), with
 * the labels repeated — the layout `supConLoss` expects. The same `r`
 * gives the same views. Images `[H, W, C]` get spatial and intensity
 * augmentations, feature vectors `[D]` dropout and noise; any other shape
 * is a {@link ShapeError}.
 * @example
 * ```ts
 * const views = twoViews(task.train, rng(0).fork('views')); // 2 × 800 images
 * ```
 * @category Data
 */
export function twoViews<S extends SampleShape, L extends Labels = Int32Array>(set: DataSet<S, L>, r: Rng, options: AugmentOptions = {}): DataSet<S, L> {
  checkLayout('twoViews', 'set', set);
  const shape = set.shape;
  if (shape.length !== 3 && shape.length !== 1) {
    throw new ShapeError(`twoViews: augmentations are defined for images [H, W, C] and feature vectors [D], got samples of shape ${showShape(shape)}`);
  }
  if (shape.length === 1) {
    const spatial = IMAGE_ONLY.filter((k) => options[k] !== undefined);
    if (spatial.length > 0) throw new ShapeError(`twoViews: ${spatial.join(', ')} apply to images [H, W, C], not to feature vectors of shape ${showShape(shape)}`);
  }
  const o: Required<AugmentOptions> = { maxShift: 3, minCrop: 0.7, contrast: 0.3, brightness: 0.1, noise: 0.05, featureDropout: 0.1, ...options };
  if (!(o.featureDropout >= 0 && o.featureDropout < 1)) throw new ConfigError(`twoViews: featureDropout must be in [0, 1), got ${o.featureDropout}`);
  const n = set.n;
  const per = sampleSize(shape);
  const images = new Float32Array(2 * n * per);
  for (let v = 0; v < 2; v++) {
    const rv = r.fork(`view${v}`);
    for (let i = 0; i < n; i++) {
      const src = set.images.subarray(i * per, (i + 1) * per);
      const dst = images.subarray((v * n + i) * per, (v * n + i + 1) * per);
      if (shape.length === 3) augmentImage(src, dst, shape[0]!, shape[1]!, shape[2]!, rv.fork(i), o);
      else augmentFeatures(src, dst, rv.fork(i), o);
    }
  }
  const t = labelWidth(set);
  const labels = (set.labels instanceof Float32Array ? new Float32Array(2 * n * t) : new Int32Array(2 * n)) as L;
  labels.set(set.labels);
  labels.set(set.labels, n * t);
  return { images, labels, n: 2 * n, shape };
}
