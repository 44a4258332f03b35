/**
 * Seeded augmentation for the two views SupCon compares.
 * @module
 */
import type { Rng } from '../core/index.js';
import { PIXELS, SIDE, type ImageSet } from './images.js';

/**
 * Augmentation strengths. Each view gets either a random translation or a
 * random crop resized back to 28×28 (equal odds), then intensity jitter and
 * Gaussian noise, clipped to [0, 1].
 * @category Data
 */
export interface AugmentOptions {
  /** Largest shift in pixels, each axis (default 3). */
  readonly maxShift?: number;
  /** Smallest crop side as a fraction of the image (default 0.7). */
  readonly minCrop?: number;
  /** Contrast factor drawn from [1 − c, 1 + c] (default 0.3). */
  readonly contrast?: number;
  /** Brightness offset drawn from [−b, b] (default 0.1). */
  readonly brightness?: number;
  /** Standard deviation of added noise (default 0.05). */
  readonly noise?: number;
}

function bilinear(src: Float32Array, y: number, x: number): number {
  if (y < 0 || x < 0 || y > SIDE - 1 || x > SIDE - 1) return 0;
  const y0 = Math.floor(y);
  const x0 = Math.floor(x);
  const y1 = Math.min(y0 + 1, SIDE - 1);
  const x1 = Math.min(x0 + 1, SIDE - 1);
  const fy = y - y0;
  const fx = x - x0;
  const top = src[y0 * SIDE + x0]! * (1 - fx) + src[y0 * SIDE + x1]! * fx;
  const bottom = src[y1 * SIDE + x0]! * (1 - fx) + src[y1 * SIDE + x1]! * fx;
  return top * (1 - fy) + bottom * fy;
}

/** Writes one augmented view of `src` into `dst`. */
function augmentOne(src: Float32Array, dst: Float32Array, r: Rng, o: Required<AugmentOptions>): void {
  let sample: (y: number, x: number) => number;
  if (r.uniform() < 0.5) {
    const dy = r.int(2 * o.maxShift + 1) - o.maxShift;
    const dx = r.int(2 * o.maxShift + 1) - o.maxShift;
    sample = (y, x) => {
      const sy = y - dy;
      const sx = x - dx;
      return sy < 0 || sx < 0 || sy >= SIDE || sx >= SIDE ? 0 : src[sy * SIDE + sx]!;
    };
  } else {
    const side = (o.minCrop + (1 - o.minCrop) * r.uniform()) * (SIDE - 1);
    const top = r.uniform() * (SIDE - 1 - side);
    const left = r.uniform() * (SIDE - 1 - side);
    const scale = side / (SIDE - 1);
    sample = (y, x) => bilinear(src, top + y * scale, left + x * scale);
  }
  const c = 1 + o.contrast * (2 * r.uniform() - 1);
  const b = o.brightness * (2 * r.uniform() - 1);
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      const v = sample(y, x) * c + b + o.noise * r.normal();
      dst[y * SIDE + x] = Math.min(1, Math.max(0, v));
    }
  }
}

/**
 * Two independently augmented views of every image: the result holds `2n`
 * images, the first views (`0…n−1`) then the second views (`n…2n−1`), with
 * the labels repeated — the layout `supConLoss` expects. The same `r`
 * gives the same views.
 * @category Data
 */
export function twoViews(set: ImageSet, r: Rng, options: AugmentOptions = {}): ImageSet {
  const o: Required<AugmentOptions> = { maxShift: 3, minCrop: 0.7, contrast: 0.3, brightness: 0.1, noise: 0.05, ...options };
  const n = set.n;
  const images = new Float32Array(2 * n * PIXELS);
  for (let v = 0; v < 2; v++) {
    const rv = r.fork(`view${v}`);
    for (let i = 0; i < n; i++) {
      augmentOne(set.images.subarray(i * PIXELS, (i + 1) * PIXELS), images.subarray((v * n + i) * PIXELS, (v * n + i + 1) * PIXELS), rv.fork(i), o);
    }
  }
  const labels = new Int32Array(2 * n);
  labels.set(set.labels);
  labels.set(set.labels, n);
  return { images, labels, n: 2 * n };
}
