/**
 * The mini-VTAB-1k downstream tasks: seven small tasks in three groups, each
 * with 800 training and 200 validation images and a held-out test set,
 * drawn with a seed from pools that never overlap (see `fashionPartition`,
 * `mnistPartition`). Each task has its own builder so one can be built alone.
 *
 * @module
 */
import { rng, type Rng, ConfigError } from '../core/index.js';
import { fashionPartition, mnistPartition } from './datasets.js';
import { IMAGE_SHAPE, PIXELS, SIDE, subset, type ImageSet } from './images.js';

/**
 * VTAB's three groups.
 * @category Data
 */
export type TaskGroup = 'natural' | 'specialized' | 'structured';

/**
 * A downstream task.
 * @category Data
 */
export interface Task {
  /** The task's name, e.g. `'digits-noisy'`. */
  readonly name: string;
  /** Its VTAB group. */
  readonly group: TaskGroup;
  /** Number of classes. */
  readonly classes: number;
  /** Training images (800 by default). */
  readonly train: ImageSet;
  /** Validation images (200 by default), for choosing hyper-parameters. */
  readonly val: ImageSet;
  /** Held-out test images. */
  readonly test: ImageSet;
}

/**
 * Sizes and seed of a task.
 * @category Data
 */
export interface TaskOptions {
  /** Which draw of images (and of their transformations); default 0. */
  readonly seed?: number;
  /** Default 800. */
  readonly trainSize?: number;
  /** Default 200. */
  readonly valSize?: number;
  /** Default 1000. */
  readonly testSize?: number;
}

/** Maps a source image to a task image and label. */
type Recipe = (pool: ImageSet, r: Rng, count: number) => ImageSet;

function draw(pool: ImageSet, r: Rng, count: number): ImageSet {
  if (count > pool.n) throw new ConfigError(`task: asked for ${count} images from a pool of ${pool.n}`);
  return subset(pool, r.shuffle([...Array(pool.n).keys()]).slice(0, count));
}

function build(name: string, group: TaskGroup, classes: number, pools: { train: ImageSet; test: ImageSet }, recipe: Recipe, o: TaskOptions): Task {
  const trainSize = o.trainSize ?? 800;
  const valSize = o.valSize ?? 200;
  const testSize = o.testSize ?? 1000;
  const r = rng(o.seed ?? 0).fork(name);
  const trainVal = recipe(pools.train, r.fork('train'), trainSize + valSize);
  const idx = [...Array(trainVal.n).keys()];
  return {
    name,
    group,
    classes,
    train: subset(trainVal, idx.slice(0, trainSize)),
    val: subset(trainVal, idx.slice(trainSize)),
    test: recipe(pools.test, r.fork('test'), testSize),
  };
}

/** Applies a per-image pixel map, keeping labels. */
const mapPixels =
  (f: (img: Float32Array, r: Rng) => void): Recipe =>
  (pool, r, count) => {
    const set = draw(pool, r.fork('images'), count);
    for (let i = 0; i < set.n; i++) f(set.images.subarray(i * PIXELS, (i + 1) * PIXELS), r.fork(i));
    return set;
  };

/** Box-resamples a 28×28 image to `size × size` (area average). */
function shrink(img: Float32Array, size: number): Float32Array {
  const out = new Float32Array(size * size);
  for (let i = 0; i < size; i++) {
    const y0 = Math.floor((i * SIDE) / size);
    const y1 = Math.max(y0 + 1, Math.floor(((i + 1) * SIDE) / size));
    for (let j = 0; j < size; j++) {
      const x0 = Math.floor((j * SIDE) / size);
      const x1 = Math.max(x0 + 1, Math.floor(((j + 1) * SIDE) / size));
      let s = 0;
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) s += img[y * SIDE + x]!;
      out[i * size + j] = s / ((y1 - y0) * (x1 - x0));
    }
  }
  return out;
}

/** Pastes a `size × size` patch into a 28×28 canvas at (top, left), keeping the brighter pixel. */
function paste(canvas: Float32Array, patch: Float32Array, size: number, top: number, left: number): void {
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const k = (top + y) * SIDE + left + x;
      canvas[k] = Math.max(canvas[k]!, patch[y * size + x]!);
    }
  }
}

const digitPools = () => mnistPartition();

/**
 * Natural: MNIST digits, 10-way (a domain shift from clothing to digits).
 * @example
 * ```ts
 * import { digits } from 'sparsetune/node';
 * const task = digits({ seed: 1 }); // task.classes === 10
 * ```
 * @category Tasks
 */
export function digits(options: TaskOptions = {}): Task {
  return build('digits', 'natural', 10, digitPools(), draw, options);
}

/** Fashion-MNIST class → coarse class: tops, bottoms and dresses, footwear, bags. */
const COARSE = [0, 1, 0, 1, 0, 2, 0, 2, 3, 2];

/**
 * Natural: Fashion-MNIST regrouped into 4 coarse classes — tops (T-shirt,
 * pullover, coat, shirt), bottoms and dresses (trouser, dress), footwear
 * (sandal, sneaker, ankle boot), bags — from images pre-training never saw.
 * @example
 * ```ts
 * import { fashionCoarse } from 'sparsetune/node';
 * const task = fashionCoarse(); // task.classes === 4
 * ```
 * @category Tasks
 */
export function fashionCoarse(options: TaskOptions = {}): Task {
  const { downstream } = fashionPartition();
  // Disjoint train and test pools inside the downstream part.
  const half = Math.floor(downstream.n / 2);
  const idx = [...Array(downstream.n).keys()];
  const pools = { train: subset(downstream, idx.slice(0, half)), test: subset(downstream, idx.slice(half)) };
  const coarse: Recipe = (pool, r, count) => {
    const set = draw(pool, r, count);
    return { ...set, labels: set.labels.map((c) => COARSE[c]!) };
  };
  return build('fashion-coarse', 'natural', 4, pools, coarse, options);
}

/**
 * Specialized: digits with inverted contrast (`1 − x`), 10-way: a sensor change.
 * @example
 * ```ts
 * import { digitsInverted } from 'sparsetune/node';
 * const task = digitsInverted({ trainSize: 500 });
 * ```
 * @category Tasks
 */
export function digitsInverted(options: TaskOptions = {}): Task {
  return build(
    'digits-inverted',
    'specialized',
    10,
    digitPools(),
    mapPixels((img) => {
      for (let k = 0; k < img.length; k++) img[k] = 1 - img[k]!;
    }),
    options,
  );
}

/**
 * Specialized: digits blurred (3×3 binomial kernel) under heavy Gaussian
 * noise (σ = 0.5, clipped to [0, 1]), 10-way.
 * @example
 * ```ts
 * import { digitsNoisy } from 'sparsetune/node';
 * const task = digitsNoisy(); // task.group === 'specialized'
 * ```
 * @category Tasks
 */
export function digitsNoisy(options: TaskOptions = {}): Task {
  const blur = (img: Float32Array): Float32Array => {
    const out = new Float32Array(PIXELS);
    const w = [1, 2, 1];
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        let s = 0;
        let n = 0;
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            const yy = y + dy;
            const xx = x + dx;
            if (yy < 0 || yy >= SIDE || xx < 0 || xx >= SIDE) continue;
            const k = w[dy + 1]! * w[dx + 1]!;
            s += k * img[yy * SIDE + xx]!;
            n += k;
          }
        }
        out[y * SIDE + x] = s / n;
      }
    }
    return out;
  };
  return build(
    'digits-noisy',
    'specialized',
    10,
    digitPools(),
    mapPixels((img, r) => {
      const b = blur(img);
      for (let k = 0; k < img.length; k++) img[k] = Math.min(1, Math.max(0, b[k]! + 0.5 * r.normal()));
    }),
    options,
  );
}

/**
 * Structured: a digit rotated by 0, 90, 180 or 270 degrees; predict the angle (4-way).
 * @example
 * ```ts
 * import { rotation } from 'sparsetune/node';
 * const task = rotation(); // labels 0–3: quarter turns
 * ```
 * @category Tasks
 */
export function rotation(options: TaskOptions = {}): Task {
  const rotate: Recipe = (pool, r, count) => {
    const set = draw(pool, r.fork('images'), count);
    const turns = r.fork('angles');
    for (let i = 0; i < set.n; i++) {
      const k = turns.int(4);
      const src = set.images.slice(i * PIXELS, (i + 1) * PIXELS);
      const dst = set.images.subarray(i * PIXELS, (i + 1) * PIXELS);
      for (let y = 0; y < SIDE; y++) {
        for (let x = 0; x < SIDE; x++) {
          // Rotate counter-clockwise k quarter turns.
          const [sy, sx] = k === 0 ? [y, x] : k === 1 ? [x, SIDE - 1 - y] : k === 2 ? [SIDE - 1 - y, SIDE - 1 - x] : [SIDE - 1 - x, y];
          dst[y * SIDE + x] = src[sy * SIDE + sx]!;
        }
      }
      set.labels[i] = k;
    }
    return set;
  };
  return build('rotation', 'structured', 4, digitPools(), rotate, options);
}

/**
 * Structured: a digit shrunk to 7×7 and placed in one of the 16 cells of a
 * 4×4 grid; predict the cell (16-way, row-major).
 * @example
 * ```ts
 * import { location } from 'sparsetune/node';
 * const task = location(); // labels 0–15: grid cells, row-major
 * ```
 * @category Tasks
 */
export function location(options: TaskOptions = {}): Task {
  const place: Recipe = (pool, r, count) => {
    const set = draw(pool, r.fork('images'), count);
    const cells = r.fork('cells');
    for (let i = 0; i < set.n; i++) {
      const img = set.images.subarray(i * PIXELS, (i + 1) * PIXELS);
      const small = shrink(img, 7);
      const cell = cells.int(16);
      img.fill(0);
      paste(img, small, 7, Math.floor(cell / 4) * 7, (cell % 4) * 7);
      set.labels[i] = cell;
    }
    return set;
  };
  return build('location', 'structured', 16, digitPools(), place, options);
}

/**
 * Structured: 1 to 4 digits shrunk to 9×9 scattered over distinct cells of a
 * 3×3 grid (jittered by up to one pixel); predict how many (4-way, label = count − 1).
 * @example
 * ```ts
 * import { count } from 'sparsetune/node';
 * const task = count(); // label = number of digits − 1
 * ```
 * @category Tasks
 */
export function count(options: TaskOptions = {}): Task {
  const scatter: Recipe = (pool, r, n) => {
    const sources = r.fork('sources');
    const layout = r.fork('layout');
    const images = new Float32Array(n * PIXELS);
    const labels = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const k = 1 + layout.int(4);
      const canvas = images.subarray(i * PIXELS, (i + 1) * PIXELS);
      for (const cell of layout.shuffle([...Array(9).keys()]).slice(0, k)) {
        const j = sources.int(pool.n);
        const small = shrink(pool.images.subarray(j * PIXELS, (j + 1) * PIXELS), 9);
        paste(canvas, small, 9, Math.floor(cell / 3) * 9 + layout.int(2), (cell % 3) * 9 + layout.int(2));
      }
      labels[i] = k - 1;
    }
    return { images, labels, n, shape: IMAGE_SHAPE };
  };
  return build('count', 'structured', 4, digitPools(), scatter, options);
}

/**
 * A task's name.
 * @category Tasks
 */
export type TaskName = 'digits' | 'fashion-coarse' | 'digits-inverted' | 'digits-noisy' | 'rotation' | 'location' | 'count';

/**
 * Every task builder by name, in benchmark order.
 * @example
 * ```ts
 * import { TASKS } from 'sparsetune/node';
 * for (const [name, build] of Object.entries(TASKS)) console.log(name, build().classes);
 * ```
 * @category Tasks
 */
export const TASKS: Readonly<Record<TaskName, (options?: TaskOptions) => Task>> = {
  digits,
  'fashion-coarse': fashionCoarse,
  'digits-inverted': digitsInverted,
  'digits-noisy': digitsNoisy,
  rotation,
  location,
  count,
};

/**
 * Builds a task by name; an unknown name is an error listing the known ones.
 * @example
 * ```ts
 * import { buildTask } from 'sparsetune/node';
 * const task = buildTask('digits-noisy', { seed: 2 });
 * ```
 * @category Tasks
 */
export function buildTask(name: string, options: TaskOptions = {}): Task {
  const f = (TASKS as Record<string, ((o: TaskOptions) => Task) | undefined>)[name];
  if (f === undefined) throw new ConfigError(`unknown task '${name}'; known: ${Object.keys(TASKS).join(', ')}`);
  return f(options);
}
