/**
 * sparsetune: parameter-efficient fine-tuning by parameter selection.
 *
 * - core: typed-shape tensors and ops, parameter trees, randomness, backends
 * - models: MLP, CNN and ViT as pure functions, losses
 * - data: data sets of any sample shape, batching, augmentation, resizing
 * - selection: masks, criteria, the selector algebra, GPS and SPT
 * - formats: checkpoints and sparse deltas, as checksummed bytes
 * - adapters: LoRA
 * - optim: masked optimizers, schedules, fine-tuning
 * - methods: one call from a method config to what trains; tuned files
 * - keras: importing Keras/tfjs models and exporting them back
 * - parallel: the worker pool's types, and the pool on a browser's Web Workers
 *
 * @packageDocumentation
 */
export * from './core/index.js';
export * from './models/index.js';
export * from './data/index.js';
export * from './selection/index.js';
export * from './formats/index.js';
export * from './adapters/index.js';
export * from './optim/index.js';
export * from './methods/index.js';
export * from './keras/index.js';
export { servePoolWorker, webWorkerPool, type PoolOptions, type WebWorkerLike, type WebWorkerPoolOptions, type WorkerPool } from './parallel/index.js';
