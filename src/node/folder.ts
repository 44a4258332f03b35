/**
 * An image-folder data set, the way torchvision's `ImageFolder` reads one:
 * one sub-folder per class, classes sorted by folder name (class `i` is the
 * `i`-th name), PNG and JPEG files decoded by pure-JS decoders (`pngjs`,
 * `jpeg-js`), each resized to one size. Node-only: it reads files.
 *
 * @module
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';
import { ConfigError, DataError, FormatError } from '../core/errors.js';
import { resizeImage, summarize, type DataSummary, type ResizeMethod } from '../data/build.js';
import type { DataSet } from '../data/images.js';

/**
 * Options of {@link loadImageFolder}.
 * @category Data
 */
export interface ImageFolderOptions<H extends number, W extends number, C extends 1 | 3> {
  /** Every image is resized to `[height, width]`. */
  readonly size: readonly [H, W];
  /** 3 for RGB (default; alpha is dropped, as PIL's `convert('RGB')`), 1 for grey (ITU-R 601 luma, as PIL's `'L'`). */
  readonly channels?: C;
  /** How to resize (default `'area'`, which does not alias when shrinking). */
  readonly resize?: ResizeMethod;
}

/**
 * What {@link loadImageFolder} returns.
 * @category Data
 */
export interface ImageFolder<S extends readonly [number, number, number]> {
  /** The images, in [0, 1], class by class, files in name order within a class. */
  readonly set: DataSet<S>;
  /** Class names: the sub-folder names, sorted; label `i` is `classes[i]`. */
  readonly classes: readonly string[];
  /** The file each sample came from, relative to the root folder. */
  readonly files: readonly string[];
  /** Counts per class and the shape, with `summary.text` a one-line report. */
  readonly summary: DataSummary;
}

const EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);
const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** RGBA bytes of a PNG or JPEG file, by its extension. */
function decode(path: string): { width: number; height: number; data: Uint8Array } {
  const bytes = readFileSync(path);
  try {
    if (extname(path).toLowerCase() === '.png') return pngjs.PNG.sync.read(bytes);
    return jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true });
  } catch (e) {
    throw new FormatError(`loadImageFolder: cannot decode ${path}: ${(e as Error).message}`);
  }
}

/**
 * Reads an image folder: `root/<class>/<image>.png|jpg|jpeg`. Classes are
 * the sub-folders sorted by name; other files and hidden entries are
 * skipped; a class folder without images is an error (as in torchvision).
 * Split the result with `splitDataSet`.
 * @example
 * ```ts
 * import { splitDataSet } from 'sparsetune';
 * import { loadImageFolder } from 'sparsetune/node';
 * const folder = loadImageFolder('photos', { size: [32, 32] });
 * console.log(folder.summary.text); // 300 samples of shape [32, 32, 3], 3 classes: cat 100, dog 100, fox 100
 * const { train, val, test } = splitDataSet(folder.set, { val: 0.1, test: 0.2, seed: 0 });
 * ```
 * @category Data
 */
export function loadImageFolder<const H extends number, const W extends number, const C extends 1 | 3 = 3>(
  root: string,
  options: ImageFolderOptions<H, W, C>,
): ImageFolder<readonly [H, W, C]> {
  if (typeof options !== 'object' || options === null || !Array.isArray(options.size)) throw new ConfigError('loadImageFolder: give options with the size to resize to, e.g. { size: [32, 32] }');
  const [height, width] = options.size;
  const channels = (options.channels ?? 3) as C;
  if (![height, width].every((d) => Number.isInteger(d) && d >= 1)) throw new ConfigError(`loadImageFolder: size must be positive integers, got [${options.size.join(', ')}]`);
  if (channels !== 1 && channels !== 3) throw new ConfigError(`loadImageFolder: channels must be 1 or 3, got ${String(channels)}`);
  const classes = readdirSync(root)
    .filter((d) => !d.startsWith('.') && statSync(join(root, d)).isDirectory())
    .sort(byName);
  if (classes.length === 0) throw new DataError(`loadImageFolder: ${root} has no class sub-folders`);
  const files: string[] = [];
  const labels: number[] = [];
  classes.forEach((c, k) => {
    const found = readdirSync(join(root, c))
      .filter((f) => !f.startsWith('.') && EXTENSIONS.has(extname(f).toLowerCase()))
      .sort(byName);
    if (found.length === 0) throw new DataError(`loadImageFolder: class folder '${c}' holds no .png, .jpg or .jpeg file`);
    for (const f of found) {
      files.push(join(c, f));
      labels.push(k);
    }
  });
  const per = height * width * channels;
  const images = new Float32Array(files.length * per);
  files.forEach((f, i) => {
    const { width: w, height: h, data } = decode(join(root, f));
    const pixels = new Float32Array(h * w * channels);
    for (let p = 0; p < h * w; p++) {
      const [r, g, b] = [data[4 * p]!, data[4 * p + 1]!, data[4 * p + 2]!];
      if (channels === 3) {
        pixels[3 * p] = r / 255;
        pixels[3 * p + 1] = g / 255;
        pixels[3 * p + 2] = b / 255;
      } else {
        pixels[p] = (0.299 * r + 0.587 * g + 0.114 * b) / 255;
      }
    }
    const same = h === height && w === width;
    images.set(same ? pixels : resizeImage(pixels, [h, w, channels], [height, width], options.resize ?? 'area'), i * per);
  });
  const set: DataSet<readonly [H, W, C]> = { images, labels: Int32Array.from(labels), n: files.length, shape: [options.size[0], options.size[1], channels] as const };
  return { set, classes, files, summary: summarize(set, classes) };
}
