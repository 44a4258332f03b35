/**
 * A pool worker: its own tfjs engine and backend, the model rebuilt from its
 * name and config, the frozen parameters and the data received once per job,
 * and per request the gradient of its shard. {@link startWorker} brings the
 * backend up and returns the request handler; the Node worker thread
 * (`node/worker.ts`) and a browser's Web Worker ({@link servePoolWorker})
 * wire it to their own message events. Results go through shared memory
 * (protocol.ts says why).
 *
 * @module
 */
import * as tfl from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../core/backend.js';
import { hostView } from '../core/hostsums.js';
import { ConfigError, gradsThroughProbes, keepBasePacked, rng, sparseGradEntries, type BasePacked, type Params, type Shape, type SparseGradEntries, type Tensor } from '../core/index.js';
import { subset, toTensors, type DataSet, type Labels, type SampleShape } from '../data/index.js';
import { importLayersModel, weightName, type ImportedModel } from '../keras/import.js';
import { crossEntropy, meanSquaredError, type Model } from '../models/index.js';
import { selectionBatchLoss } from '../selection/batchloss.js';
import { buildModel, failureOf, fatal, leafArrays, reportDeath, writeReply, type LossDescription, type ModelDescription, type Ready, type Reply, type Request, type SharedParams, type WorkerInit } from './protocol.js';

/** The last Keras model this worker rebuilt, by the pool's number for it. */
let keras: { readonly id: number; readonly model: ImportedModel } | undefined;

/**
 * Rebuilds a Keras model from its description, unless it is the one kept:
 * a LayersModel from the topology, given the sender's weights, imported as
 * the sender imported it. (Asynchronous: tfjs builds a LayersModel from
 * JSON only so.)
 */
async function loadKeras(d: Extract<ModelDescription, { name: 'keras' }>): Promise<void> {
  if (keras?.id === d.id) return;
  keras?.model.dispose();
  keras = undefined;
  const layers = await tfl.models.modelFromJSON(d.topology as tfl.serialization.ConfigDict);
  try {
    const byLayer = new Map<string, Map<string, (typeof d.weights)[number]>>();
    for (const w of d.weights) byLayer.set(w.layer, (byLayer.get(w.layer) ?? new Map()).set(w.weight, w));
    for (const layer of layers.layers) {
      const mine = byLayer.get(layer.name);
      if (mine === undefined) continue;
      // setWeights copies into the layer's variables; the tidy frees the temporaries, on a throw too.
      tf.tidy(() =>
        layer.setWeights(
          layer.weights.map((w) => {
            const v = mine.get(weightName(w));
            if (v === undefined) throw new ConfigError(`worker: layer '${layer.name}' has a weight '${weightName(w)}' the sender's model lacks`);
            return tf.tensor(v.values, [...v.shape]);
          }),
        ),
      );
    }
    const { model, params } = importLayersModel(layers, { head: d.head, input: d.input });
    tf.dispose(Object.values(params));
    keras = { id: d.id, model };
  } finally {
    layers.dispose();
  }
}

/** The model a request names: built here, or the Keras model {@link loadKeras} kept. */
function modelOf(d: ModelDescription): Model<Shape, number, number> {
  if (d.name !== 'keras') return buildModel(d);
  if (keras?.id !== d.id) throw new ConfigError(`worker: Keras model ${d.id} was not loaded`);
  return keras.model;
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

function scores(r: Extract<Request, { op: 'scores' }>, sig: Int32Array): Reply {
  const model = modelOf(r.model);
  const data = r.data as unknown as DataSet<SampleShape>;
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
    sums.forEach((s, i) => r.out.set(s.dataSync(), r.params.offsets[i]));
    return { ok: true, value: r.batches.length };
  } finally {
    tf.dispose(xs);
    tf.dispose(sums);
  }
}

function trainBegin(r: Extract<Request, { op: 'trainBegin' }>): Reply {
  const model = modelOf(r.model);
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
    grads: new Float32Array(r.grads, r.gradsAt * 4, r.values.byteLength / 4),
    data: r.data as unknown as DataSet<SampleShape, Labels>,
    loss: lossFn(r.loss),
  });
  return { ok: true, value: 0 };
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
      // Read in place (no copy out of wasm's heap), copied into the shared gradients at once.
      const host = hostView(g);
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
  return { ok: true, value: loss };
}

function probe(r: Extract<Request, { op: 'probe' }>): Reply {
  const model = modelOf(r.model);
  const params = tensorsOf(r.params);
  try {
    const logits = tf.tidy(() => model.apply(params, tf.tensor(r.x, [...r.shape]) as Tensor<readonly ['B', ...Shape]>).logits);
    const host = logits.dataSync();
    logits.dispose();
    if (host.length !== r.out.length) throw new ConfigError(`worker: the rebuilt model gives ${host.length} logits where ${r.out.length} were expected`);
    r.out.set(host);
    return { ok: true, value: host.length };
  } finally {
    tf.dispose(Object.values(params));
  }
}

function handle(r: Request, sig: Int32Array): Reply | undefined {
  switch (r.op) {
    case 'scores':
      return scores(r, sig);
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
      return { ok: true, value: tf.memory().numTensors };
  }
}


/**
 * Brings up this worker's backend, says so (through the mailbox and the
 * signal's third counter), and returns its request handler, which answers
 * each request through the mailbox and wakes the pool.
 */
export async function startWorker(init: WorkerInit): Promise<(r: Request) => void> {
  const sig = new Int32Array(init.signal);
  // Started, or failed to: said through the mailbox too, for a pool that waits blocked (createPoolSync).
  const started = (reply: Reply) => {
    writeReply(init.mailbox, reply);
    Atomics.add(sig, 2, 1);
    Atomics.notify(sig, 2);
  };
  try {
    await initBackend(init.backend);
  } catch (e) {
    started({ ok: false, ...failureOf(e) });
    throw e;
  }
  started({ ok: true, value: 0 });
  const respond = async (r: Request) => {
    let reply: Reply | undefined;
    try {
      if ('model' in r && r.model.name === 'keras') await loadKeras(r.model);
      reply = handle(r, sig);
    } catch (e) {
      reply = { ok: false, ...failureOf(e) };
    }
    if (reply === undefined) return;
    writeReply(init.mailbox, reply);
    Atomics.add(sig, 0, 1);
    Atomics.notify(sig, 0);
  };
  // One request at a time, in the order they came: a Keras model is rebuilt asynchronously.
  let queue = Promise.resolve();
  return (r) => void (queue = queue.then(() => respond(r)));
}

/** The global scope of a Web Worker, as much of it as a pool worker uses (the library builds without the DOM's types). */
interface WorkerScope {
  addEventListener(type: 'message', listener: (event: { readonly data: unknown }) => void): void;
  addEventListener(type: 'error' | 'unhandledrejection', listener: (event: { readonly error?: unknown; readonly message?: string; readonly reason?: unknown }) => void): void;
  postMessage(message: unknown): void;
}

/**
 * Makes the Web Worker this runs in a worker of {@link webWorkerPool}: call
 * it in the script that the pool's `create` starts. The first message it
 * gets is the pool's setup; it brings up its own backend (the wasm backend
 * single-threaded, so that each worker is one core) and answers requests
 * until the pool terminates it. Set tfjs's wasm paths before, as on a page.
 * @example
 * ```ts
 * // pool-worker.ts, bundled as pool-worker.js beside the page
 * import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
 * import { servePoolWorker } from 'sparsetune';
 * setWasmPaths('./');
 * servePoolWorker();
 * ```
 * @category Parallel
 */
export function servePoolWorker(): void {
  const scope = globalThis as unknown as WorkerScope;
  // A page's window has both methods too; only a worker has no document.
  if (typeof scope.addEventListener !== 'function' || typeof scope.postMessage !== 'function' || 'document' in globalThis) {
    throw new ConfigError('servePoolWorker: call it in a Web Worker started by webWorkerPool');
  }
  let handler: ((r: Request) => void) | undefined;
  let dead = false;
  scope.addEventListener('message', (event) => {
    // A worker that reported its death answers nothing more (a browser's worker lives on after an uncaught error).
    if (dead) return;
    if (handler !== undefined) return handler(event.data as Request);
    // The first message: the pool's setup. One core per worker: tfjs's own wasm threads would compete with the pool's.
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    const init = event.data as WorkerInit;
    startWorker(init).then(
      (h) => {
        handler = h;
        // An error no request caught leaves this worker in a state nobody knows: the pool, blocked, learns it through the mailbox and stops.
        const die = (why: string) => {
          if (dead) return;
          dead = true;
          reportDeath(init, `died: ${why}`);
        };
        // (A cross-origin script's error comes with error null and a bare message.)
        scope.addEventListener('error', (e) => die(e.error == null ? (e.message ?? 'an uncaught error') : fatal(e.error)));
        scope.addEventListener('unhandledrejection', (e) => die(fatal(e.reason)));
        scope.postMessage({ ready: true } satisfies Ready);
      },
      (e: unknown) => scope.postMessage({ ready: false, ...failureOf(e) } satisfies Ready),
    );
  });
}
