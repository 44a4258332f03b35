/**
 * sparsetune: parameter-efficient fine-tuning by parameter selection.
 *
 * - core: typed-shape tensors and ops, parameter trees, randomness, backends
 * - models: MLP, CNN and ViT as pure functions, losses, checkpoints
 * - data: the datasets npm packages ship and the mini-VTAB-1k tasks
 * - selection: masks, criteria, the selector algebra, GPS and SPT
 * - optim: masked optimizers, schedules, fine-tuning, LoRA, sparse deltas
 *
 * @packageDocumentation
 */
export * from './core/index.js';
export * from './models/index.js';
export * from './data/index.js';
export * from './selection/index.js';
export * from './optim/index.js';
export * from './keras/index.js';
