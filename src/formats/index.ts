/**
 * File formats: the checksummed container every sparsetune file uses,
 * checkpoints (a model's parameters), sparse deltas (what fine-tuning
 * changed) and tuned files (a delta, LoRA adapters and the method's config). Byte-level only: reading and writing files is `sparsetune/node`'s.
 * @module
 */
export { crc32 } from './binary.js';
export * from './checkpoint.js';
export * from './delta.js';
export * from './tuned.js';
