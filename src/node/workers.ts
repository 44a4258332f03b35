/**
 * Data-parallel gradients over worker threads: {@link workerPool} starts
 * threads that each run their own tfjs backend (the wasm backend is
 * single-threaded in Node, so this is how a run uses more than one core),
 * and hands `fineTune` and the selection passes a {@link GradientEngine}.
 *
 * `fineTune` is synchronous, so the pool is too: it posts a request to each
 * worker and blocks in `Atomics.wait` until their replies (on a MessagePort
 * each, read with `receiveMessageOnPort`) are in. Shards are summed on this
 * thread in worker order, so a result depends only on the worker count.
 *
 * @module
 */
import { availableParallelism } from 'node:os';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { requireBackend, type BackendName } from '../core/backend.js';
import { BackendError, ConfigError, DataError, leafSize, MaskError, paths, ShapeError, SpecError, type Params, type Shape } from '../core/index.js';
import type { DataSet, Labels, SampleShape } from '../data/index.js';
import { crossEntropy, meanSquaredError, type Model } from '../models/index.js';
import type { GradientEngine, GradientTrainer, Scores, ScoresJob, TrainerJob } from '../selection/index.js';
import { buildModel, type LossDescription, type ModelDescription, type Reply, type Request, type SharedData, type SharedParams } from './worker.js';

/**
 * Options of {@link workerPool}.
 * @category Parallel
 */
export interface WorkerPoolOptions {
  /** Worker threads (default: `os.availableParallelism()`). */
  readonly workers?: number;
  /** Each worker's backend (default: this thread's, when it is `'wasm'`, `'cpu'` or `'tensorflow'`; else `'wasm'`). */
  readonly backend?: BackendName;
  /**
   * The fewest samples a fine-tuning shard gets (default 16): a batch of
   * `B` is split over `min(workers, ⌊B / minShard⌋)` workers (at least
   * one), because below that a shard's fixed cost (a step's messages, the
   * model's per-call overhead) outweighs what a second core gains.
   */
  readonly minShard?: number;
  /** Longest one request may take, in ms, before the pool gives up with a `BackendError` and stops its threads (default 10 minutes). */
  readonly timeoutMs?: number;
}

/**
 * A pool of worker threads computing gradients; pass it as `parallel` to
 * `fineTune` or `selectionEnv`. Stop it with {@link WorkerPool.terminate}
 * (or `await using`, where `Symbol.asyncDispose` exists); its threads do not
 * keep the process alive.
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
  /** Stops the threads; later use is a `BackendError`. Safe to call twice. */
  terminate(): Promise<void>;
}

const MODELS = new Set(['mlp', 'cnn', 'vit']);
const ERRORS: Readonly<Record<string, new (message: string) => Error>> = { ConfigError, ShapeError, SpecError, MaskError, DataError, BackendError };

/** Where a worker's code is: the compiled worker.js beside this file, or from source through tsx (tests, benchmarks). */
function workerEntry(): { readonly entry: string | URL; readonly eval: boolean } {
  const self = import.meta.url;
  if (!self.endsWith('.ts')) return { entry: new URL('./worker.js', self), eval: false };
  const source = new URL('./worker.ts', self).href;
  return { entry: `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(source)}); })`, eval: true };
}

/** A model as a worker can rebuild it, or a ConfigError saying why not. */
function describe(model: Model<Shape, number, number>): ModelDescription {
  if (!MODELS.has(model.name)) {
    throw new ConfigError(
      `workerPool: a '${model.name}' model cannot be rebuilt in a worker thread; the pool runs the models built by mlp(), cnn() and vit() (the shipped backbones among them, with any head); run this one without 'parallel'`,
    );
  }
  const d = { name: model.name, config: model.config } as ModelDescription;
  const rebuilt = buildModel(d);
  const same = paths(rebuilt.spec).join() === paths(model.spec).join() && paths(model.spec).every((p) => rebuilt.spec[p]!.shape.join() === model.spec[p]!.shape.join());
  if (!same) throw new ConfigError(`workerPool: the '${model.name}' model's config does not rebuild its parameter spec; a model defined by hand cannot run in a worker thread`);
  return d;
}

/** The loss by name, or a ConfigError: a function cannot be sent to a thread. */
function describeLoss(loss: TrainerJob['loss'], labelSmoothing: number | undefined): LossDescription {
  if (loss === undefined) return { kind: 'crossEntropy', labelSmoothing };
  if (loss === (crossEntropy as unknown)) return { kind: 'crossEntropy' };
  if (loss === (meanSquaredError as unknown)) return { kind: 'meanSquaredError' };
  throw new ConfigError("workerPool: a loss function of your own cannot be sent to a worker thread; with 'parallel' use the default cross-entropy, crossEntropy or meanSquaredError");
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
 * Starts `workers` threads, each initialising its own backend, and resolves
 * once all are ready (a second or two). The pool computes each fine-tuning
 * step's gradient as the sum of its shards' (a shard's loss weighted by its
 * share of the batch), and a selection pass's scores as the sum of each
 * worker's batches; both summed in worker order, so results are identical
 * run to run for a given worker count and equal to the single-thread ones
 * within float tolerance. Only the selected entries' values and gradients
 * cross between threads, through shared memory.
 *
 * Runs the models built by `mlp`, `cnn` and `vit` (the shipped backbones
 * included) and the losses cross-entropy and `meanSquaredError`; anything
 * else is a `ConfigError` when the run starts.
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
export async function workerPool(options: WorkerPoolOptions = {}): Promise<WorkerPool> {
  const n = options.workers ?? availableParallelism();
  if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError(`workerPool: workers must be a positive integer, got ${String(n)}`);
  const minShard = options.minShard ?? 16;
  if (!Number.isSafeInteger(minShard) || minShard < 1) throw new ConfigError(`workerPool: minShard must be a positive integer, got ${String(minShard)}`);
  const timeoutMs = options.timeoutMs ?? 600_000;
  if (!(typeof timeoutMs === 'number' && timeoutMs > 0)) throw new ConfigError(`workerPool: timeoutMs must be a number > 0, got ${String(timeoutMs)}`);
  const current = tf.getBackend();
  const backend: BackendName = options.backend ?? (current === 'wasm' || current === 'cpu' || current === 'tensorflow' ? current : 'wasm');
  if (backend !== 'wasm' && backend !== 'cpu' && backend !== 'tensorflow') throw new ConfigError(`workerPool: unknown backend '${String(backend)}'`);

  // [0]: replies posted, [1]: selection batches done; workers bump them and notify index 0.
  const signal = new SharedArrayBuffer(8);
  const sig = new Int32Array(signal);
  const { entry, eval: isEval } = workerEntry();
  const workers: Worker[] = [];
  const ports: MessagePort[] = [];
  let failure: Error | undefined;
  let stopped = false;
  const stop = async () => {
    stopped = true;
    for (const p of ports) p.close();
    await Promise.all(workers.map((w) => w.terminate()));
  };
  try {
    await Promise.all(
      Array.from({ length: n }, (_, k) => {
        const { port1, port2 } = new MessageChannel();
        const w = new Worker(entry, { eval: isEval, workerData: { backend, signal, port: port2 }, transferList: [port2] });
        workers.push(w);
        ports.push(port1);
        return new Promise<void>((resolve, reject) => {
          w.once('message', () => resolve());
          w.once('error', (e) => reject(new BackendError(`workerPool: worker ${k} failed to start: ${e.message}`)));
          w.once('exit', (code) => reject(new BackendError(`workerPool: worker ${k} exited (code ${code}) while starting`)));
        });
      }),
    );
  } catch (e) {
    await stop();
    throw e;
  }
  for (const [k, w] of workers.entries()) {
    // Seen when this thread next runs its event loop; the next request then fails at once instead of waiting out the timeout.
    w.removeAllListeners();
    w.on('error', (e) => (failure ??= new BackendError(`workerPool: worker ${k} failed: ${e.message}`)));
    w.on('exit', (code) => (failure ??= new BackendError(`workerPool: worker ${k} exited (code ${code})`)));
    w.unref();
  }

  /** Posts one request per listed worker and blocks until each has replied; replies in the same order. */
  const exchange = (requests: readonly (readonly [number, Request])[], onProgress?: (done: number) => void): Reply[] => {
    if (stopped) throw new BackendError('workerPool: the pool has been terminated');
    if (failure) throw failure;
    const base = Atomics.load(sig, 0);
    const progress0 = Atomics.load(sig, 1);
    for (const [k, r] of requests) workers[k]!.postMessage(r);
    const deadline = performance.now() + timeoutMs;
    let seen = progress0;
    let callbackError: unknown;
    for (;;) {
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
        throw new BackendError(`workerPool: no reply from the workers within ${timeoutMs} ms; the pool is stopped`);
      }
      Atomics.wait(sig, 0, got, Math.min(left, 1000));
    }
    const replies = requests.map(([k]) => {
      const m = receiveMessageOnPort(ports[k]!);
      if (m === undefined) throw new BackendError(`workerPool: worker ${k} signalled a reply but none arrived`);
      return m.message as Reply;
    });
    if (callbackError !== undefined) throw callbackError;
    for (const [i, r] of replies.entries()) {
      if (!r.ok) {
        const Known = ERRORS[r.name];
        throw Known ? new Known(r.message) : new BackendError(`workerPool: worker ${requests[i]![0]}: ${r.name}: ${r.message}`);
      }
    }
    return replies;
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
    const [r] = exchange([[0, { op: 'probe', model: d, params, x, shape }]]);
    const theirs = (r as Extract<Reply, { ok: true }>).logits!;
    const mine = tf.tidy(() => {
      const ps = Object.fromEntries(params.paths.map((p, i) => [p, tf.tensor(new Float32Array(params.buffer, params.offsets[i]! * 4, params.shapes[i]!.reduce((a, b) => a * b, 1)), [...params.shapes[i]!])]));
      return model.apply(ps, tf.tensor(x, shape) as never).logits;
    });
    const ours = mine.dataSync();
    mine.dispose();
    const off = ours.some((v, i) => !(Math.abs(v - theirs[i]!) <= 1e-3 * (1 + Math.abs(v))));
    if (off) throw new ConfigError(`workerPool: the '${model.name}' model rebuilt from its config computes other outputs than this one; a model defined by hand cannot run in a worker thread`);
    verified.add(model);
  };

  let runs = 0;
  const pool: WorkerPool = {
    workers: n,
    backend,
    scores(job: ScoresJob): Scores {
      requireBackend('workerPool.scores');
      const d = describe(job.model);
      const order = paths(job.spec);
      const params = shareParams(order, job.params);
      verify(job.model, d, params, job.data);
      const data = shareData(job.data);
      const m = Math.min(n, job.batches.length);
      if (m === 0) return Object.fromEntries(order.map((p) => [p, new Float32Array(leafSize(job.spec[p]!))]));
      // Round-robin keeps the workers' loads within one batch of each other.
      const requests = Array.from({ length: m }, (_, k) => {
        const mine = job.batches.flatMap((indices, b) => (b % m === k ? [{ b, indices }] : []));
        const r: Request = { op: 'scores', model: d, params, data, batches: mine, seed: job.seed, name: job.name, loss: job.loss, temperature: job.temperature, square: job.square };
        return [k, r] as const;
      });
      const replies = exchange(requests, job.onBatch) as Extract<Reply, { ok: true }>[];
      const sums = replies[0]!.sums!;
      for (const r of replies.slice(1)) r.sums!.forEach((s, i) => {
        const acc = sums[i]!;
        for (let j = 0; j < acc.length; j++) acc[j]! += s[j]!;
      });
      return Object.fromEntries(order.map((p, i) => [p, sums[i]!]));
    },
    trainer(job: TrainerJob): GradientTrainer {
      requireBackend('workerPool.trainer');
      const loss = describeLoss(job.loss, job.labelSmoothing);
      const d = describe(job.model);
      const params = shareParams(paths(job.model.spec), job.params);
      verify(job.model, d, params, job.train);
      const data = shareData(job.train);
      const selected = job.trainable.map((p) => {
        const bits = job.mask.bits[p]!;
        let count = 0;
        for (const b of bits) count += b;
        if (count === bits.length) return null;
        const idx = new Int32Array(count);
        for (let i = 0, j = 0; i < bits.length; i++) if (bits[i]) idx[j++] = i;
        return idx;
      });
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
        if (!stopped) for (const w of workers) w.postMessage({ op: 'trainEnd', run } satisfies Request);
      };
      try {
        exchange(workers.map((_, k) => [k, { op: 'trainBegin', run, model: d, params, data, trainable: job.trainable, selected, values: valuesBuffer, grads: gradsBuffer, gradsAt: k * total, loss }] as const));
      } catch (e) {
        // Workers that did start the run let go of it.
        end();
        throw e;
      }
      return {
        step(current, indices) {
          if (!open) throw new BackendError('workerPool: this fine-tuning run has ended');
          let at = 0;
          job.trainable.forEach((p, i) => {
            const host = current[p]!.dataSync() as Float32Array;
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
          const replies = exchange(requests) as Extract<Reply, { ok: true }>[];
          // Fixed order: worker 0's shard, then 1's, …
          const sum = new Float32Array(total);
          let value = 0;
          for (let k = 0; k < shards; k++) {
            const g = grads[k]!;
            for (let j = 0; j < total; j++) sum[j]! += g[j]!;
            value += replies[k]!.loss!;
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
      return exchange(workers.map((_, k) => [k, { op: 'tensors' }] as const)).map((r) => (r as Extract<Reply, { ok: true }>).tensors!);
    },
    terminate: stop,
  };
  const asyncDispose = (Symbol as { asyncDispose?: symbol }).asyncDispose;
  if (asyncDispose !== undefined) Object.defineProperty(pool, asyncDispose, { value: stop });
  return pool;
}
