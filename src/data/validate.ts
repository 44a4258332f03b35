/**
 * Checking data sets at the entry points, so bad data is an error that
 * names the problem instead of a NaN model or a mask computed from garbage.
 *
 * @module
 */
import { DataError } from '../core/index.js';
import { checkLayout, sampleSize, type DataSet, type Labels, type SampleShape } from './images.js';

/**
 * Throws a {@link DataError} unless `set` is usable: at least one sample,
 * `n × shape` finite values, and either one integer class per sample, each
 * in `[0, classes)` when `classes` is given, or finite float32 regression
 * targets (`n × T`). `what` names the set in the message.
 * @example
 * ```ts
 * assertDataSet(task.train, 'fineTune: train', model.classes);
 * ```
 * @category Data
 */
export function assertDataSet(set: DataSet<SampleShape, Labels>, what: string, classes?: number): void {
  const [op, arg] = what.includes(': ') ? [what.slice(0, what.indexOf(': ')), what.slice(what.indexOf(': ') + 2)] : [what, 'data'];
  checkLayout(op, arg, set);
  const { n, images, labels } = set;
  if (n < 1) throw new DataError(`${what}: the set must hold at least one sample, but n is ${n}`);
  // One pass that is cheap when all is well (x - x is 0 only for finite x); the slow search for where runs only on failure.
  let acc = 0;
  for (let i = 0; i < images.length; i++) acc += images[i]! - images[i]!;
  if (acc !== 0) {
    const per = sampleSize(set.shape);
    const at = images.findIndex((v) => !Number.isFinite(v));
    throw new DataError(`${what}: value ${at % per} of sample ${Math.floor(at / per)} is ${images[at]}; every value must be finite (clean or drop that sample)`);
  }
  if (labels instanceof Float32Array) {
    const at = labels.findIndex((v) => !Number.isFinite(v));
    if (at >= 0) throw new DataError(`${what}: regression target ${at} is ${labels[at]}; every target must be finite`);
    return;
  }
  const top = classes ?? Infinity;
  for (let i = 0; i < n; i++) {
    const c = labels[i]!;
    if (c < 0 || c >= top) throw new DataError(`${what} label ${c} at index ${i} is outside [0, ${top === Infinity ? '∞' : top})${classes === undefined ? '' : `; the model has ${classes} classes`}`);
  }
}
