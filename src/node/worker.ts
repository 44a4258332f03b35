/**
 * The worker thread of {@link workerPool}: the pool's worker
 * (parallel/serve.ts) on Node's `worker_threads` messages. A backend that
 * fails to come up is reported twice, and the thread then ends: through the
 * mailbox by `startWorker` (for a pool that waits blocked, `fineTune`'s
 * `workers` option) and as a `ready: false` message (for `workerPool`,
 * which listens). Once started, a thread that ends (an uncaught error,
 * `process.exit`) says so through the mailbox too (reportDeath): the pool,
 * blocked, cannot see its exit event.
 *
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import { failureOf, fatal, reportDeath, startWorker, type Ready, type Request, type WorkerInit } from '../parallel/index.js';

const init = workerData as WorkerInit | undefined;
if (parentPort !== null && init?.mailbox !== undefined) {
  try {
    const handle = await startWorker(init);
    let error: unknown;
    process.on('uncaughtExceptionMonitor', (e) => (error = e));
    // 'exit' runs in this thread as it ends: after process.exit, an uncaught error or an unhandled rejection.
    process.on('exit', (code) => reportDeath(init, error === undefined ? `exited (code ${code})` : `died: ${fatal(error)}`));
    parentPort.on('message', (r: Request) => handle(r));
    parentPort.postMessage({ ready: true } satisfies Ready);
  } catch (e) {
    parentPort.postMessage({ ready: false, ...failureOf(e) } satisfies Ready);
  }
}
