/**
 * Optimisation: gradient transformations, masked optimizers, schedules and the fine-tuning loop.
 * @module
 */
export * from './schedule.js';
export * from './transform.js';
export * from './masked.js';
export * from './train.js';
export * from './wrappers.js';
export * from './reselect.js';
