/**
 * Checking image sets at the entry points, so bad data is an error that
 * names the problem instead of a NaN model or a mask computed from garbage.
 *
 * @module
 */
import { DataError } from '../core/index.js';
import { PIXELS, type ImageSet } from './images.js';

/**
 * Throws a {@link DataError} unless `set` is usable: at least one image,
 * `n × 28 × 28` finite pixels, one integer label per image, each in
 * `[0, classes)` when `classes` is given (at least 0 otherwise). `what`
 * names the set in the message.
 * @example
 * ```ts
 * assertImageSet(task.train, 'fineTune: train', model.classes);
 * ```
 * @category Data
 */
export function assertImageSet(set: ImageSet, what: string, classes?: number): void {
  if (typeof set !== 'object' || set === null) throw new DataError(`${what}: expected an image set { images, labels, n }, got ${String(set)}`);
  const { n, images, labels } = set;
  if (!Number.isSafeInteger(n) || n < 1) throw new DataError(`${what}: the set must hold at least one image, but n is ${String(n)}`);
  if (!(images instanceof Float32Array)) throw new DataError(`${what}: images must be a Float32Array`);
  if (!(labels instanceof Int32Array)) throw new DataError(`${what}: labels must be an Int32Array`);
  if (images.length !== n * PIXELS) {
    throw new DataError(`${what}: expected ${n}×28×28 images (${n * PIXELS} values), got ${images.length} values${images.length % PIXELS === 0 ? ` (${images.length / PIXELS} images)` : ''}; set n to the number of images`);
  }
  if (labels.length !== n) throw new DataError(`${what}: ${labels.length} labels for ${n} images; give exactly one label per image`);
  // One pass that is cheap when all is well (x - x is 0 only for finite x); the slow search for where runs only on failure.
  let acc = 0;
  for (let i = 0; i < images.length; i++) acc += images[i]! - images[i]!;
  if (acc !== 0) {
    const at = images.findIndex((v) => !Number.isFinite(v));
    throw new DataError(`${what}: pixel ${at % PIXELS} of image ${Math.floor(at / PIXELS)} is ${images[at]}; every pixel must be finite (clean or drop that image)`);
  }
  const top = classes ?? Infinity;
  for (let i = 0; i < n; i++) {
    const c = labels[i]!;
    if (c < 0 || c >= top) throw new DataError(`${what} label ${c} at index ${i} is outside [0, ${top === Infinity ? '∞' : top})${classes === undefined ? '' : `; the model has ${classes} classes`}`);
  }
}
