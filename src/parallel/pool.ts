/**
 * Data-parallel gradients over workers: a pool of threads that each run
 * their own tfjs backend (the wasm backend is single-threaded in Node, and
 * one core per worker in a browser), handed to `fineTune` and the selection
 * passes as a {@link GradientEngine}. {@link createPool} is the pool;
 * `workerPool` (Node's worker threads, `sparsetune/node`) and
 * {@link webWorkerPool} (a browser's Web Workers) start its threads.
 *
 * `fineTune` is synchronous, so the pool is too: it posts a request to each
 * worker and blocks in `Atomics.wait` until their replies are in (through
 * shared memory: protocol.ts). Shards are summed on this thread in worker
 * order, so a result depends only on the worker count.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { requireBackend, type BackendName } from '../core/backend.js';
import { BackendError, ConfigError, DataError, leafSize, MaskError, paths, ShapeError, SpecError, type Params, type Shape } from '../core/index.js';
import type { DataSet, Labels, SampleShape } from '../data/index.js';
import { crossEntropy, meanSquaredError, type Model } from '../models/index.js';
import type { ImportedModel } from '../keras/index.js';
import { maskToIndices, type GradientEngine, type GradientTrainer, type Scores, type ScoresJob, type TrainerJob } from '../selection/index.js';
import { hostView } from '../core/hostsums.js';
import { buildModel, diedIn, leafArrays, MAILBOX_BYTES, readReply, type LossDescription, type ModelDescription, type Reply, type Request, type SharedData, type SharedParams, type WorkerInit } from './protocol.js';

/**
 * Options of a worker pool (`workerPool` in `sparsetune/node`, {@link webWorkerPool} in a browser).
 * @example
 * ```ts
 * const options: PoolOptions = { workers: 2, minShard: 32, timeoutMs: 60_000 };
 * const pool = await workerPool(options);
 * ```
 * @category Parallel
 */
export interface PoolOptions {
  /** Workers (default: the machine's cores: `os.availableParallelism()` in Node, `navigator.hardwareConcurrency` in a browser). */
  readonly workers?: number;
  /** Each worker's backend (default in Node: this thread's, when it is `'wasm'`, `'cpu'` or `'tensorflow'`, else `'wasm'`; in a browser `'wasm'`). */
  readonly backend?: BackendName;
  /**
   * The fewest samples a fine-tuning shard gets (default 16): a batch of
   * `B` is split over `min(workers, ⌊B / minShard⌋)` workers (at least
   * one), because below that a shard's fixed cost (a step's messages, the
   * model's per-call overhead) outweighs what a second core gains.
   */
  readonly minShard?: number;
  /**
   * Longest one request may take, in ms, before the pool gives up with a
   * `BackendError` and stops its workers (default 10 minutes). A worker
   * also has this long to start, at most 2 minutes. A worker whose thread
   * dies (an uncaught error, an exit) fails the request at once (within
   * a second), with a `BackendError` naming it.
   */
  readonly timeoutMs?: number;
}

/**
 * A pool of workers computing gradients; pass it as `parallel` to
 * `fineTune` or `selectionEnv`. Stop it with {@link WorkerPool.terminate}
 * (or `await using`, where `Symbol.asyncDispose` exists); in Node its
 * threads do not keep the process alive.
 * @example
 * ```ts
 * const pool = await workerPool({ workers: 2 });
 * try {
 *   fineTune({ model, params, mask: gps({ k: 1 }), train: task.train, parallel: pool });
 * } finally {
 *   await pool.terminate();
 * }
 * ```
 * @category Parallel
 */
export interface WorkerPool extends GradientEngine {
  /** The backend the workers run. */
  readonly backend: BackendName;
  /** Live tensors in each worker (a leak check: it stays flat between runs). */
  tensors(): number[];
  /** Stops the workers; later use is a `BackendError`. Safe to call twice. */
  terminate(): Promise<void>;
}

/** A started worker, as the pool drives it. */
export interface PoolThread {
  /** Sends it a request (SharedArrayBuffers in it are shared, not copied). */
  post(request: Request): void;
  terminate(): Promise<void>;
}

/**
 * Starts worker `k` with `init` and resolves once its backend is up (it
 * rejects with a `BackendError` if the worker fails to start). A failure
 * after that goes to `onFailure`.
 */
export type Spawn = (k: number, init: WorkerInit, onFailure: (e: Error) => void, startMs: number) => Promise<PoolThread>;

/**
 * `started`, or a `BackendError` once `ms` have passed; a thread that
 * starts after that is stopped (a worker script that never serves would
 * otherwise leave the pool's start pending for ever).
 */
export function startWithin(caller: string, k: number, ms: number, started: Promise<PoolThread>, stop: () => void, hint = ''): Promise<PoolThread> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      stop();
      reject(new BackendError(`${caller}: worker ${k} did not start within ${ms} ms${hint}`));
    }, ms);
  });
  return Promise.race([started, late]).finally(() => clearTimeout(timer));
}

const MODELS = new Set(['mlp', 'cnn', 'vit']);
const ERRORS: Readonly<Record<string, new (message: string) => Error>> = { ConfigError, ShapeError, SpecError, MaskError, DataError, BackendError };
/** The pool's number for each imported Keras model it has described (workers keep the last one they rebuilt, by number). */
const kerasIds = new WeakMap<object, number>();
let lastKerasId = 0;

/** A model as a worker can rebuild it, or a ConfigError saying why not. */
function describe(caller: string, model: Model<Shape, number, number>, params: Params): ModelDescription {
  if (model.name === 'keras' && 'topology' in model) {
    // Rebuilt in the worker from its topology; the weights carry what params do not (BatchNormalization's statistics).
    const imported = model as unknown as ImportedModel;
    let id = kerasIds.get(model);
    if (id === undefined) kerasIds.set(model, (id = ++lastKerasId));
    const keras = imported.kerasWeights(params);
    const weights = [...keras].flatMap(([layer, ws]) => [...ws].map(([weight, t]) => ({ layer, weight, shape: t.shape, values: t.dataSync() as Float32Array })));
    for (const ws of keras.values()) tf.dispose([...ws.values()]);
    return { name: 'keras', id, topology: imported.topology, head: imported.head, input: imported.input as readonly number[], weights };
  }
  if (!MODELS.has(model.name)) {
    throw new ConfigError(
      `${caller}: a '${model.name}' model cannot be rebuilt in a worker; the pool runs the models built by mlp(), cnn() and vit() (the shipped backbones among them, with any head) and Keras models imported with importLayersModel; run this one without 'parallel'`,
    );
  }
  const d = { name: model.name as 'mlp' | 'cnn' | 'vit', config: model.config };
  const rebuilt = buildModel(d);
  const same = paths(rebuilt.spec).join() === paths(model.spec).join() && paths(model.spec).every((p) => rebuilt.spec[p]!.shape.join() === model.spec[p]!.shape.join());
  if (!same) throw new ConfigError(`${caller}: the '${model.name}' model's config does not rebuild its parameter spec; a model defined by hand cannot run in a worker`);
  return d;
}

/** Whether a pool can run this model and loss (`fineTune`'s `workers: 'auto'` falls back to this thread where not). */
export function poolRuns(model: Model<Shape, number, number>, loss: TrainerJob['loss']): boolean {
  try {
    describeLoss('', loss, undefined);
    // A Keras model always can (and describing one copies its weights); a builder's is rebuilt and compared.
    if (!(model.name === 'keras' && 'topology' in model)) describe('', model, {});
    return true;
  } catch (e) {
    if (e instanceof ConfigError) return false;
    throw e;
  }
}

/** The loss by name, or a ConfigError: a function cannot be sent to a thread. */
function describeLoss(caller: string, loss: TrainerJob['loss'], labelSmoothing: number | undefined): LossDescription {
  if (loss === undefined) return { kind: 'crossEntropy', labelSmoothing };
  if (loss === (crossEntropy as unknown)) return { kind: 'crossEntropy' };
  if (loss === (meanSquaredError as unknown)) return { kind: 'meanSquaredError' };
  throw new ConfigError(`${caller}: a loss function of your own cannot be sent to a worker; with 'parallel' use the default cross-entropy, crossEntropy or meanSquaredError`);
}

function shareParams(order: readonly string[], params: Params): SharedParams {
  const shapes = order.map((p) => params[p]!.shape);
  const offsets: number[] = [];
  let total = 0;
  for (const s of shapes) {
    offsets.push(total);
    total += s.reduce((a, b) => a * b, 1);
  }
  const buffer = new SharedArrayBuffer(total * 4);
  const all = new Float32Array(buffer);
  order.forEach((p, i) => all.set(params[p]!.dataSync() as Float32Array, offsets[i]));
  return { paths: order, shapes, offsets, buffer };
}

function shareData(set: DataSet<SampleShape, Labels>): SharedData {
  const images = new Float32Array(new SharedArrayBuffer(set.images.byteLength));
  images.set(set.images);
  const labels = set.labels instanceof Int32Array ? new Int32Array(new SharedArrayBuffer(set.labels.byteLength)) : new Float32Array(new SharedArrayBuffer(set.labels.byteLength));
  labels.set(set.labels);
  return { images, labels, n: set.n, shape: set.shape };
}

/**
 * Starts `workers` workers through `spawn`, each initialising its own
 * backend, and resolves once all are ready. The pool computes each
 * fine-tuning step's gradient as the sum of its shards' (a shard's loss
 * weighted by its share of the batch), and a selection pass's scores as the
 * sum of each worker's batches; both summed in worker order, so results are
 * identical run to run for a given worker count and equal to the
 * single-thread ones within float tolerance. Only the selected entries'
 * values and gradients cross between threads, through shared memory.
 *
 * Runs the models built by `mlp`, `cnn` and `vit` (the shipped backbones
 * included), Keras models imported with `importLayersModel`, and the losses
 * cross-entropy and `meanSquaredError`; anything else is a `ConfigError`
 * when the run starts.
 */
export async function createPool(caller: string, n: number, backend: BackendName, options: PoolOptions, spawn: Spawn): Promise<WorkerPool> {
  const p = prepare(caller, n, backend, options);
  const threads: PoolThread[] = [];
  // Through a promise, so that a spawn that throws (no more threads) still lets the ones before it be stopped.
  const started = await Promise.allSettled(Array.from({ length: n }, (_, k) => Promise.resolve().then(() => spawn(k, p.initOf(k), p.onFailure, p.startMs))));
  for (const r of started) if (r.status === 'fulfilled') threads.push(r.value);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(threads.map((t) => t.terminate()));
    throw failed.reason;
  }
  return poolOf(p, threads);
}

/**
 * {@link createPool} for a caller that cannot wait asynchronously
 * (`fineTune`'s `workers` option): `start` creates worker `k` at once, and
 * this thread blocks until every worker has reported its backend up (or
 * failed) through shared memory, at most `startMs`.
 */
export function createPoolSync(caller: string, n: number, backend: BackendName, options: PoolOptions, start: (k: number, init: WorkerInit, onFailure: (e: Error) => void) => PoolThread): WorkerPool {
  const p = prepare(caller, n, backend, options);
  const { startMs } = p;
  const threads: PoolThread[] = [];
  const stop = () => void Promise.all(threads.map((t) => t.terminate()));
  try {
    for (let k = 0; k < n; k++) threads.push(start(k, p.initOf(k), p.onFailure));
    const deadline = performance.now() + startMs;
    for (let up = Atomics.load(p.sig, 2); up < n; up = Atomics.load(p.sig, 2)) {
      p.deaths();
      const left = deadline - performance.now();
      if (left <= 0) throw new BackendError(`${caller}: ${n - up} of ${n} workers did not start within ${startMs} ms`);
      Atomics.wait(p.sig, 2, up, Math.min(left, 1000));
    }
  } catch (e) {
    stop();
    throw e;
  }
  for (let k = 0; k < n; k++) {
    const r = readReply(p.mailboxes[k]!);
    if (!r.ok) {
      stop();
      throw new BackendError(`${caller}: worker ${k} failed to start: ${r.name === '' ? '' : `${r.name}: `}${r.message}`);
    }
  }
  return poolOf(p, threads);
}

/** What a pool shares with its workers, made before any starts. */
interface Prepared {
  readonly caller: string;
  readonly n: number;
  readonly backend: BackendName;
  readonly minShard: number;
  readonly timeoutMs: number;
  /** How long a worker has to start. */
  readonly startMs: number;
  readonly sig: Int32Array;
  readonly mailboxes: readonly SharedArrayBuffer[];
  readonly initOf: (k: number) => WorkerInit;
  readonly onFailure: (e: Error) => void;
  /** Throws a BackendError naming the first worker that died, if one did (reportDeath). */
  readonly deaths: () => void;
  /** A worker's failure after it started (seen when this thread next runs its event loop). */
  failure?: Error;
}

/** The options checked, the signal and the mailboxes. */
function prepare(caller: string, n: number, backend: BackendName, options: PoolOptions): Prepared {
  if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError(`${caller}: workers must be a positive integer, got ${String(n)}`);
  const minShard = options.minShard ?? 16;
  if (!Number.isSafeInteger(minShard) || minShard < 1) throw new ConfigError(`${caller}: minShard must be a positive integer, got ${String(minShard)}`);
  const timeoutMs = options.timeoutMs ?? 600_000;
  if (!(typeof timeoutMs === 'number' && timeoutMs > 0)) throw new ConfigError(`${caller}: timeoutMs must be a number > 0, got ${String(timeoutMs)}`);
  if (backend !== 'wasm' && backend !== 'cpu' && backend !== 'tensorflow') throw new ConfigError(`${caller}: unknown backend '${String(backend)}'`);
  if (typeof SharedArrayBuffer === 'undefined') {
    throw new ConfigError(`${caller}: SharedArrayBuffer is not available; in a browser, serve the page cross-origin isolated (the headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)`);
  }
  try {
    // Returns at once ('not-equal') where this thread may block; throws where it may not (a page's main thread).
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
  } catch {
    throw new ConfigError(`${caller}: this thread cannot block, and fineTune waits for the workers synchronously; run the pool, and the fine-tuning that uses it, in a dedicated Web Worker, not on the page's main thread`);
  }

  // [0]: replies posted, [1]: selection batches done (notified on 0); [2]: workers started (on 2); [3]: workers dead (on 0 and 2).
  const signal = new SharedArrayBuffer(16);
  const sig = new Int32Array(signal);
  const mailboxes = Array.from({ length: n }, () => new SharedArrayBuffer(MAILBOX_BYTES));
  const p: Prepared = {
    caller,
    n,
    backend,
    minShard,
    timeoutMs,
    startMs: Math.min(timeoutMs, 120_000),
    sig,
    mailboxes,
    initOf: (k) => ({ backend, signal, mailbox: mailboxes[k]! }),
    // Seen when this thread next runs its event loop; the next request then fails at once instead of waiting out the timeout.
    onFailure: (e) => (p.failure ??= e),
    deaths: () => {
      if (Atomics.load(sig, 3) === 0) return;
      for (const [k, m] of mailboxes.entries()) {
        const why = diedIn(m);
        if (why !== undefined) throw new BackendError(`${caller}: worker ${k} ${why}; the pool is stopped`);
      }
    },
  };
  return p;
}

/** The pool over started workers. */
function poolOf(p: Prepared, threads: readonly PoolThread[]): WorkerPool {
  const { caller, n, backend, minShard, timeoutMs, sig, mailboxes } = p;
  let stopped = false;
  const stop = async () => {
    stopped = true;
    await Promise.all(threads.map((t) => t.terminate()));
  };

  /** Posts one request per listed worker and blocks until each has replied; replies in the same order. */
  const exchange = (requests: readonly (readonly [number, Request])[], onProgress?: (done: number) => void): Extract<Reply, { ok: true }>[] => {
    if (stopped) throw new BackendError(`${caller}: the pool has been terminated`);
    if (p.failure) throw p.failure;
    const base = Atomics.load(sig, 0);
    const progress0 = Atomics.load(sig, 1);
    for (const [k, r] of requests) threads[k]!.post(r);
    const deadline = performance.now() + timeoutMs;
    let seen = progress0;
    let callbackError: unknown;
    for (;;) {
      try {
        p.deaths();
      } catch (e) {
        void stop();
        throw e;
      }
      const got = Atomics.load(sig, 0);
      const done = Atomics.load(sig, 1);
      if (onProgress && done !== seen && callbackError === undefined) {
        seen = done;
        // A throwing callback must not leave replies behind for the next request: wait them out first.
        try {
          onProgress(done - progress0);
        } catch (e) {
          callbackError = e;
        }
      }
      if (got - base >= requests.length) break;
      const left = deadline - performance.now();
      if (left <= 0) {
        void stop();
        throw new BackendError(`${caller}: no reply from the workers within ${timeoutMs} ms; the pool is stopped`);
      }
      Atomics.wait(sig, 0, got, Math.min(left, 1000));
    }
    const replies = requests.map(([k]) => readReply(mailboxes[k]!));
    if (callbackError !== undefined) throw callbackError;
    for (const [i, r] of replies.entries()) {
      if (!r.ok && r.died) {
        // It died after the last check (its flag may not show yet): its reply is gone.
        void stop();
        throw new BackendError(`${caller}: worker ${requests[i]![0]} ${r.message}; the pool is stopped`);
      }
      if (!r.ok) {
        const Known = ERRORS[r.name];
        throw Known ? new Known(r.message) : new BackendError(`${caller}: worker ${requests[i]![0]}: ${r.name}: ${r.message}`);
      }
    }
    return replies as Extract<Reply, { ok: true }>[];
  };

  // A config can rebuild the spec and still not be the model (a hand-made
  // one under a builder's name): compare logits on a few samples, once per model.
  const verified = new WeakSet<object>();
  const verify = (model: Model<Shape, number, number>, d: ModelDescription, params: SharedParams, data: DataSet<SampleShape, Labels>) => {
    if (verified.has(model)) return;
    const count = Math.min(2, data.n);
    const per = data.shape.reduce((a, b) => a * b, 1);
    const x = data.images.slice(0, count * per);
    const shape = [count, ...data.shape];
    const mine = tf.tidy(() => {
      const leaves = leafArrays(params);
      const ps = Object.fromEntries(params.paths.map((p, i) => [p, tf.tensor(leaves[i]!, [...params.shapes[i]!])]));
      return model.apply(ps, tf.tensor(x, shape) as never).logits;
    });
    const ours = mine.dataSync();
    mine.dispose();
    const theirs = new Float32Array(new SharedArrayBuffer(ours.length * 4));
    exchange([[0, { op: 'probe', model: d, params, x, shape, out: theirs }]]);
    const off = ours.some((v, i) => !(Math.abs(v - theirs[i]!) <= 1e-3 * (1 + Math.abs(v))));
    if (off) throw new ConfigError(`${caller}: the '${model.name}' model rebuilt from its config computes other outputs than this one; a model defined by hand cannot run in a worker`);
    verified.add(model);
  };

  let runs = 0;
  const pool: WorkerPool = {
    workers: n,
    backend,
    scores(job: ScoresJob): Scores {
      requireBackend(`${caller}.scores`);
      const d = describe(caller, job.model, job.params);
      const order = paths(job.spec);
      const params = shareParams(order, job.params);
      verify(job.model, d, params, job.data);
      const data = shareData(job.data);
      const m = Math.min(n, job.batches.length);
      if (m === 0) return Object.fromEntries(order.map((p) => [p, new Float32Array(leafSize(job.spec[p]!))]));
      const total = params.buffer.byteLength / 4;
      const out = new SharedArrayBuffer(m * total * 4);
      // Round-robin keeps the workers' loads within one batch of each other.
      const requests = Array.from({ length: m }, (_, k) => {
        const mine = job.batches.flatMap((indices, b) => (b % m === k ? [{ b, indices }] : []));
        const r: Request = { op: 'scores', model: d, params, data, batches: mine, seed: job.seed, name: job.name, loss: job.loss, temperature: job.temperature, square: job.square, out: new Float32Array(out, k * total * 4, total) };
        return [k, r] as const;
      });
      exchange(requests, job.onBatch);
      // Worker 0's sums, then 1's, …: a fixed order.
      const sums = new Float32Array(out, 0, total).slice();
      for (let k = 1; k < m; k++) {
        const s = new Float32Array(out, k * total * 4, total);
        for (let j = 0; j < total; j++) sums[j]! += s[j]!;
      }
      return Object.fromEntries(order.map((p, i) => [p, sums.subarray(params.offsets[i]!, params.offsets[i]! + leafSize(job.spec[p]!))]));
    },
    trainer(job: TrainerJob): GradientTrainer {
      requireBackend(`${caller}.trainer`);
      const loss = describeLoss(caller, job.loss, job.labelSmoothing);
      const d = describe(caller, job.model, job.params);
      const params = shareParams(paths(job.model.spec), job.params);
      verify(job.model, d, params, job.train);
      const data = shareData(job.train);
      // Per trainable leaf its selected indices, or null where the whole leaf trains.
      const indices = maskToIndices(job.mask);
      const selected = job.trainable.map((p) => (indices[p]!.length === job.mask.bits[p]!.length ? null : indices[p]!));
      const sizes = job.trainable.map((p, i) => selected[i]?.length ?? leafSize(job.model.spec[p]!));
      const total = sizes.reduce((a, b) => a + b, 0);
      const valuesBuffer = new SharedArrayBuffer(total * 4);
      const gradsBuffer = new SharedArrayBuffer(n * total * 4);
      const values = new Float32Array(valuesBuffer);
      const grads = Array.from({ length: n }, (_, k) => new Float32Array(gradsBuffer, k * total * 4, total));
      const run = ++runs;
      let open = true;
      const end = () => {
        open = false;
        if (!stopped) for (const t of threads) t.post({ op: 'trainEnd', run });
      };
      try {
        exchange(threads.map((_, k) => [k, { op: 'trainBegin', run, model: d, params, data, trainable: job.trainable, selected, values: valuesBuffer, grads: gradsBuffer, gradsAt: k * total, loss }] as const));
      } catch (e) {
        // Workers that did start the run let go of it.
        end();
        throw e;
      }
      return {
        step(current, indices) {
          if (!open) throw new BackendError(`${caller}: this fine-tuning run has ended`);
          let at = 0;
          job.trainable.forEach((p, i) => {
            // Read in place (no copy out of wasm's heap), then copied into the shared values at once.
            const host = hostView(current[p]!);
            const idx = selected[i];
            if (idx === null || idx === undefined) values.set(host, at);
            else for (let j = 0; j < idx.length; j++) values[at + j] = host[idx[j]!]!;
            at += sizes[i]!;
          });
          const b = indices.length;
          const shards = Math.max(1, Math.min(n, Math.floor(b / minShard), b));
          const requests = Array.from({ length: shards }, (_, k) => {
            const part = indices.subarray(Math.floor((k * b) / shards), Math.floor(((k + 1) * b) / shards));
            return [k, { op: 'trainStep', run, indices: part, scale: part.length / b }] as const;
          });
          const replies = exchange(requests);
          // Fixed order: worker 0's shard, then 1's, … Shard 0 is copied, not added to zeros: the same floats, at memcpy speed.
          const sum = grads[0]!.slice();
          let value = replies[0]!.value;
          for (let k = 1; k < shards; k++) {
            const g = grads[k]!;
            for (let j = 0; j < total; j++) sum[j]! += g[j]!;
            value += replies[k]!.value;
          }
          at = 0;
          const out = Object.fromEntries(
            job.trainable.map((p, i) => {
              const shape = [...job.model.spec[p]!.shape];
              const idx = selected[i];
              let leaf: Float32Array;
              if (idx === null || idx === undefined) leaf = sum.subarray(at, at + sizes[i]!);
              else {
                leaf = new Float32Array(leafSize(job.model.spec[p]!));
                for (let j = 0; j < idx.length; j++) leaf[idx[j]!] = sum[at + j]!;
              }
              at += sizes[i]!;
              return [p, tf.tensor(leaf, shape)];
            }),
          );
          return { value: tf.scalar(value), grads: out };
        },
        dispose() {
          if (open) end();
        },
      };
    },
    tensors() {
      return exchange(threads.map((_, k) => [k, { op: 'tensors' }] as const)).map((r) => r.value);
    },
    terminate: stop,
  };
  const asyncDispose = (Symbol as { asyncDispose?: symbol }).asyncDispose;
  if (asyncDispose !== undefined) Object.defineProperty(pool, asyncDispose, { value: stop });
  return pool;
}
