/**
 * Criteria: how much each entry matters. A criterion computes a score tree
 * (one Float32Array per leaf) from a selection environment; the environment
 * caches scores by the criterion's key, so every selector that needs the
 * same scores shares one computation — a union of two gradient selectors
 * runs one data pass.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { requireBackend } from '../core/backend.js';
import { ConfigError, leafSize, mapTree, paths, rng, ShapeError, SpecError, type LeafSpec, type ParamSpec, type Params, type Shape, type Tensor, type Tree } from '../core/index.js';
import { assertDataSet, batches, type DataFits, type DataSet, type Labels, type SampleShape } from '../data/index.js';
import { assertFits } from '../data/images.js';
import type { KernelInput, Model } from '../models/index.js';
import { selectionBatchLoss } from './batchloss.js';
import type { GradientEngine } from './parallel.js';
import { poolRunsModel, startPool, workersFor } from './pools.js';

/**
 * One score per entry, per leaf, host-side.
 * @category Selection
 */
export type Scores = Tree<Float32Array>;

/**
 * Progress of a long computation.
 * @category Selection
 */
export interface Progress {
  /** What is running, e.g. `'gradient:supcon'`. */
  readonly task: string;
  /** Units done. */
  readonly done: number;
  /** Units in all. */
  readonly total: number;
}

/**
 * What selectors run against: the spec, the parameters, optionally the
 * model and training data (for gradient criteria), a seed, and the cache of
 * scores. Build one with {@link selectionEnv}.
 * @category Selection
 */
export interface SelectionEnv {
  /** The spec masks cover. */
  readonly spec: ParamSpec;
  /** The (pre-trained) parameters. */
  readonly params: Params;
  /** The model, for criteria that need a forward pass. */
  readonly model?: Model<Shape, number, number> | undefined;
  /** Training data (its samples fit the model's input), for criteria that need data. */
  readonly data?: DataSet<SampleShape, Labels> | undefined;
  /** Seed of random criteria, shuffling and augmentation. */
  readonly seed: number;
  /** Called as long computations advance. */
  readonly onProgress?: ((p: Progress) => void) | undefined;
  /** Scores computed so far, by criterion key. */
  readonly cache: Map<string, Scores>;
  /** Where gradient passes run (e.g. `workerPool` from `sparsetune/node`); absent, in this thread. */
  readonly parallel?: GradientEngine | undefined;
  /** Worker threads started for each gradient pass (`selectionEnv`'s `workers`); absent, none. */
  readonly workers?: number | 'auto' | undefined;
}

/**
 * A criterion: a cache key and how to compute its scores.
 * @category Selection
 */
export interface Criterion {
  /** Identifies the scores: equal keys mean equal scores within an environment. */
  readonly key: string;
  /** Computes the scores (the environment calls this at most once per key). */
  readonly compute: (env: SelectionEnv) => Scores;
}

/**
 * Options of {@link selectionEnv}: a model taking samples of shape `I` and
 * data of shape `S`, which must fit it (a compile error where both are
 * literal, a `ShapeError` at run time otherwise).
 * @category Selection
 */
export interface SelectionEnvOptions<I extends Shape = Shape, S extends SampleShape = SampleShape> {
  /** Parameters to select from. */
  readonly params: Params;
  /** The spec (default: the model's). */
  readonly spec?: ParamSpec;
  /** The model, for gradient and sensitivity criteria. */
  readonly model?: Model<I, number, number>;
  /** Training data, for gradient and sensitivity criteria (class labels). */
  readonly data?: DataSet<S, Labels> & DataFits<I, S>;
  /** Default 0. */
  readonly seed?: number;
  /** Progress of score computations. */
  readonly onProgress?: (p: Progress) => void;
  /**
   * Runs the gradient passes (GPS's {@link gradient}, SPT's
   * {@link sensitivity}) in a {@link GradientEngine}, e.g. worker threads
   * from `workerPool` in `sparsetune/node`: the same scores within float
   * tolerance (the batches' sums are added in another order), identical for
   * a given engine and worker count.
   */
  readonly parallel?: GradientEngine;
  /**
   * Worker threads for each gradient pass (Node, where `sparsetune/node`
   * is imported): `n` starts that many for the pass and stops them after;
   * `'auto'` takes the machine's cores (no more than the pass has batches)
   * where the pass is long enough to pay
   * for their start-up (4 batches or more, 256 samples or more) and this
   * thread otherwise. Default: this thread. Not with `parallel`.
   */
  readonly workers?: number | 'auto';
}

/**
 * An environment to run selectors in.
 * @example
 * ```ts
 * const env = selectionEnv({ model, params, data: task.train, seed: 0 });
 * const mask = select(gps({ k: 1 }), env);
 * ```
 * @category Selection
 */
export function selectionEnv<I extends Shape, S extends SampleShape>(options: SelectionEnvOptions<I, S>): SelectionEnv {
  requireBackend('selectionEnv');
  const spec = options.spec ?? options.model?.spec;
  if (spec === undefined) throw new SpecError('selectionEnv: give a spec or a model');
  if (options.data !== undefined) assertDataSet(options.data, 'selectionEnv: data', options.model?.classes);
  if (options.model !== undefined && options.data !== undefined) assertFits('selectionEnv', 'data', options.model.input, options.data.shape);
  const seed = options.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw new SpecError(`selectionEnv: seed must be a safe integer, got ${String(seed)}`);
  if (options.workers !== undefined && options.parallel !== undefined) throw new SpecError('selectionEnv: give workers or parallel, not both');
  // Checked here (a bad value, or threads where none can start), used per pass.
  workersFor('selectionEnv', options.workers, () => false);
  const env: SelectionEnv = { spec, params: options.params, model: options.model as Model<Shape, number, number> | undefined, data: options.data, seed, onProgress: options.onProgress, cache: new Map(), parallel: options.parallel, workers: options.workers };
  checked.add(env);
  return env;
}

/** Environments whose data {@link selectionEnv} has checked; one built by hand is checked where its data is used. */
const checked = new WeakSet<SelectionEnv>();

/**
 * The scores of `criterion` in `env`, computed on first use and cached.
 * @example
 * ```ts
 * const g = scoresOf(env, gradient()); // a Float32Array per leaf
 * ```
 * @category Selection
 */
export function scoresOf(env: SelectionEnv, criterion: Criterion): Scores {
  let s = env.cache.get(criterion.key);
  if (s === undefined) {
    s = criterion.compute(env);
    for (const p of paths(env.spec)) {
      const got = s[p];
      if (got === undefined || got.length !== leafSize(env.spec[p]!)) {
        throw new SpecError(`criterion '${criterion.key}': scores for leaf '${p}' should hold ${leafSize(env.spec[p]!)} values, got ${got?.length ?? 'none'}`);
      }
    }
    env.cache.set(criterion.key, s);
  }
  return s;
}

/**
 * Which loss a gradient criterion differentiates: the head-free supervised
 * contrastive loss on the backbone's features of two augmented views (as
 * GPS), or cross-entropy through the (fresh) head ("Head+CE").
 * @category Selection
 */
export type SelectionLoss = 'supcon' | 'ce';

/**
 * Options of gradient-based criteria.
 * @category Selection
 */
export interface GradientOptions {
  /** Default `'supcon'` for {@link gradient}, `'ce'` for {@link sensitivity}. */
  readonly loss?: SelectionLoss;
  /** Images per batch (default 32). */
  readonly batchSize?: number;
  /** SupCon temperature (default 0.07). */
  readonly temperature?: number;
}

/** A tensor's values on the host; the tensor is disposed. */
function readAndDispose(t: tf.Tensor): Float32Array {
  const host = new Float32Array(t.dataSync());
  t.dispose();
  return host;
}

/** One pass over (part of) the data, accumulating per-batch gradients into one buffer per leaf. */
function gradientPass(env: SelectionEnv, name: string, options: GradientOptions, maxSamples: number, square: boolean): Scores {
  const { model, data } = env;
  if (model === undefined || data === undefined) throw new SpecError(`${name}: the selection environment needs a model and training data`);
  if (!checked.has(env)) assertDataSet(data, `${name}: data`, model.classes);
  if (!(data.labels instanceof Int32Array)) throw new ShapeError(`${name}: the selection losses (SupCon, cross-entropy) need int32 class labels; the data holds regression targets`);
  const classes = data as DataSet<SampleShape>;
  const loss = options.loss ?? 'supcon';
  const batchSize = options.batchSize ?? 32;
  const ps = paths(env.spec);
  const r = rng(env.seed).fork(name);
  const total = Math.ceil(Math.min(data.n, maxSamples) / batchSize);
  const workers = env.parallel === undefined ? workersFor(name, env.workers, () => total >= 4 && Math.min(data.n, maxSamples) >= 256 && poolRunsModel(model, undefined), total) : 1;
  const pool = workers > 1 ? startPool(workers, name) : undefined;
  const engine = env.parallel ?? pool;
  if (engine !== undefined) {
    try {
      // The same batches in the same order as below, so the engine sums the same per-batch gradients.
      const order: Int32Array[] = [];
      for (const batch of batches(classes, batchSize, { rng: r.fork('order') })) {
        if (order.length === total) break;
        order.push(batch.indices);
      }
      const sums = engine.scores({
        model, params: env.params, spec: env.spec, data: classes, batches: order, seed: env.seed, name, loss, temperature: options.temperature, square,
        onBatch: env.onProgress && ((done) => env.onProgress!({ task: name, done, total })),
      });
      return Object.fromEntries(ps.map((p) => [p, square ? sums[p]! : sums[p]!.map(Math.abs)]));
    } finally {
      void pool?.terminate();
    }
  }
  const sums = ps.map((p) => tf.keep(tf.zerosLike(env.params[p]!)));
  let done = 0;
  try {
    for (const batch of batches(classes, batchSize, { rng: r.fork('order') })) {
      if (done === total) break;
      tf.tidy(() => {
        const f = (...ts: tf.Tensor[]) => {
          const params = Object.fromEntries(ps.map((p, i) => [p, ts[i]!]));
          return selectionBatchLoss(model, params, classes, { x: () => batch.x, y: batch.y, indices: batch.indices }, loss, options.temperature, r.fork(`views${done}`));
        };
        // The engine's own entry point, because it allows leaves the loss never
        // touches (the head under SupCon): their gradient is zero.
        const xs = ps.map((p) => env.params[p]!);
        const { grads } = tf.engine().gradients(() => f(...xs), xs, undefined, true);
        grads.forEach((g, i) => {
          if (g == null) return;
          const next = tf.keep(tf.add(sums[i]!, square ? tf.square(g) : g));
          sums[i]!.dispose();
          sums[i] = next;
        });
      });
      done++;
      env.onProgress?.({ task: name, done, total });
    }
  } catch (e) {
    // The running sums go with the error (a throwing onProgress's included), which propagates unchanged.
    tf.dispose(sums);
    throw e;
  }
  const out = Object.fromEntries(
    ps.map((p, i) => {
      const out = square ? sums[i]! : tf.abs(sums[i]!);
      if (!square) sums[i]!.dispose();
      return [p, readAndDispose(out)];
    }),
  );
  return out;
}

/**
 * GPS's criterion: |Σ over the batches of one pass of the training data of
 * ∇W| — the signed batch gradients summed, the absolute value taken at the
 * end (as the reference code does; not Σ|∇W|). The loss is SupCon on two
 * augmented views by default, or cross-entropy through the head.
 * @example
 * ```ts
 * neuron(1, gradient({ loss: 'ce' })) // the Head+CE ablation
 * ```
 * @category Criteria
 */
export function gradient(options: GradientOptions = {}): Criterion {
  const loss = options.loss ?? 'supcon';
  const o = { ...options, loss };
  return {
    key: `gradient:${loss}:${o.batchSize ?? 32}:${o.temperature ?? 0.07}`,
    compute: (env) => gradientPass(env, `gradient:${loss}`, o, Infinity, false),
  };
}

/**
 * SPT's criterion: Σ over batches of (∇W)², over `samples` training images
 * (default 512: 16 batches of 32, as the reference scripts), cross-entropy
 * through the head by default.
 * @example
 * ```ts
 * net(fraction(0.01), sensitivity({ samples: 256 }))
 * ```
 * @category Criteria
 */
export function sensitivity(options: GradientOptions & { readonly samples?: number } = {}): Criterion {
  const loss = options.loss ?? 'ce';
  const samples = options.samples ?? 512;
  const o = { ...options, loss };
  return {
    key: `sensitivity:${loss}:${o.batchSize ?? 32}:${samples}:${o.temperature ?? 0.07}`,
    compute: (env) => gradientPass(env, `sensitivity:${loss}`, o, samples, true),
  };
}

/**
 * |W| of the environment's parameters.
 * @example
 * ```ts
 * neuron(1, magnitude())
 * ```
 * @category Criteria
 */
export const magnitude = (): Criterion => ({
  key: 'magnitude',
  compute: (env) => mapTree(env.spec, (_, p) => readAndDispose(tf.abs(env.params[p]!))),
});

/**
 * Seeded i.i.d. uniform scores, from the environment's seed and each leaf's path.
 * @example
 * ```ts
 * net(sameAs(gpsMask), random()) // Net-Random
 * ```
 * @category Criteria
 */
export const random = (): Criterion => ({
  key: 'random',
  compute: (env) =>
    mapTree(env.spec, (leaf, p) => {
      const r = rng(env.seed).fork('random').fork(p);
      const out = new Float32Array(leafSize(leaf));
      for (let i = 0; i < out.length; i++) out[i] = r.uniform();
      return out;
    }),
});

let fromScoresCount = 0;
/**
 * Any user-supplied scores (a function of the environment, or a fixed tree).
 * Give `key` to share them between selectors; without one each call is its own criterion.
 * @example
 * ```ts
 * // The pruning world's "Taylor" score |W · ∇W|, from two criteria.
 * const taylor = fromScores((env) => {
 *   const g = scoresOf(env, gradient({ loss: 'ce' }));
 *   const w = scoresOf(env, magnitude());
 *   return mapTree(g, (gs, p) => gs.map((v, i) => v * w[p]![i]!));
 * }, 'taylor');
 * ```
 * @category Criteria
 */
export function fromScores(scores: Scores | ((env: SelectionEnv) => Scores), key = `fromScores#${++fromScoresCount}`): Criterion {
  return { key, compute: (env) => (typeof scores === 'function' ? scores(env) : scores) };
}

/**
 * Options of {@link feedforward}.
 * @category Selection
 */
export interface FeedforwardOptions {
  /** Images per forward batch (default 32). Only the peak memory depends on it, not the scores. */
  readonly batchSize?: number;
  /** Training images to average over (default: all of them). */
  readonly samples?: number;
}

/** What one use of a kernel has accumulated: Σ|input| on the device, and how many rows or images it summed. */
interface Use {
  sum: tf.Tensor;
  count: number;
  readonly window: KernelInput['window'];
}

/** Output rows and the leading zero padding of a window along one axis, as TensorFlow pads. */
function windowAxis(size: number, k: number, stride: number, padding: 'same' | 'valid'): { out: number; before: number } {
  if (padding === 'valid') return { out: Math.floor((size - k) / stride) + 1, before: 0 };
  const out = Math.ceil(size / stride);
  return { out, before: Math.floor(Math.max((out - 1) * stride + k - size, 0) / 2) };
}

/**
 * The mean |input| each entry of `leaf` multiplies, for one use of it, as
 * one value per leaf entry. A product over the last axis: the mean over every
 * row of |input| along the fan-in, repeated over the outputs. A convolution:
 * for each window position (u, v) and input channel c, the mean over images
 * and output positions of |input| at the position the window reads, zero
 * padding included — so a border tap that often reads padding scores lower.
 */
function meanInput(path: string, leaf: LeafSpec, sum: Float32Array, sumShape: readonly number[], count: number, window: KernelInput['window']): Float32Array {
  const shape = leaf.shape;
  const size = leafSize(leaf);
  const out = new Float32Array(size);
  if (leaf.neuronAxis !== shape.length - 1) throw new SpecError(`feedforward: kernel '${path}' must have its neuron axis last, got axis ${leaf.neuronAxis} of [${shape.join(', ')}]`);
  if (window === undefined) {
    const outputs = shape[shape.length - 1]!;
    const fanIn = size / outputs;
    if (sum.length !== fanIn) throw new ShapeError(`feedforward: kernel '${path}' [${shape.join(', ')}] has fan-in ${fanIn}, but its input's last axis is ${sum.length}`);
    for (let i = 0; i < size; i++) out[i] = sum[Math.floor(i / outputs)]! / count;
    return out;
  }
  const [h, w, c] = sumShape as [number, number, number];
  const [kh, kw] = window.size;
  const perChannel = window.depthwise ? shape[2]! / c : shape[3]!;
  const expected = window.depthwise ? [kh, kw, c * perChannel] : [kh, kw, c, perChannel];
  if (shape.length !== expected.length || expected.some((d, i) => d !== shape[i] || !Number.isInteger(d))) {
    throw new ShapeError(`feedforward: kernel '${path}' [${shape.join(', ')}] does not fit a ${kh}×${kw} ${window.depthwise ? 'depthwise ' : ''}window over ${c} input channels`);
  }
  const ay = windowAxis(h, kh, window.strides[0], window.padding);
  const ax = windowAxis(w, kw, window.strides[1], window.padding);
  const reads = count * ay.out * ax.out;
  const mean = new Float64Array(kh * kw * c);
  for (let u = 0; u < kh; u++) {
    for (let v = 0; v < kw; v++) {
      const base = (u * kw + v) * c;
      for (let oy = 0; oy < ay.out; oy++) {
        const y = oy * window.strides[0] + u - ay.before;
        if (y < 0 || y >= h) continue; // zero padding: adds nothing
        for (let ox = 0; ox < ax.out; ox++) {
          const x = ox * window.strides[1] + v - ax.before;
          if (x < 0 || x >= w) continue;
          const at = (y * w + x) * c;
          for (let ch = 0; ch < c; ch++) mean[base + ch]! += sum[at + ch]!;
        }
      }
    }
  }
  // Leaf entry (u, v, c, o) — or (u, v, c·M + m) for a depthwise leaf — reads channel c at (u, v).
  for (let i = 0; i < size; i++) out[i] = mean[Math.floor(i / perChannel)]! / reads;
  return out;
}

/** One forward pass over (part of) the data, accumulating Σ|input| of every kernel use; no gradient is taken. */
function feedforwardPass(env: SelectionEnv, batchSize: number, maxSamples: number): Scores {
  const name = 'feedforward';
  const { model, data } = env;
  if (model === undefined || data === undefined) throw new SpecError(`${name}: the selection environment needs a model and training data`);
  if (!checked.has(env)) assertDataSet(data, `${name}: data`, model.classes);
  const uses = new Map<string, Use[]>();
  const total = Math.ceil(Math.min(data.n, maxSamples) / batchSize);
  let done = 0;
  try {
    for (const batch of batches(data as DataSet<SampleShape, Labels>, batchSize, { rng: rng(env.seed).fork(name) })) {
      if (done * batchSize >= maxSamples) break;
      // Which use of each kernel this is within the pass (a kernel applied twice accumulates twice).
      const seen = new Map<string, number>();
      const tap = ({ path, input, window }: KernelInput) => {
        const leaf = env.spec[path];
        if (leaf === undefined) throw new SpecError(`${name}: the forward pass tapped '${path}', which is not a leaf of the spec`);
        if (window !== undefined && input.rank !== 4) throw new ShapeError(`${name}: a convolution's input must be [B, H, W, C], got [${input.shape.join(', ')}] for '${path}'`);
        const n = seen.get(path) ?? 0;
        seen.set(path, n + 1);
        const list = uses.get(path) ?? [];
        uses.set(path, list);
        // Products average over every leading axis (images and tokens); convolutions keep
        // the spatial map, summed over images only, for the window positions to read.
        const axes = window === undefined ? [...Array(input.rank - 1).keys()] : [0];
        const count = window === undefined ? input.size / input.shape[input.rank - 1]! : input.shape[0]!;
        const part = tf.tidy(() => tf.sum(tf.abs(input), axes));
        const prev = list[n];
        if (prev === undefined) {
          list.push({ sum: tf.keep(part), count, window });
          return;
        }
        if (prev.sum.shape.join() !== part.shape.join()) {
          part.dispose();
          throw new ShapeError(`${name}: use ${n + 1} of '${path}' changed its input shape between batches`);
        }
        const next = tf.keep(tf.add(prev.sum, part));
        part.dispose();
        prev.sum.dispose();
        prev.sum = next;
        prev.count += count;
      };
      tf.tidy(() => {
        model.apply(env.params, batch.x as Tensor<readonly ['B', ...Shape]>, { tap });
      });
      done++;
      env.onProgress?.({ task: name, done, total });
    }
    return mapTree(env.spec, (leaf, p) => {
      const w = new Float32Array(env.params[p]!.dataSync());
      const list = uses.get(p);
      if (list === undefined) {
        // Kernels must have been seen; a bias multiplies the constant 1, so |b|·1, and the
        // other vectors (norms, tokens, embeddings) are not connections: |w| as well.
        if (leaf.role === 'kernel' || (leaf.role === 'head' && leaf.shape.length > 1)) throw new SpecError(`${name}: the forward pass never tapped kernel '${p}' (a model of your own must call ApplyOptions.tap for each kernel it multiplies)`);
        return w.map(Math.abs);
      }
      const act = new Float32Array(w.length);
      for (const u of list) {
        const m = meanInput(p, leaf, new Float32Array(u.sum.dataSync()), u.sum.shape, u.count, u.window);
        for (let i = 0; i < act.length; i++) act[i]! += m[i]!;
      }
      return w.map((v, i) => Math.abs(v) * act[i]!);
    });
  } finally {
    // The accumulators go on success and on any error (a throwing onProgress's included).
    for (const list of uses.values()) for (const u of list) u.sum.dispose();
  }
}

/**
 * FPS's criterion (Feedforward-based Parameter Selection, arXiv 2510.27359):
 * the score of a kernel entry is |w| · E|a|, its magnitude times the mean
 * magnitude of the input it multiplies, over one forward pass of the
 * training data — no backward pass, no gradient tape. For a product over
 * the last axis (dense layers, attention's q/k/v and projection, the patch
 * embedding, 1×1 convolutions) E|a_i| is taken over images and tokens (or
 * spatial positions); for a convolution, entry (u, v, c, o) gets the mean
 * |input| of channel c at the positions window offset (u, v) reads, padding
 * counting as zero. Biases score |b| (their input is the constant 1);
 * norms, tokens and embeddings score |w|. The model reports its kernels'
 * inputs through {@link ApplyOptions.tap}; a kernel it never reports is a
 * `SpecError`. Use it with {@link neuron} like GPS's gradient, or through
 * the {@link fps} preset.
 * @example
 * ```ts
 * const mask = select(only(byRole('kernel'), neuron(1, feedforward())), env);
 * ```
 * @category Criteria
 */
export function feedforward(options: FeedforwardOptions = {}): Criterion {
  const batchSize = options.batchSize ?? 32;
  const samples = options.samples ?? Infinity;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError(`feedforward: batchSize must be a positive integer, got ${batchSize}`);
  if (!(samples === Infinity || (Number.isInteger(samples) && samples >= 1))) throw new ConfigError(`feedforward: samples must be a positive integer, got ${samples}`);
  return {
    // The batch size is in the key: with `samples` below the data's size it decides how many images are read.
    key: `feedforward:${batchSize}:${samples}`,
    compute: (env) => feedforwardPass(env, batchSize, samples),
  };
}
