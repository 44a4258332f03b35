/**
 * {@link workerPool}: the worker pool (parallel/pool.ts) on Node's worker
 * threads, each running node/worker.ts.
 *
 * @module
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import type { BackendName } from '../core/backend.js';
import { BackendError } from '../core/index.js';
import { createPool, createPoolSync, MAILBOX_BYTES, poolRuns, startWithin, type PoolOptions, type PoolThread, type Ready, type WorkerInit, type WorkerPool } from '../parallel/index.js';
import type { PoolStarter } from '../selection/pools.js';

/** The workers' backend by default: this thread's, where a worker can run it, else wasm. */
function workersBackend(): BackendName {
  const current = tf.getBackend();
  return current === 'wasm' || current === 'cpu' || current === 'tensorflow' ? current : 'wasm';
}

/** Where a worker's code is: the compiled worker.js beside this file, or from source through tsx (tests, benchmarks). */
function workerEntry(): { readonly entry: string | URL; readonly eval: boolean } {
  const self = import.meta.url;
  if (!self.endsWith('.ts')) return { entry: new URL('./worker.js', self), eval: false };
  const source = new URL('./worker.ts', self).href;
  return { entry: `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(source)}); })`, eval: true };
}

/**
 * Starts `workers` threads (default: the machine's cores), each
 * initialising its own backend, and resolves once all are ready (a second
 * or two). The pool computes each fine-tuning step's gradient as the sum of
 * its shards' (a shard's loss weighted by its share of the batch), and a
 * selection pass's scores as the sum of each worker's batches; both summed
 * in worker order, so results are identical run to run for a given worker
 * count and equal to the single-thread ones within float tolerance. Only
 * the selected entries' values and gradients cross between threads,
 * through shared memory.
 *
 * Runs the models built by `mlp`, `cnn` and `vit` (the shipped backbones
 * included), Keras models imported with `importLayersModel`, and the losses
 * cross-entropy and `meanSquaredError`; anything else is a `ConfigError`
 * when the run starts. In a browser, the same pool
 * runs on Web Workers: `webWorkerPool` in `sparsetune`.
 * @example
 * ```ts
 * import { workerPool, loadBackbone, digits } from 'sparsetune/node';
 * const pool = await workerPool({ workers: 2 });
 * const env = selectionEnv({ model, params, data: task.train, parallel: pool });
 * const mask = select(gps({ k: 1 }), env);
 * const { params: tuned } = fineTune({ model, params, mask, train: task.train, batchSize: 64, parallel: pool });
 * await pool.terminate();
 * ```
 * @category Parallel
 */
export async function workerPool(options: PoolOptions = {}): Promise<WorkerPool> {
  const backend = options.backend ?? workersBackend();
  const { entry, eval: isEval } = workerEntry();
  return createPool('workerPool', options.workers ?? availableParallelism(), backend, options, (k, init, onFailure, startMs) => {
    const w = new Worker(entry, { eval: isEval, workerData: init });
    const started = new Promise<void>((resolve, reject) => {
      w.once('message', (m: Ready) => (m.ready ? resolve() : reject(new BackendError(`workerPool: worker ${k} failed to start: ${m.message}`))));
      w.once('error', (e) => reject(new BackendError(`workerPool: worker ${k} failed to start: ${e.message}`)));
      w.once('exit', (code) => reject(new BackendError(`workerPool: worker ${k} exited (code ${code}) while starting`)));
    });
    const thread = {
      post: (r: Parameters<Worker['postMessage']>[0]) => w.postMessage(r),
      terminate: async () => void (await w.terminate()),
    };
    const up = started.then(
      () => {
        w.removeAllListeners();
        w.on('error', (e) => onFailure(new BackendError(`workerPool: worker ${k} failed: ${e.message}`)));
        w.on('exit', (code) => onFailure(new BackendError(`workerPool: worker ${k} exited (code ${code})`)));
        // Its threads do not keep the process alive.
        w.unref();
        return thread;
      },
      async (e: unknown) => {
        await w.terminate();
        throw e;
      },
    );
    return startWithin('workerPool', k, startMs, up, () => void w.terminate());
  });
}

/**
 * Starts worker `k` at once; its start is awaited through shared memory
 * (createPoolSync), which also has to carry a module that fails to load
 * (a bundle without worker.js, say): the blocked pool cannot see the
 * thread's error event. So the module is loaded by a small script that
 * writes such a failure into the mailbox as protocol.ts lays it out
 * (status 1, no name, the message from byte 64) and counts the worker as
 * started. A backend that fails is reported by the worker itself.
 */
export const startThread = (load = defaultLoad()) => (k: number, init: WorkerInit, onFailure: (e: Error) => void): PoolThread => {
  const report = `(e) => { const d = require('node:worker_threads').workerData; const text = new TextEncoder().encode(String((e && e.message) || e)).subarray(0, ${MAILBOX_BYTES - 64}); new Uint8Array(d.mailbox, 64).set(text); new Int32Array(d.mailbox, 0, 3).set([1, 0, text.length]); const s = new Int32Array(d.signal); Atomics.add(s, 2, 1); Atomics.notify(s, 2); }`;
  const w = new Worker(`${load}.catch(${report})`, { eval: true, workerData: init });
  w.on('error', (e) => onFailure(new BackendError(`worker ${k} failed: ${e.message}`)));
  w.on('exit', (code) => onFailure(new BackendError(`worker ${k} exited (code ${code})`)));
  w.unref();
  return { post: (r) => w.postMessage(r), terminate: async () => void (await w.terminate()) };
};

/** A script expression that imports the worker module (a promise). */
function defaultLoad(): string {
  const { entry, eval: isEval } = workerEntry();
  return isEval ? (entry as string) : `import(${JSON.stringify(String(entry))})`;
}

/** The starter behind `fineTune`'s and `selectionEnv`'s `workers` option, registered by this entry. */
export const threadStarter: PoolStarter = {
  cores: availableParallelism(),
  start(workers, caller) {
    return createPoolSync(caller, workers, workersBackend(), {}, startThread());
  },
  runs: poolRuns,
};
