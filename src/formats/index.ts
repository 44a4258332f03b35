/**
 * File formats: the checksummed container every sparsetune file uses,
 * checkpoints (a model's parameters) and sparse deltas (what fine-tuning
 * changed). Byte-level only: reading and writing files is `sparsetune/node`'s.
 * @module
 */
export { crc32 } from './binary.js';
export * from './checkpoint.js';
export * from './delta.js';
