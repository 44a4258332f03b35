/**
 * Data on the host: image sets, augmentation and batches. The datasets npm
 * packages ship and the mini-VTAB-1k tasks built from them read files, so
 * they are exported from `sparsetune/node`.
 * @module
 */
export { splitIndices, subset, type ImageSet } from './images.js';
export type { Task, TaskGroup, TaskName, TaskOptions } from './tasks.js';
export { twoViews, type AugmentOptions } from './augment.js';
export { batches, toTensors, type Batch, type BatchOptions } from './batches.js';
export { assertImageSet } from './validate.js';
