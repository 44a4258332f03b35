/**
 * Selection: masks, criteria, the selector algebra and the GPS/SPT presets.
 * @module
 */
export * from './mask.js';
export * from './scores.js';
export * from './selector.js';
export * from './presets.js';
export * from './parallel.js';
