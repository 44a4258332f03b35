/**
 * The worker thread of {@link workerPool}: its own tfjs engine and backend,
 * the model rebuilt from its name and config, the frozen parameters and the
 * data received once per job, and per request the gradient of its shard.
 * Replies go to a MessagePort of its own, followed by a bump of a shared
 * counter and `Atomics.notify`, which is what lets the main thread wait for
 * them synchronously (`fineTune` and the selection passes are synchronous).
 *
 * @module
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '../core/backend.js';
import { ConfigError, gradsThroughProbes, keepBasePacked, rng, sparseGradEntries, type BasePacked, type Params, type Shape, type SparseGradEntries, type Tensor } from '../core/index.js';
import { subset, toTensors, type DataSet, type Labels, type SampleShape } from '../data/index.js';
import { cnn, crossEntropy, meanSquaredError, mlp, vit, type Model } from '../models/index.js';
import { selectionBatchLoss } from '../selection/batchloss.js';

/** Parameters in one shared buffer: leaf `paths[i]` of shape `shapes[i]` at `offsets[i]` (in floats). */
export interface SharedParams {
  readonly paths: readonly string[];
  readonly shapes: readonly (readonly number[])[];
  readonly offsets: readonly number[];
  readonly buffer: SharedArrayBuffer;
}

/** A data set whose arrays live in shared buffers. */
export interface SharedData {
  readonly images: Float32Array;
  readonly labels: Int32Array | Float32Array;
  readonly n: number;
  readonly shape: readonly number[];
}

/** What rebuilds a model in a worker. */
export interface ModelDescription {
  readonly name: 'mlp' | 'cnn' | 'vit';
  readonly config: Readonly<Record<string, unknown>>;
}

/** The losses a worker can compute, by name. */
export type LossDescription = { readonly kind: 'crossEntropy'; readonly labelSmoothing?: number | undefined } | { readonly kind: 'meanSquaredError' };

/** A request from the pool. Every one but `trainEnd` is answered with one {@link Reply}. */
export type Request =
  | { readonly op: 'scores'; readonly model: ModelDescription; readonly params: SharedParams; readonly data: SharedData; readonly batches: readonly { readonly b: number; readonly indices: Int32Array }[]; readonly seed: number; readonly name: string; readonly loss: 'supcon' | 'ce'; readonly temperature?: number | undefined; readonly square: boolean }
  | {
      readonly op: 'trainBegin';
      readonly run: number;
      readonly model: ModelDescription;
      readonly params: SharedParams;
      readonly data: SharedData;
      readonly trainable: readonly string[];
      /** Per trainable leaf, the selected flat indices, or null for a whole leaf; their values sit in `values`, leaf after leaf, and this worker's gradient of them goes to `grads` at `gradsAt`. */
      readonly selected: readonly (Int32Array | null)[];
      readonly values: SharedArrayBuffer;
      readonly grads: SharedArrayBuffer;
      readonly gradsAt: number;
      readonly loss: LossDescription;
    }
  | { readonly op: 'trainStep'; readonly run: number; readonly indices: Int32Array; readonly scale: number }
  | { readonly op: 'trainEnd'; readonly run: number }
  | { readonly op: 'probe'; readonly model: ModelDescription; readonly params: SharedParams; readonly x: Float32Array; readonly shape: readonly number[] }
  | { readonly op: 'tensors' };

/** A reply: a result, or the error a request raised (its class name and message). */
export type Reply =
  | { readonly ok: true; readonly loss?: number; readonly sums?: readonly Float32Array[]; readonly logits?: Float32Array; readonly tensors?: number }
  | { readonly ok: false; readonly name: string; readonly message: string };

/** What the pool passes each worker at start. */
export interface WorkerInit {
  readonly backend: BackendName;
  readonly signal: SharedArrayBuffer;
  readonly port: MessagePort;
}

/** Builds one of the models a worker supports from its description. */
export function buildModel(d: ModelDescription): Model<Shape, number, number> {
  // A model's config is what its builder took (plus the class count), so it rebuilds it.
  const build = { mlp, cnn, vit }[d.name] as ((config: never) => Model<Shape, number, number>) | undefined;
  if (build === undefined) throw new ConfigError(`worker: no builder for model '${String(d.name)}'`);
  return build(d.config as never);
}

/** Views of the shared buffer as one Float32Array per leaf. */
function leafArrays(s: SharedParams): Float32Array[] {
  return s.paths.map((_, i) => new Float32Array(s.buffer, s.offsets[i]! * 4, s.shapes[i]!.reduce((a, b) => a * b, 1)));
}

function tensorsOf(s: SharedParams): Params {
  const arrays = leafArrays(s);
  return Object.fromEntries(s.paths.map((p, i) => [p, tf.tensor(arrays[i]!, [...s.shapes[i]!])]));
}

function lossFn(d: LossDescription): (logits: tf.Tensor, y: tf.Tensor) => tf.Tensor {
  if (d.kind === 'meanSquaredError') return (logits, y) => meanSquaredError(logits as Tensor<readonly ['B', number]>, y);
  const o = d.labelSmoothing === undefined ? {} : { labelSmoothing: d.labelSmoothing };
  return (logits, y) => crossEntropy(logits as Tensor<readonly ['B', number]>, y as Tensor<readonly ['B']>, o);
}

interface Run {
  readonly model: Model<Shape, number, number>;
  readonly frozen: Params;
  readonly trainable: readonly string[];
  readonly shapes: readonly (readonly number[])[];
  /** This worker's copy of each trainable leaf, updated from the shared values each step. */
  readonly leaves: readonly Float32Array[];
  readonly selected: readonly (Int32Array | null)[];
  readonly values: Float32Array;
  readonly grads: Float32Array;
  readonly data: DataSet<SampleShape, Labels>;
  readonly loss: (logits: tf.Tensor, y: tf.Tensor) => tf.Tensor;
  /**
   * As in fineTune (kernels.ts): per partly selected leaf the cost model
   * favours, its sparse-gradient entries; whether it is differentiated
   * through its probe (decided on the first step); its frozen base, kept packed.
   */
  readonly sparse: Map<number, SparseGradEntries>;
  probed?: ReadonlySet<number>;
  readonly kept: Map<number, BasePacked>;
}

const runs = new Map<number, Run>();

function scores(r: Extract<Request, { op: 'scores' }>): Reply {
  const model = buildModel(r.model);
  const data = r.data as unknown as DataSet<SampleShape>;
  const sig = new Int32Array(init.signal);
  const xs = Object.values(tensorsOf(r.params));
  const sums = xs.map((x) => tf.zerosLike(x));
  try {
    const base = rng(r.seed).fork(r.name);
    for (const { b, indices } of r.batches) {
      tf.tidy(() => {
        const y = tf.tensor1d(subset(data, indices).labels, 'int32');
        const f = () => {
          const params = Object.fromEntries(r.params.paths.map((p, i) => [p, xs[i]!]));
          return selectionBatchLoss(model, params, data, { x: () => toTensors(subset(data, indices)).x, y, indices }, r.loss, r.temperature, base.fork(`views${b}`));
        };
        // As the in-process pass: leaves the loss never touches get no gradient, and count as zero.
        const { grads } = tf.engine().gradients(f, xs, undefined, true);
        grads.forEach((g, i) => {
          if (g == null) return;
          const next = tf.keep(tf.add(sums[i]!, r.square ? tf.square(g) : g));
          sums[i]!.dispose();
          sums[i] = next;
        });
      });
      // Progress: the main thread wakes on index 0 and reads index 1.
      Atomics.add(sig, 1, 1);
      Atomics.notify(sig, 0);
    }
    return { ok: true, sums: sums.map((s) => s.dataSync() as Float32Array) };
  } finally {
    tf.dispose(xs);
    tf.dispose(sums);
  }
}

function trainBegin(r: Extract<Request, { op: 'trainBegin' }>): Reply {
  const model = buildModel(r.model);
  const all = leafArrays(r.params);
  const trainable = new Set(r.trainable);
  const frozen: Params = Object.fromEntries(r.params.paths.flatMap((p, i) => (trainable.has(p) ? [] : [[p, tf.tensor(all[i]!, [...r.params.shapes[i]!])]])));
  const at = r.trainable.map((p) => r.params.paths.indexOf(p));
  const sparse = new Map<number, SparseGradEntries>();
  r.selected.forEach((idx, i) => {
    const e = idx ? sparseGradEntries(r.params.shapes[at[i]!]!, idx) : undefined;
    if (e) sparse.set(i, e);
  });
  runs.set(r.run, {
    sparse,
    kept: new Map(),
    model,
    frozen,
    trainable: r.trainable,
    shapes: at.map((i) => r.params.shapes[i]!),
    leaves: at.map((i) => new Float32Array(all[i]!)),
    selected: r.selected,
    values: new Float32Array(r.values),
    grads: new Float32Array(r.grads, r.gradsAt * 4, new Float32Array(r.values).length),
    data: r.data as unknown as DataSet<SampleShape, Labels>,
    loss: lossFn(r.loss),
  });
  return { ok: true };
}

function trainStep(r: Extract<Request, { op: 'trainStep' }>): Reply {
  const run = runs.get(r.run);
  if (!run) throw new ConfigError(`worker: no fine-tuning run ${r.run}`);
  // Bring this worker's leaves up to the values the main thread wrote.
  let at = 0;
  run.leaves.forEach((leaf, i) => {
    const idx = run.selected[i];
    if (idx === null || idx === undefined) {
      leaf.set(run.values.subarray(at, at + leaf.length));
      at += leaf.length;
    } else {
      for (let j = 0; j < idx.length; j++) leaf[idx[j]!] = run.values[at + j]!;
      at += idx.length;
    }
  });
  const loss = tf.tidy(() => {
    const { x, y } = toTensors(subset(run.data, r.indices));
    const ts = run.leaves.map((leaf, i) => tf.tensor(leaf, [...run.shapes[i]!]));
    for (const [i, k] of run.kept) k.update(ts[i]!);
    // Each shard's mean loss weighted by its share of the batch: the shards' gradients then sum to the batch's.
    // (Probed leaves' gradients come back as their selected values, in idx order.)
    const f = (...ws: tf.Tensor[]) => {
      const params = { ...run.frozen, ...Object.fromEntries(run.trainable.map((p, i) => [p, ws[i]!])) };
      return tf.mul(run.loss(run.model.apply(params, x as Tensor<readonly ['B', ...Shape]>).logits, y), r.scale) as tf.Scalar;
    };
    const first = run.probed === undefined;
    const { value, grads, probed: on } = gradsThroughProbes({ weights: ts, entries: run.sparse, probed: run.probed, loss: f });
    run.probed = on;
    if (first) {
      for (const i of on) {
        const k = keepBasePacked(run.sparse.get(i)!, ts[i]!, r.indices.length);
        if (k) run.kept.set(i, k);
      }
    }
    let out = 0;
    grads.forEach((g, i) => {
      const host = g.dataSync() as Float32Array;
      const idx = run.selected[i];
      if (idx === null || idx === undefined || on.has(i)) {
        run.grads.set(host, out);
        out += host.length;
      } else {
        for (let j = 0; j < idx.length; j++) run.grads[out + j] = host[idx[j]!]!;
        out += idx.length;
      }
    });
    return value.dataSync()[0]!;
  });
  return { ok: true, loss };
}

function probe(r: Extract<Request, { op: 'probe' }>): Reply {
  const model = buildModel(r.model);
  const params = tensorsOf(r.params);
  try {
    const logits = tf.tidy(() => model.apply(params, tf.tensor(r.x, [...r.shape]) as Tensor<readonly ['B', ...Shape]>).logits);
    const host = logits.dataSync() as Float32Array;
    logits.dispose();
    return { ok: true, logits: host };
  } finally {
    tf.dispose(Object.values(params));
  }
}

function handle(r: Request): Reply | undefined {
  switch (r.op) {
    case 'scores':
      return scores(r);
    case 'trainBegin':
      return trainBegin(r);
    case 'trainStep':
      return trainStep(r);
    case 'trainEnd': {
      const run = runs.get(r.run);
      if (run) {
        tf.dispose(Object.values(run.frozen));
        for (const k of run.kept.values()) k.dispose();
        for (const e of run.sparse.values()) e.dispose();
      }
      runs.delete(r.run);
      return undefined;
    }
    case 'probe':
      return probe(r);
    case 'tensors':
      return { ok: true, tensors: tf.memory().numTensors };
  }
}

const init = workerData as WorkerInit;
if (parentPort !== null && init?.port !== undefined) {
  const sig = new Int32Array(init.signal);
  await initBackend(init.backend);
  parentPort.on('message', (r: Request) => {
    let reply: Reply | undefined;
    try {
      reply = handle(r);
    } catch (e) {
      const err = e as Error;
      reply = { ok: false, name: err?.name ?? 'Error', message: err?.message ?? String(e) };
    }
    if (reply === undefined) return;
    // Sums travel without a copy: their buffers move to the main thread.
    init.port.postMessage(reply, reply.ok && reply.sums ? reply.sums.map((s) => s.buffer as ArrayBuffer) : []);
    Atomics.add(sig, 0, 1);
    Atomics.notify(sig, 0);
  });
  parentPort.postMessage('ready');
}
