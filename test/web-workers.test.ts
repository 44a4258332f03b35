// The pool on a browser's Web Workers (webWorkerPool, servePoolWorker),
// run here on Node worker threads that look like Web Workers
// (fixtures/web-worker.ts): the same results as Node's workerPool, its
// start-up failures named, and the shared-memory mailbox that carries every
// reply. The real browser runs it too: examples/browser/test-page.mjs.
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { BackendError, ConfigError, fineTune, gps, mlp, servePoolWorker, sgd, webWorkerPool, type Params, type WebWorkerLike, type WorkerPool } from '../src/index.js';
import { workerPool } from '../src/node/index.js';
import { MAILBOX_BYTES, readReply, writeReply, type Reply } from '../src/parallel/index.js';

const script = new URL('./fixtures/web-worker.ts', import.meta.url).href;
/** Starts a Node worker thread running the Web Worker fixture, behind the interface a DOM Worker has. */
function fakeWebWorker(workerData: object = {}): WebWorkerLike {
  const w = new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(script)}); })`, { eval: true, workerData });
  w.unref();
  return {
    postMessage: (m) => w.postMessage(m),
    terminate: () => void w.terminate(),
    addEventListener: (type, listener) => w.on(type, type === 'message' ? (data: unknown) => listener({ data }) : (e: Error) => listener({ message: e.message })),
  };
}

const model = mlp({ input: [48], hidden: [8], classes: 3 });
let params: Params;
const n = 32;
const train = { images: new Float32Array(n * 48).map((_, i) => Math.cos(i * 0.21)), labels: Int32Array.from({ length: n }, (_, i) => i % 3), n, shape: [48] as const };
let web: WorkerPool;
let node: WorkerPool;

beforeAll(async () => {
  params = model.init(2);
  [web, node] = await Promise.all([webWorkerPool({ workers: 2, minShard: 1, create: () => fakeWebWorker() }), workerPool({ workers: 2, minShard: 1 })]);
});
afterAll(async () => {
  await Promise.all([web?.terminate(), node?.terminate()]);
  tf.dispose(Object.values(params));
});

test("webWorkerPool fine-tunes exactly as Node's workerPool: same protocol, same order of sums", () => {
  const run = (parallel: WorkerPool) => {
    const r = fineTune({ model, params, mask: gps({ k: 1 }), train, epochs: 2, batchSize: 8, optimizer: sgd(0.1), seed: 1, progressBar: false, parallel });
    const out = { params: Object.fromEntries(Object.entries(r.params).map(([p, t]) => [p, Array.from(t.dataSync())])), loss: r.history.map((h) => h.loss) };
    tf.dispose(Object.values(r.params).filter((t) => !Object.values(params).includes(t)));
    return out;
  };
  expect(web.workers).toBe(2);
  expect(web.backend).toBe('wasm');
  expect(run(web)).toEqual(run(node));
  expect(web.tensors()).toEqual([0, 0]);
});

test('webWorkerPool names what is wrong: no create function, a worker whose backend cannot start, a worker script that throws', async () => {
  await expect(webWorkerPool({} as never)).rejects.toThrow(ConfigError);
  await expect(webWorkerPool({ workers: 0, create: () => fakeWebWorker() })).rejects.toThrow(/workers must be a positive integer/);
  // No native TensorFlow here: the worker reports initBackend's error, and the pool stops the one that did start.
  await expect(webWorkerPool({ workers: 1, backend: 'tensorflow', create: () => fakeWebWorker() })).rejects.toThrow(/worker 0 failed to start: BackendError: initBackend\('tensorflow'\)/);
  await expect(webWorkerPool({ workers: 2, create: () => fakeWebWorker({ throwAtStart: true }) })).rejects.toThrow(/failed to start: this worker script is broken/);
});

test("servePoolWorker refuses to run outside a worker: in Node's main thread, and on a page (a window has addEventListener and postMessage too)", () => {
  expect(() => servePoolWorker()).toThrow(new ConfigError('servePoolWorker: call it in a Web Worker started by webWorkerPool'));
  const page = globalThis as unknown as Record<string, unknown>;
  Object.assign(page, { addEventListener: () => {}, postMessage: () => {}, document: {} });
  try {
    expect(() => servePoolWorker()).toThrow(ConfigError);
  } finally {
    delete page['addEventListener'];
    delete page['postMessage'];
    delete page['document'];
  }
});

test('a create that throws (no more threads) rejects the pool and stops the workers started before it', async () => {
  let stopped = 0;
  let calls = 0;
  const create = (): WebWorkerLike => {
    if (calls++ === 1) throw new RangeError('no more threads');
    const w = fakeWebWorker();
    return { ...w, terminate: () => (stopped++, w.terminate()) };
  };
  await expect(webWorkerPool({ workers: 2, create })).rejects.toThrow('no more threads');
  expect(stopped).toBe(1);
});

test('a worker script that never serves fails the start after the timeout (not never), and every worker is stopped', async () => {
  let stopped = 0;
  const create = (): WebWorkerLike => {
    const w = fakeWebWorker({ silent: true });
    return { ...w, terminate: () => (stopped++, w.terminate()) };
  };
  await expect(webWorkerPool({ workers: 2, timeoutMs: 300, create })).rejects.toThrow(/webWorkerPool: worker 0 did not start within 300 ms \(does its script call servePoolWorker\(\)\?\)/);
  expect(stopped).toBe(2);
});

test('a worker that crashes mid-run (an error no request caught) fails the run at once with a BackendError naming it, and the pool is stopped', async () => {
  const pool = await webWorkerPool({ workers: 2, minShard: 1, timeoutMs: 60_000, create: () => fakeWebWorker({ crashOn: { op: 'trainStep', nth: 3 } }) });
  try {
    // Without the worker's report the blocked pool would wait out its timeout (10 minutes) instead.
    // Both workers crash on their third step; which is seen first is the threads' race.
    const run = () => fineTune({ model, params, mask: gps({ k: 1 }), train, epochs: 2, batchSize: 8, optimizer: sgd(0.1), progressBar: false, parallel: pool });
    const error = (() => {
      try {
        run();
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(BackendError);
    expect((error as Error).message).toMatch(/^webWorkerPool: worker [01] died: RangeError: injected crash; the pool is stopped$/);
    expect(() => pool.tensors()).toThrow('webWorkerPool: the pool has been terminated');
  } finally {
    await pool.terminate();
  }
});

test('a reply crosses the mailbox intact: numbers exactly, error names and messages as long as the mailbox holds, cut at its size', () => {
  const mailbox = new SharedArrayBuffer(MAILBOX_BYTES);
  const text = fc.string({ unit: 'grapheme', maxLength: 300 });
  fc.assert(
    fc.property(fc.oneof(fc.record({ ok: fc.constant(true as const), value: fc.double() }), fc.record({ ok: fc.constant(false as const), name: fc.string({ maxLength: 40 }), message: text, died: fc.constant(true as const) }, { requiredKeys: ['ok', 'name', 'message'] })), (reply: Reply) => {
      writeReply(mailbox, reply);
      expect(readReply(mailbox)).toEqual(reply);
    }),
  );
  // A message longer than the mailbox arrives cut, not spilling past it.
  writeReply(mailbox, { ok: false, name: 'DataError', message: 'x'.repeat(10_000) });
  const r = readReply(mailbox);
  expect(r.ok).toBe(false);
  if (!r.ok) {
    expect(r.name).toBe('DataError');
    expect(r.message).toBe('x'.repeat(MAILBOX_BYTES - 64 - 'DataError'.length));
  }
});
