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
import { leafSize, mapTree, paths, rng, ShapeError, SpecError, type ParamSpec, type Params, type Shape, type Tree } from '../core/index.js';
import { assertDataSet, batches, type DataFits, type DataSet, type Labels, type SampleShape } from '../data/index.js';
import { assertFits } from '../data/images.js';
import type { Model } from '../models/index.js';
import { selectionBatchLoss } from './batchloss.js';
import type { GradientEngine } from './parallel.js';

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
  const env: SelectionEnv = { spec, params: options.params, model: options.model as Model<Shape, number, number> | undefined, data: options.data, seed, onProgress: options.onProgress, cache: new Map(), parallel: options.parallel };
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
  if (env.parallel !== undefined) {
    // The same batches in the same order as below, so the engine sums the same per-batch gradients.
    const order: Int32Array[] = [];
    for (const batch of batches(classes, batchSize, { rng: r.fork('order') })) {
      if (order.length === total) break;
      order.push(batch.indices);
    }
    const sums = env.parallel.scores({
      model, params: env.params, spec: env.spec, data: classes, batches: order, seed: env.seed, name, loss, temperature: options.temperature, square,
      onBatch: env.onProgress && ((done) => env.onProgress!({ task: name, done, total })),
    });
    return Object.fromEntries(ps.map((p) => [p, square ? sums[p]! : sums[p]!.map(Math.abs)]));
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
