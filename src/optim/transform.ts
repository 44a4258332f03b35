/**
 * Gradient transformations in the shape of optax: `{ init, update }` pairs
 * composed with `chain`. State is keyed by parameter path (tfjs's own
 * optimizers key moments by position and corrupt them when the set of
 * variables changes), and every function is pure: `update` returns new
 * updates and a new state and never writes to its inputs.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, mapTree, paths, SpecError, type Params, type Tree } from '../core/index.js';
import type { Schedule } from './schedule.js';

/**
 * Per-leaf tensors: gradients, updates or moments.
 * @category Optimizers
 */
export type Updates = Tree<tf.Tensor>;

/**
 * Optimizer state: a tfjs tensor container (tensors, numbers, nested
 * records and arrays), so `tf.tidy` can keep it and `tf.dispose` free it.
 * @category Optimizers
 */
export type OptState = tf.TensorContainer;

/**
 * A gradient transformation: `init` builds the state for some parameters;
 * `update` maps gradients (and the parameters) to updates and a new state.
 * @category Optimizers
 */
export interface GradientTransformation<S extends OptState = OptState> {
  /** The initial state for `params`. */
  init(params: Params): S;
  /** New updates and state; the caller adds the updates to the parameters. */
  update(updates: Updates, state: S, params: Params): [Updates, S];
}

/**
 * A {@link ConfigError} unless `v` is a number passing `ok`. Checked when a
 * transformation is built, so a NaN learning rate fails there, not as a
 * NaN model after training.
 */
function checkOption(what: string, v: unknown, ok: (x: number) => boolean, expected: string): void {
  if (typeof v !== 'number' || !ok(v)) throw new ConfigError(`${what} must be ${expected}, got ${String(v)}`);
}
const finite = Number.isFinite;
const positive = (x: number) => Number.isFinite(x) && x > 0;
const unitInterval = (x: number) => x >= 0 && x < 1;

const zipUpdates = (a: Updates, b: Tree<tf.Tensor>, f: (x: tf.Tensor, y: tf.Tensor, p: string) => tf.Tensor): Updates =>
  mapTree(a, (x, p) => {
    const y = b[p];
    if (y === undefined) throw new SpecError(`optimizer: no '${p}' in the ${Object.keys(b).length}-leaf tree beside the updates`);
    return f(x, y, p);
  });

/**
 * Updates pass through unchanged.
 * @example
 * ```ts
 * chain(identity(), scale(-0.1))
 * ```
 * @category Transformations
 */
export function identity(): GradientTransformation<Record<string, never>> {
  return { init: () => ({}), update: (u, s) => [u, s] };
}

/**
 * Multiplies updates by a constant.
 * @example
 * ```ts
 * scale(-1) // gradient ascent becomes descent
 * ```
 * @category Transformations
 */
export function scale(factor: number): GradientTransformation<Record<string, never>> {
  checkOption('scale: factor', factor, finite, 'a finite number');
  return { init: () => ({}), update: (u, s) => [mapTree(u, (x) => tf.mul(x, factor)), s] };
}

/**
 * Applies transformations one after another; the state is the list of their states.
 * @example
 * ```ts
 * chain(clipByGlobalNorm(1), scaleByAdam(), scaleByLearningRate(1e-3))
 * ```
 * @category Transformations
 */
export function chain(...txs: GradientTransformation[]): GradientTransformation<OptState[]> {
  return {
    init: (params) => txs.map((t) => t.init(params)),
    update: (updates, states, params) => {
      const next: OptState[] = [];
      let u = updates;
      txs.forEach((t, i) => {
        const [v, s] = t.update(u, states[i]!, params);
        u = v;
        next.push(s);
      });
      return [u, next];
    },
  };
}

/**
 * Options of {@link scaleByAdam}.
 * @category Transformations
 */
export interface AdamOptions {
  /** Decay of the first moment (default 0.9). */
  readonly b1?: number;
  /** Decay of the second moment (default 0.999). */
  readonly b2?: number;
  /** Added to the root of the second moment (default 1e-8). */
  readonly eps?: number;
}

/**
 * Adam's scaling: `m̂ / (√v̂ + ε)` with bias-corrected moments.
 * @example
 * ```ts
 * chain(scaleByAdam({ b1: 0.9, b2: 0.999, eps: 1e-8 }), scaleByLearningRate(1e-3))
 * ```
 * @category Transformations
 */
export function scaleByAdam(options: AdamOptions = {}): GradientTransformation<{ count: number; mu: Updates; nu: Updates }> {
  const b1 = options.b1 ?? 0.9;
  const b2 = options.b2 ?? 0.999;
  const eps = options.eps ?? 1e-8;
  checkOption('scaleByAdam: b1', b1, unitInterval, 'in [0, 1)');
  checkOption('scaleByAdam: b2', b2, unitInterval, 'in [0, 1)');
  checkOption('scaleByAdam: eps', eps, positive, 'a finite number > 0');
  return {
    init: (params) => ({ count: 0, mu: mapTree(params, (p) => tf.zerosLike(p)), nu: mapTree(params, (p) => tf.zerosLike(p)) }),
    update: (g, state) => {
      const count = state.count + 1;
      const mu = zipUpdates(g, state.mu, (x, m) => tf.add(tf.mul(m, b1), tf.mul(x, 1 - b1)));
      const nu = zipUpdates(g, state.nu, (x, v) => tf.add(tf.mul(v, b2), tf.mul(tf.square(x), 1 - b2)));
      const c1 = 1 - b1 ** count;
      const c2 = 1 - b2 ** count;
      const u = zipUpdates(mu, nu, (m, v) => tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps)));
      return [u, { count, mu, nu }];
    },
  };
}

/**
 * Momentum: a trace `t ← g + decay·t`; the update is `t`, or
 * `g + decay·t` with Nesterov.
 * @example
 * ```ts
 * chain(trace({ decay: 0.9, nesterov: true }), scaleByLearningRate(0.1))
 * ```
 * @category Transformations
 */
export function trace(options: { readonly decay: number; readonly nesterov?: boolean }): GradientTransformation<{ trace: Updates }> {
  checkOption('trace: decay', options.decay, unitInterval, 'in [0, 1)');
  return {
    init: (params) => ({ trace: mapTree(params, (p) => tf.zerosLike(p)) }),
    update: (g, state) => {
      const t = zipUpdates(g, state.trace, (x, tr) => tf.add(x, tf.mul(tr, options.decay)));
      const u = options.nesterov ? zipUpdates(g, t, (x, tr) => tf.add(x, tf.mul(tr, options.decay))) : t;
      return [u, { trace: t }];
    },
  };
}

/**
 * Adds `weightDecay · W` to the updates (decoupled decay when it comes after
 * Adam, as AdamW). With `only`, just those leaves decay (e.g. ≥ 2-D ones).
 * @example
 * ```ts
 * addDecayedWeights(1e-4, (path, p) => p.rank >= 2)
 * ```
 * @category Transformations
 */
export function addDecayedWeights(weightDecay: number, only?: (path: string, param: tf.Tensor) => boolean): GradientTransformation<Record<string, never>> {
  checkOption('weightDecay', weightDecay, (x) => Number.isFinite(x) && x >= 0, 'a finite number ≥ 0');
  return {
    init: () => ({}),
    update: (u, s, params) => [zipUpdates(u, params, (x, p, path) => (weightDecay !== 0 && (only?.(path, p) ?? true) ? tf.add(x, tf.mul(p, weightDecay)) : x)), s],
  };
}

/**
 * Scales updates by `−learningRate` (a number or a {@link Schedule} of the
 * step count). A number must be finite and > 0; a schedule's value is
 * checked at every step (finite, ≥ 0, so a warm-up may start at 0), on the
 * host, where it is computed anyway.
 * @example
 * ```ts
 * scaleByLearningRate(warmupCosine({ init: 0, peak: 1e-3, warmupSteps: 50, totalSteps: 500 }))
 * ```
 * @category Transformations
 */
export function scaleByLearningRate(learningRate: number | Schedule): GradientTransformation<{ count: number }> {
  if (typeof learningRate === 'number') checkOption('learningRate', learningRate, positive, 'a finite number > 0 (use a schedule for a rate that starts at 0)');
  else if (typeof learningRate !== 'function') throw new ConfigError(`learningRate must be a number or a schedule, got ${String(learningRate)}`);
  const lr = typeof learningRate === 'number' ? () => learningRate : learningRate;
  return {
    init: () => ({ count: 0 }),
    update: (u, state) => {
      const rate = lr(state.count);
      if (!(Number.isFinite(rate) && rate >= 0)) throw new ConfigError(`learningRate: the schedule gave ${rate} at step ${state.count}; a learning rate must be finite and ≥ 0`);
      return [mapTree(u, (x) => tf.mul(x, -rate)), { count: state.count + 1 }];
    },
  };
}

/**
 * Scales all updates together so their global L2 norm is at most `maxNorm`.
 * @example
 * ```ts
 * chain(clipByGlobalNorm(1), sgd(0.1))
 * ```
 * @category Transformations
 */
export function clipByGlobalNorm(maxNorm: number): GradientTransformation<Record<string, never>> {
  checkOption('clipByGlobalNorm: maxNorm', maxNorm, positive, 'a finite number > 0');
  return {
    init: () => ({}),
    update: (u, s) => {
      const leaves = Object.values(u);
      if (leaves.length === 0) return [u, s];
      const norm = tf.sqrt(tf.addN(leaves.map((x) => tf.sum(tf.square(x)))));
      const factor = tf.div(maxNorm, tf.maximum(norm, maxNorm));
      return [mapTree(u, (x) => tf.mul(x, factor)), s];
    },
  };
}

/**
 * A different transformation per labelled group of leaves (say, a larger
 * learning rate for the head). Every leaf must have a label with a transformation.
 * @example
 * ```ts
 * partition((path) => (path.startsWith('head.') ? 'head' : 'body'), { head: adam(1e-2), body: adam(1e-4) })
 * ```
 * @category Transformations
 */
export function partition(label: (path: string) => string, txs: Readonly<Record<string, GradientTransformation>>): GradientTransformation<Record<string, OptState>> {
  const groups = (t: Tree<tf.Tensor>): Map<string, string[]> => {
    const m = new Map<string, string[]>();
    for (const p of paths(t)) {
      const l = label(p);
      if (!(l in txs)) throw new SpecError(`partition: leaf '${p}' has label '${l}', which has no transformation (labels: ${Object.keys(txs).join(', ')})`);
      m.set(l, [...(m.get(l) ?? []), p]);
    }
    return m;
  };
  const pick = <T>(t: Tree<T>, ps: string[]): Tree<T> => Object.fromEntries(ps.map((p) => [p, t[p]!]));
  return {
    init: (params) => Object.fromEntries([...groups(params)].map(([l, ps]) => [l, txs[l]!.init(pick(params, ps))])),
    update: (u, state, params) => {
      const out: Record<string, tf.Tensor> = {};
      const next: Record<string, OptState> = {};
      for (const [l, ps] of groups(u)) {
        const [v, s] = txs[l]!.update(pick(u, ps), state[l]!, pick(params, ps));
        Object.assign(out, v);
        next[l] = s;
      }
      return [mapTree(u, (_, p) => out[p]!), next];
    },
  };
}

/**
 * Adds updates to parameters: `params + updates` for every leaf the updates cover.
 * @example
 * ```ts
 * const [updates, state2] = tx.update(grads, state, params);
 * const params2 = applyUpdates(params, updates);
 * ```
 * @category Optimizers
 */
export function applyUpdates(params: Params, updates: Updates): Params {
  return mapTree(params, (p, path) => {
    const u = updates[path];
    return u === undefined ? p : tf.add(p, u);
  });
}

/**
 * SGD: `−lr·g`, with optional momentum.
 * @example
 * ```ts
 * sgd(0.1, { momentum: 0.9 })
 * ```
 * @category Presets
 */
export function sgd(learningRate: number | Schedule, options: { readonly momentum?: number; readonly nesterov?: boolean } = {}): GradientTransformation {
  return options.momentum ? momentum(learningRate, options.momentum, options.nesterov ?? false) : chain(scaleByLearningRate(learningRate));
}

/**
 * SGD with momentum (a {@link trace}, then the learning rate).
 * @example
 * ```ts
 * momentum(0.1, 0.9, true)
 * ```
 * @category Presets
 */
export function momentum(learningRate: number | Schedule, decay = 0.9, nesterov = false): GradientTransformation {
  return chain(trace({ decay, nesterov }), scaleByLearningRate(learningRate));
}

/**
 * Adam (b1 0.9, b2 0.999, ε 1e-8 by default).
 * @example
 * ```ts
 * adam(1e-3)
 * ```
 * @category Presets
 */
export function adam(learningRate: number | Schedule, options: AdamOptions = {}): GradientTransformation {
  return chain(scaleByAdam(options), scaleByLearningRate(learningRate));
}

/**
 * AdamW as optax: Adam, then decoupled weight decay (default 1e-4), then the
 * learning rate. `decayOnly` limits which leaves decay (SPT decays ≥ 2-D ones only).
 * @example
 * ```ts
 * adamw(1e-3, { weightDecay: 1e-4, decayOnly: (_path, p) => p.rank >= 2 })
 * ```
 * @category Presets
 */
export function adamw(
  learningRate: number | Schedule,
  options: AdamOptions & { readonly weightDecay?: number; readonly decayOnly?: (path: string, param: tf.Tensor) => boolean } = {},
): GradientTransformation {
  return chain(scaleByAdam(options), addDecayedWeights(options.weightDecay ?? 1e-4, options.decayOnly), scaleByLearningRate(learningRate));
}
