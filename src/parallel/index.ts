/**
 * Data-parallel gradients over workers: the pool (pool.ts), its workers
 * (serve.ts), what they say to each other (protocol.ts), and the pool on a
 * browser's Web Workers (browser.ts). Node's worker threads are in
 * `src/node/workers.ts`.
 *
 * @module
 */
export * from './browser.js';
export * from './pool.js';
export * from './protocol.js';
export * from './serve.js';
