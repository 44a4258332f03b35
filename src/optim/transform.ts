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
import { ConfigError, mapTree, paths, SpecError, type LeafSpec, type ParamSpec, type Params, type Tree } from '../core/index.js';
import { adamStep } from '../core/kernels.js';
import { masked, type MaskLike } from './masked.js';
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
  /**
   * The initial state for `params`. `spec` (the model's) is what a
   * transformation restricted by a {@link Filter} needs to see leaf roles;
   * combinators pass it on.
   */
  init(params: Params, spec?: ParamSpec): S;
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

/** Leaf `p` of a tree beside the updates (a state's moments, the parameters), or a SpecError. */
const leafOf = (b: Tree<tf.Tensor>, p: string): tf.Tensor => {
  const y = b[p];
  if (y === undefined) throw new SpecError(`optimizer: no '${p}' in the ${Object.keys(b).length}-leaf tree beside the updates`);
  return y;
};
const zipUpdates = (a: Updates, b: Tree<tf.Tensor>, f: (x: tf.Tensor, y: tf.Tensor, p: string) => tf.Tensor): Updates => mapTree(a, (x, p) => f(x, leafOf(b, p), p));

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
    init: (params, spec) => txs.map((t) => t.init(params, spec)),
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
 * Adam's scaling: `m̂ / (√v̂ + ε)` with bias-corrected moments. On wasm and
 * cpu each leaf's step is one kernel of our own (the same floats, bit for
 * bit, as the twelve tfjs ops it replaces, which other backends run).
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
      const a = { b1, b2, eps, c1: 1 - b1 ** count, c2: 1 - b2 ** count };
      // One kernel per leaf where the data is in this thread (adamStep), the same floats as the ops.
      const steps = mapTree(g, (x, p) => adamStep(x, leafOf(state.mu, p), leafOf(state.nu, p), a));
      const part = (i: 0 | 1 | 2) => mapTree(steps, (s) => s[i]);
      return [part(0), { count, mu: part(1), nu: part(2) }];
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
 * Adam, as AdamW). With `mask` (a {@link Filter} such as `byRole('kernel')`,
 * or a {@link Mask}), only the entries it selects decay; the others pass
 * through, as optax's `add_decayed_weights(wd, mask)`.
 * @example
 * ```ts
 * const tx = chain(scaleByAdam(), addDecayedWeights(1e-4, byRole('kernel')), scaleByLearningRate(1e-3));
 * const state = tx.init(params, model.spec); // a Filter needs the spec
 * ```
 * @category Transformations
 */
export function addDecayedWeights(weightDecay: number, mask?: MaskLike): GradientTransformation {
  checkOption('weightDecay', weightDecay, (x) => Number.isFinite(x) && x >= 0, 'a finite number ≥ 0');
  const plain: GradientTransformation<Record<string, never>> = {
    init: () => ({}),
    update: (u, s, params) => [weightDecay === 0 ? u : zipUpdates(u, params, (x, p) => tf.add(x, tf.mul(p, weightDecay))), s],
  };
  return mask === undefined ? plain : masked(plain, mask);
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
 * learning rate for the head), as optax's `partition`. The labeller sees
 * the path and, when `init` is given the spec, the leaf's spec (so a
 * {@link Filter} can label: `(p, leaf) => (leaf && byRole('head')(p, leaf) ? 'head' : 'body')`).
 * Every leaf must have a label with a transformation.
 * @example
 * ```ts
 * partition((path) => (path.startsWith('head.') ? 'head' : 'body'), { head: adam(1e-2), body: adam(1e-4) })
 * ```
 * @category Transformations
 */
export function partition(label: (path: string, leaf: LeafSpec | undefined) => string, txs: Readonly<Record<string, GradientTransformation>>): GradientTransformation<Record<string, OptState>> {
  // Labels are computed at init (where the spec is) and kept in the state under this key.
  const LABELS = '__labels__';
  const groups = (t: Tree<tf.Tensor>, labelOf: (p: string) => string): Map<string, string[]> => {
    const m = new Map<string, string[]>();
    for (const p of paths(t)) {
      const l = labelOf(p);
      if (!(l in txs)) throw new SpecError(`partition: leaf '${p}' has label '${l}', which has no transformation (labels: ${Object.keys(txs).join(', ')})`);
      m.set(l, [...(m.get(l) ?? []), p]);
    }
    return m;
  };
  const pick = <T>(t: Tree<T>, ps: string[]): Tree<T> => Object.fromEntries(ps.map((p) => [p, t[p]!]));
  return {
    init: (params, spec) => {
      const g = groups(params, (p) => label(p, spec?.[p]));
      const labels = Object.fromEntries([...g].flatMap(([l, ps]) => ps.map((p) => [p, l])));
      return { ...Object.fromEntries([...g].map(([l, ps]) => [l, txs[l]!.init(pick(params, ps), spec && pick(spec, ps))])), [LABELS]: labels };
    },
    update: (u, state, params) => {
      const out: Record<string, tf.Tensor> = {};
      const next: Record<string, OptState> = { [LABELS]: state[LABELS]! };
      const known = state[LABELS] as Record<string, string>;
      for (const [l, ps] of groups(u, (p) => known[p] ?? label(p, undefined))) {
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
 * Options of {@link adamw}.
 * @category Presets
 */
export interface AdamWOptions extends AdamOptions {
  /** Decoupled weight decay (default 1e-4). */
  readonly weightDecay?: number;
  /** Which entries decay: a {@link Filter} (e.g. `byRole('kernel')`) or a {@link Mask}, as optax's `mask`; default all. */
  readonly mask?: MaskLike;
}

/**
 * AdamW as optax: Adam, then decoupled weight decay (default 1e-4), then the
 * learning rate. `mask` limits which entries decay (SPT decays kernels only).
 * @example
 * ```ts
 * const tx = adamw(1e-3, { weightDecay: 1e-4, mask: byRole('kernel') });
 * const state = tx.init(params, model.spec);
 * ```
 * @category Presets
 */
export function adamw(learningRate: number | Schedule, options: AdamWOptions = {}): GradientTransformation {
  return chain(scaleByAdam(options), addDecayedWeights(options.weightDecay ?? 1e-4, options.mask), scaleByLearningRate(learningRate));
}

// ---------------------------------------------------------------------------
// The wider catalogue: RMSProp, Lion, Adafactor (each as optax defines it).

/**
 * Options of {@link scaleByRms} and {@link rmsprop}.
 * @category Transformations
 */
export interface RmsOptions {
  /** Decay of the moving averages (default 0.9). */
  readonly decay?: number;
  /** Stabilising constant (default 1e-8). */
  readonly eps?: number;
  /** Initial value of the second moment (default 0). */
  readonly initialScale?: number;
  /** `√(v + ε)` (true, optax's default) or `√v + ε` (false, PyTorch's). */
  readonly epsInSqrt?: boolean;
  /** Centered: divide by an estimate of the gradient's variance, `v − m²` (default false). */
  readonly centered?: boolean;
  /** Bias-correct the moving averages as Adam does (default false). */
  readonly biasCorrection?: boolean;
}

/**
 * RMSProp's scaling, as optax's `scale_by_rms` (or `scale_by_stddev` when
 * `centered`): `v ← decay·v + (1−decay)·g²` (and `m ← decay·m + (1−decay)·g`
 * when centered), then `g / √(v − m² + ε)`, or `g / (√(v − m²) + ε)` with
 * `epsInSqrt: false`.
 * @example
 * ```ts
 * chain(scaleByRms({ decay: 0.99, epsInSqrt: false }), scaleByLearningRate(1e-3))
 * ```
 * @category Transformations
 */
export function scaleByRms(options: RmsOptions = {}): GradientTransformation<{ count: number; mu: Updates; nu: Updates }> {
  const decay = options.decay ?? 0.9;
  const eps = options.eps ?? 1e-8;
  const initialScale = options.initialScale ?? 0;
  const inSqrt = options.epsInSqrt ?? true;
  checkOption('scaleByRms: decay', decay, unitInterval, 'in [0, 1)');
  checkOption('scaleByRms: eps', eps, (x) => Number.isFinite(x) && x >= 0, 'a finite number ≥ 0');
  checkOption('scaleByRms: initialScale', initialScale, (x) => Number.isFinite(x) && x >= 0, 'a finite number ≥ 0');
  return {
    // mu is kept (empty) when not centered so the state has one shape.
    init: (params) => ({
      count: 0,
      mu: options.centered ? mapTree(params, (p) => tf.zerosLike(p)) : {},
      nu: mapTree(params, (p) => tf.fill(p.shape, initialScale)),
    }),
    update: (g, state) => {
      const count = state.count + 1;
      const ema = (x: tf.Tensor, m: tf.Tensor) => tf.add(tf.mul(m, decay), tf.mul(x, 1 - decay));
      const nu = zipUpdates(g, state.nu, (x, v) => ema(tf.square(x), v));
      const mu = options.centered ? zipUpdates(g, state.mu, ema) : {};
      const c = options.biasCorrection ? 1 - decay ** count : 1;
      const u = mapTree(g, (x, p) => {
        let v = tf.div(nu[p]!, c);
        if (options.centered) v = tf.sub(v, tf.square(tf.div(mu[p]!, c)));
        return inSqrt ? tf.mul(x, tf.rsqrt(tf.add(v, eps))) : tf.div(x, tf.add(tf.sqrt(v), eps));
      });
      return [u, { count, mu, nu }];
    },
  };
}

/**
 * Options of {@link rmsprop}.
 * @category Presets
 */
export interface RmspropOptions extends RmsOptions {
  /** Momentum of a {@link trace} after the scaling (default none). */
  readonly momentum?: number;
  /** Nesterov momentum (default false). */
  readonly nesterov?: boolean;
}

/**
 * RMSProp as optax's `rmsprop`: {@link scaleByRms}, then an optional
 * momentum {@link trace}, then the learning rate. Defaults: decay 0.9,
 * ε 1e-8 inside the root.
 * @example
 * ```ts
 * rmsprop(1e-3, { decay: 0.9, centered: true, momentum: 0.9 })
 * ```
 * @category Presets
 */
export function rmsprop(learningRate: number | Schedule, options: RmspropOptions = {}): GradientTransformation {
  const parts: GradientTransformation[] = [scaleByRms(options)];
  if (options.momentum !== undefined) parts.push(trace({ decay: options.momentum, nesterov: options.nesterov ?? false }));
  parts.push(scaleByLearningRate(learningRate));
  return chain(...parts);
}

/**
 * Lion's scaling, as optax's `scale_by_lion`: the update is
 * `sign(b1·m + (1−b1)·g)`, then `m ← b2·m + (1−b2)·g`.
 * @example
 * ```ts
 * chain(scaleByLion({ b1: 0.9, b2: 0.99 }), scaleByLearningRate(1e-4))
 * ```
 * @category Transformations
 */
export function scaleByLion(options: { readonly b1?: number; readonly b2?: number } = {}): GradientTransformation<{ count: number; mu: Updates }> {
  const b1 = options.b1 ?? 0.9;
  const b2 = options.b2 ?? 0.99;
  checkOption('scaleByLion: b1', b1, unitInterval, 'in [0, 1)');
  checkOption('scaleByLion: b2', b2, unitInterval, 'in [0, 1)');
  return {
    init: (params) => ({ count: 0, mu: mapTree(params, (p) => tf.zerosLike(p)) }),
    update: (g, state) => {
      const u = zipUpdates(g, state.mu, (x, m) => tf.sign(tf.add(tf.mul(m, b1), tf.mul(x, 1 - b1))));
      const mu = zipUpdates(g, state.mu, (x, m) => tf.add(tf.mul(m, b2), tf.mul(x, 1 - b2)));
      return [u, { count: state.count + 1, mu }];
    },
  };
}

/**
 * Options of {@link lion}.
 * @category Presets
 */
export interface LionOptions {
  /** Interpolation of the update direction (default 0.9). */
  readonly b1?: number;
  /** Decay of the momentum (default 0.99). */
  readonly b2?: number;
  /** Decoupled weight decay (default 1e-3, as optax). */
  readonly weightDecay?: number;
  /** Which entries decay (a {@link Filter} or a {@link Mask}); default all. */
  readonly mask?: MaskLike;
}

/**
 * Lion as optax's `lion`: {@link scaleByLion}, decoupled weight decay
 * (default 1e-3), then the learning rate. Its one moment makes its state
 * half of Adam's; its sign update wants a learning rate 3–10× smaller.
 * @example
 * ```ts
 * lion(1e-4, { weightDecay: 1e-2, mask: byRole('kernel') })
 * ```
 * @category Presets
 */
export function lion(learningRate: number | Schedule, options: LionOptions = {}): GradientTransformation {
  return chain(scaleByLion(options), addDecayedWeights(options.weightDecay ?? 1e-3, options.mask), scaleByLearningRate(learningRate));
}

/** optax's `_factored_dims`: the two largest dims (second largest first) when both are ≥ `minDim`. */
function factoredDims(shape: readonly number[], factored: boolean, minDim: number): [number, number] | undefined {
  if (!factored || shape.length < 2) return undefined;
  // A stable argsort, as numpy's default for ties on these small arrays.
  const sorted = [...shape.keys()].sort((a, b) => shape[a]! - shape[b]! || a - b);
  const [d1, d0] = [sorted[sorted.length - 2]!, sorted[sorted.length - 1]!];
  return shape[d1]! < minDim ? undefined : [d1, d0];
}

/**
 * Options of {@link scaleByFactoredRms}.
 * @category Transformations
 */
export interface FactoredRmsOptions {
  /** Factor the second moment of leaves of rank ≥ 2 (default true). */
  readonly factored?: boolean;
  /** Exponent of the decay schedule `1 − (t+1)^−decayRate` (default 0.8). */
  readonly decayRate?: number;
  /** Subtracted from the step count in that schedule (default 0). */
  readonly stepOffset?: number;
  /** Factor only when the two largest dims are at least this big (default 128, as optax). */
  readonly minDimSizeToFactor?: number;
  /** Added to the squared gradient (default 1e-30). */
  readonly epsilon?: number;
}

/**
 * Adafactor's scaling, as optax's `scale_by_factored_rms`: for a leaf whose
 * two largest dims are ≥ `minDimSizeToFactor`, the second moment is kept as
 * a row and a column average (`n + m` numbers for an `n × m` matrix instead
 * of `n·m`), otherwise whole; the decay at step t is `1 − (t+1)^−0.8`, so
 * the first step uses `g² + ε` alone. The update is `g / √v̂`.
 * @example
 * ```ts
 * chain(scaleByFactoredRms({ minDimSizeToFactor: 32 }), scaleByLearningRate(1e-3))
 * ```
 * @category Transformations
 */
export function scaleByFactoredRms(options: FactoredRmsOptions = {}): GradientTransformation<{ count: number; vRow: Updates; vCol: Updates; v: Updates }> {
  const factored = options.factored ?? true;
  const decayRate = options.decayRate ?? 0.8;
  const stepOffset = options.stepOffset ?? 0;
  const minDim = options.minDimSizeToFactor ?? 128;
  const epsilon = options.epsilon ?? 1e-30;
  checkOption('scaleByFactoredRms: decayRate', decayRate, finite, 'a finite number');
  checkOption('scaleByFactoredRms: epsilon', epsilon, (x) => Number.isFinite(x) && x >= 0, 'a finite number ≥ 0');
  const without = (shape: readonly number[], d: number) => shape.filter((_, i) => i !== d);
  return {
    // Unfactored leaves keep `v` whole and no rows/columns; factored ones the reverse.
    init: (params) => {
      const vRow: Record<string, tf.Tensor> = {};
      const vCol: Record<string, tf.Tensor> = {};
      const v: Record<string, tf.Tensor> = {};
      for (const [p, x] of Object.entries(params)) {
        const dims = factoredDims(x.shape, factored, minDim);
        if (dims) {
          vRow[p] = tf.zeros(without(x.shape, dims[1]));
          vCol[p] = tf.zeros(without(x.shape, dims[0]));
        } else v[p] = tf.zerosLike(x);
      }
      return { count: 0, vRow, vCol, v };
    },
    update: (g, state) => {
      const t = state.count - stepOffset + 1;
      const beta = 1 - t ** -decayRate;
      const vRow: Record<string, tf.Tensor> = {};
      const vCol: Record<string, tf.Tensor> = {};
      const v: Record<string, tf.Tensor> = {};
      const u = mapTree(g, (x, p) => {
        const sq = tf.add(tf.square(x), epsilon);
        const dims = factoredDims(x.shape, factored, minDim);
        if (!dims) {
          const prev = state.v[p];
          if (prev === undefined) throw new SpecError(`scaleByFactoredRms: no state for leaf '${p}'`);
          v[p] = tf.add(tf.mul(prev, beta), tf.mul(sq, 1 - beta));
          return tf.mul(x, tf.rsqrt(v[p]!));
        }
        const [d1, d0] = dims;
        const row = tf.add(tf.mul(state.vRow[p]!, beta), tf.mul(tf.mean(sq, d0), 1 - beta));
        const col = tf.add(tf.mul(state.vCol[p]!, beta), tf.mul(tf.mean(sq, d1), 1 - beta));
        vRow[p] = row;
        vCol[p] = col;
        const reducedD1 = d1 > d0 ? d1 - 1 : d1;
        const rowFactor = tf.rsqrt(tf.div(row, tf.mean(row, reducedD1, true)));
        const colFactor = tf.rsqrt(col);
        return tf.mul(tf.mul(x, tf.expandDims(rowFactor, d0)), tf.expandDims(colFactor, d1));
      });
      return [u, { count: state.count + 1, vRow, vCol, v }];
    },
  };
}

/**
 * Clips each leaf's updates to a root-mean-square of at most `threshold`,
 * as optax's `clip_by_block_rms`: `u / max(1, rms(u) / threshold)`.
 * @example
 * ```ts
 * chain(scaleByFactoredRms(), clipByBlockRms(1))
 * ```
 * @category Transformations
 */
export function clipByBlockRms(threshold: number): GradientTransformation<Record<string, never>> {
  checkOption('clipByBlockRms: threshold', threshold, positive, 'a finite number > 0');
  return { init: () => ({}), update: (u, s) => [mapTree(u, (x) => tf.div(x, tf.maximum(1, tf.div(tf.sqrt(tf.mean(tf.square(x))), threshold)))), s] };
}

/**
 * Scales each leaf's updates by its parameter's root-mean-square (at least
 * `minScale`), as optax's `scale_by_param_block_rms`: Adafactor's relative step.
 * @example
 * ```ts
 * chain(scaleByFactoredRms(), scaleByParamBlockRms(1e-3))
 * ```
 * @category Transformations
 */
export function scaleByParamBlockRms(minScale = 1e-3): GradientTransformation<Record<string, never>> {
  checkOption('scaleByParamBlockRms: minScale', minScale, (x) => Number.isFinite(x) && x >= 0, 'a finite number ≥ 0');
  return { init: () => ({}), update: (u, s, params) => [zipUpdates(u, params, (x, p) => tf.mul(x, tf.maximum(tf.sqrt(tf.mean(tf.square(p))), minScale))), s] };
}

/**
 * Options of {@link adafactor}.
 * @category Presets
 */
export interface AdafactorOptions extends FactoredRmsOptions {
  /** Per-leaf update RMS clipping (default 1; `null` for none). */
  readonly clippingThreshold?: number | null;
  /** Scale updates by the parameter's RMS (default true). */
  readonly multiplyByParameterScale?: boolean;
  /** An exponential moving average of the updates (default none). */
  readonly momentum?: number;
  /** Weight decay, added after the learning rate as optax does (default none). */
  readonly weightDecayRate?: number;
  /** Which entries decay (a {@link Filter} or a {@link Mask}). */
  readonly weightDecayMask?: MaskLike;
}

/**
 * Adafactor as optax's `adafactor`: {@link scaleByFactoredRms}, then
 * {@link clipByBlockRms} (1), the learning rate, {@link scaleByParamBlockRms},
 * optional momentum and decay, and the sign flip. For a ≥ 2-D leaf whose
 * two largest dims reach `minDimSizeToFactor` (default 128) the second
 * moment costs a row plus a column, not a matrix: the memory win over Adam.
 * @example
 * ```ts
 * adafactor(1e-2, { minDimSizeToFactor: 32 })
 * ```
 * @category Presets
 */
export function adafactor(learningRate: number | Schedule, options: AdafactorOptions = {}): GradientTransformation {
  const parts: GradientTransformation[] = [scaleByFactoredRms(options)];
  const clip = options.clippingThreshold === undefined ? 1 : options.clippingThreshold;
  if (clip !== null) parts.push(clipByBlockRms(clip));
  // optax scales by +lr here (flip_sign=False) and flips the sign last; the
  // links between are linear, so flipping at the learning rate is the same
  // (negation is exact), except around the decay, which is added unflipped.
  parts.push(scaleByLearningRate(learningRate));
  if (options.multiplyByParameterScale ?? true) parts.push(scaleByParamBlockRms());
  if (options.momentum !== undefined) parts.push(ema(options.momentum));
  if (options.weightDecayRate !== undefined) parts.push(scale(-1), addDecayedWeights(options.weightDecayRate, options.weightDecayMask), scale(-1));
  return chain(...parts);
}

/**
 * An exponential moving average of the updates without bias correction,
 * as optax's `ema(decay, debias=False)`: `t ← decay·t + (1−decay)·u`.
 * @example
 * ```ts
 * chain(scaleByFactoredRms(), ema(0.9))
 * ```
 * @category Transformations
 */
export function ema(decay: number): GradientTransformation<{ ema: Updates }> {
  checkOption('ema: decay', decay, unitInterval, 'in [0, 1)');
  return {
    init: (params) => ({ ema: mapTree(params, (p) => tf.zerosLike(p)) }),
    update: (u, state) => {
      const e = zipUpdates(u, state.ema, (x, t) => tf.add(tf.mul(t, decay), tf.mul(x, 1 - decay)));
      return [e, { ema: e }];
    },
  };
}
