/**
 * {@link webWorkerPool}: the worker pool (pool.ts) on a browser's Web
 * Workers, each running {@link servePoolWorker}. Kept free of the DOM's
 * types: the library builds without them.
 *
 * @module
 */
import { BackendError, ConfigError } from '../core/index.js';
import { createPool, startWithin, type PoolOptions, type PoolThread, type WorkerPool } from './pool.js';
import type { Ready, Request } from './protocol.js';

/**
 * A Web Worker as the pool uses it: the DOM's `Worker` is one.
 * @example
 * ```ts
 * const create = (): WebWorkerLike => new Worker('./pool-worker.js', { type: 'module' });
 * ```
 * @category Parallel
 */
export interface WebWorkerLike {
  /** Sends it a message. */
  postMessage(message: unknown): void;
  /** Stops it. */
  terminate(): void;
  /** Listens for its messages and its errors. */
  addEventListener(type: 'message' | 'error', listener: (event: { readonly data?: unknown; readonly message?: string }) => void): void;
}

/**
 * Options of {@link webWorkerPool}.
 * @example
 * ```ts
 * const options: WebWorkerPoolOptions = { workers: navigator.hardwareConcurrency, create: () => new Worker('./pool-worker.js', { type: 'module' }) };
 * ```
 * @category Parallel
 */
export interface WebWorkerPoolOptions extends PoolOptions {
  /**
   * Starts one pool worker: a Web Worker whose script calls
   * {@link servePoolWorker}, e.g. `() => new Worker(new URL('./pool-worker.js', import.meta.url), { type: 'module' })`.
   */
  readonly create: () => WebWorkerLike;
}

/**
 * The worker pool of `workerPool` (in `sparsetune/node`) on a browser's Web
 * Workers: data-parallel fine-tuning and selection passes, one core per
 * worker, with the same results (identical for a given worker count, equal
 * to one thread's within float tolerance). Pass it as `parallel` to
 * `fineTune` or `selectionEnv`.
 *
 * Two things the browser asks for. The page must be cross-origin isolated
 * (served with `Cross-Origin-Opener-Policy: same-origin` and
 * `Cross-Origin-Embedder-Policy: require-corp`), or there is no shared
 * memory. And the pool, with the fine-tuning that uses it, must run in a
 * dedicated Web Worker, not on the page's main thread: `fineTune` is
 * synchronous and waits for the workers by blocking, which a page's main
 * thread may not do. Either is a `ConfigError` naming what to change.
 *
 * `workers` defaults to `navigator.hardwareConcurrency`; `backend` to
 * `'wasm'`. Each worker's script calls {@link servePoolWorker}, after
 * setting tfjs's wasm paths.
 * @example
 * ```ts
 * // trainer.ts, started by the page as new Worker('./trainer.js', { type: 'module' })
 * import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
 * import { fineTune, gps, initBackend, webWorkerPool } from 'sparsetune';
 * setWasmPaths('./');
 * await initBackend('wasm');
 * const pool = await webWorkerPool({ workers: 2, create: () => new Worker('./pool-worker.js', { type: 'module' }) });
 * const { params: tuned } = fineTune({ model, params, mask: gps({ k: 1 }), train, batchSize: 64, parallel: pool });
 * await pool.terminate();
 * ```
 * @category Parallel
 */
export async function webWorkerPool(options: WebWorkerPoolOptions): Promise<WorkerPool> {
  if (typeof options?.create !== 'function') throw new ConfigError('webWorkerPool: create must be a function that starts a Web Worker running servePoolWorker()');
  const cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  return createPool('webWorkerPool', options.workers ?? cores ?? 1, options.backend ?? 'wasm', options, (k, init, onFailure, startMs) => {
    const w = options.create();
    let state: 'starting' | 'running' | 'failed' = 'starting';
    const started = new Promise<PoolThread>((resolve, reject) => {
      w.addEventListener('message', (e) => {
        if (state !== 'starting') return;
        const m = e.data as Ready;
        if (m?.ready === true) {
          state = 'running';
          resolve({ post: (r: Request) => w.postMessage(r), terminate: async () => w.terminate() });
        } else {
          state = 'failed';
          w.terminate();
          reject(new BackendError(`webWorkerPool: worker ${k} failed to start: ${m?.ready === false ? `${m.name}: ${m.message}` : 'it answered something else than servePoolWorker would'}`));
        }
      });
      w.addEventListener('error', (e) => {
        const error = new BackendError(`webWorkerPool: worker ${k} failed${state === 'starting' ? ' to start' : ''}: ${e.message ?? 'an error in its script'}`);
        if (state === 'running') return void onFailure(error);
        state = 'failed';
        w.terminate();
        reject(error);
      });
      w.postMessage(init);
    });
    return startWithin('webWorkerPool', k, startMs, started, () => {
      state = 'failed';
      w.terminate();
    }, ' (does its script call servePoolWorker()?)');
  });
}
