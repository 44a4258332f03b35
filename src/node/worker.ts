/**
 * The worker thread of {@link workerPool}: the pool's worker
 * (parallel/serve.ts) on Node's `worker_threads` messages. A backend that
 * fails to come up throws here, which the pool sees as the thread's error.
 *
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import { startWorker, type Request, type WorkerInit } from '../parallel/index.js';

const init = workerData as WorkerInit | undefined;
if (parentPort !== null && init?.mailbox !== undefined) {
  const handle = await startWorker(init);
  parentPort.on('message', (r: Request) => handle(r));
  parentPort.postMessage({ ready: true });
}
