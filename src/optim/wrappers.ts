/**
 * Wrappers that change when and how an inner transformation runs, as
 * optax's: gradient accumulation ({@link multiSteps}), skipping non-finite
 * steps ({@link applyIfFinite}), hyperparameters kept in the state
 * ({@link injectHyperparams}) and one vector for many leaves ({@link flatten}).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, mapTree, paths, SpecError, type Tree } from '../core/index.js';
import type { Schedule } from './schedule.js';
import type { GradientTransformation, OptState, Updates } from './transform.js';

/** Zero updates that change no bit when added (−0 is the additive identity; see masked.ts). */
const noUpdates = (u: Updates): Updates => mapTree(u, (x) => tf.neg(tf.zerosLike(x)));

/**
 * State of {@link multiSteps}.
 * @category Optimizers
 */
export interface MultiStepsState<S extends OptState = OptState> extends tf.TensorContainerObject {
  /** Mini-steps accumulated since the last real step. */
  readonly miniStep: number;
  /** Real (inner) steps taken. */
  readonly gradientStep: number;
  /** The accumulated gradients. */
  readonly acc: Updates;
  /** The inner state. */
  readonly inner: S;
}

/**
 * Gradient accumulation, as optax's `MultiSteps`: gradients of `every`
 * mini-steps are averaged (or summed, with `useGradMean: false`) and the
 * inner transformation runs once on them; in between the updates are zero
 * (−0, so applying them changes nothing) and the inner state stays as it
 * was. `every` may be a schedule of the real-step count.
 * @example
 * ```ts
 * // A batch of 4 × 32 on a device that holds 32:
 * const tx = multiSteps(adamw(1e-3), 4);
 * ```
 * @category Optimizers
 */
export function multiSteps(inner: GradientTransformation, every: number | Schedule, options: { readonly useGradMean?: boolean } = {}): GradientTransformation<MultiStepsState> {
  const k = typeof every === 'number' ? () => every : every;
  const check = (n: number) => {
    if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError(`multiSteps: every must be a positive integer, got ${String(n)}`);
    return n;
  };
  if (typeof every === 'number') check(every);
  const mean = options.useGradMean ?? true;
  return {
    init: (params, spec) => ({ miniStep: 0, gradientStep: 0, acc: mapTree(params, (p) => tf.zerosLike(p)), inner: inner.init(params, spec) }),
    update: (g, state, params) => {
      const steps = check(k(state.gradientStep));
      // optax's running mean: acc + (g − acc) / (n + 1).
      const acc = mapTree(g, (x, p) => {
        const a = state.acc[p]!;
        return mean ? tf.add(a, tf.div(tf.sub(x, a), state.miniStep + 1)) : tf.add(a, x);
      });
      if (state.miniStep + 1 < steps) return [noUpdates(g), { ...state, miniStep: state.miniStep + 1, acc }];
      const [u, s] = inner.update(acc, state.inner, params);
      return [u, { miniStep: 0, gradientStep: state.gradientStep + 1, acc: mapTree(acc, (a) => tf.zerosLike(a)), inner: s }];
    },
  };
}

/**
 * State of {@link applyIfFinite}.
 * @category Optimizers
 */
export interface ApplyIfFiniteState<S extends OptState = OptState> extends tf.TensorContainerObject {
  /** Non-finite steps in a row (0 after a finite one). */
  readonly notFiniteCount: number;
  /** Whether the last step's gradients were finite. */
  readonly lastFinite: boolean;
  /** Non-finite steps in all. */
  readonly totalNotFinite: number;
  /** The inner state. */
  readonly inner: S;
}

/**
 * Skips steps whose gradients hold a NaN or ±Inf, as optax's
 * `apply_if_finite`: such a step gives zero updates (−0: nothing moves) and
 * leaves the inner state as it was, and is counted; after more than
 * `maxConsecutiveErrors` in a row the update is applied anyway (so a run
 * that has gone wrong shows it rather than silently standing still). It
 * reads one number per step from the device to decide.
 * @example
 * ```ts
 * const tx = applyIfFinite(adam(1e-3), 5);
 * // state.totalNotFinite counts the skipped steps
 * ```
 * @category Optimizers
 */
export function applyIfFinite(inner: GradientTransformation, maxConsecutiveErrors: number): GradientTransformation<ApplyIfFiniteState> {
  if (!Number.isSafeInteger(maxConsecutiveErrors) || maxConsecutiveErrors < 0) throw new ConfigError(`applyIfFinite: maxConsecutiveErrors must be an integer ≥ 0, got ${String(maxConsecutiveErrors)}`);
  return {
    init: (params, spec) => ({ notFiniteCount: 0, lastFinite: true, totalNotFinite: 0, inner: inner.init(params, spec) }),
    update: (g, state, params) => {
      const leaves = paths(g).map((p) => g[p]!);
      // Σ x·0 is 0 when every x is finite and NaN otherwise: one read for the whole tree.
      const probe = leaves.length === 0 ? undefined : tf.tidy(() => tf.addN(leaves.map((x) => tf.sum(tf.mul(x, 0)))));
      const isFinite = probe === undefined || Number.isFinite(probe.dataSync()[0]);
      probe?.dispose();
      const notFiniteCount = isFinite ? 0 : state.notFiniteCount + 1;
      const totalNotFinite = isFinite ? state.totalNotFinite : state.totalNotFinite + 1;
      if (isFinite || notFiniteCount > maxConsecutiveErrors) {
        const [u, s] = inner.update(g, state.inner, params);
        return [u, { notFiniteCount, lastFinite: isFinite, totalNotFinite, inner: s }];
      }
      return [noUpdates(g), { notFiniteCount, lastFinite: isFinite, totalNotFinite, inner: state.inner }];
    },
  };
}

/**
 * State of {@link injectHyperparams}.
 * @category Optimizers
 */
export interface InjectHyperparamsState<S extends OptState = OptState> extends tf.TensorContainerObject {
  /** Steps taken. */
  readonly count: number;
  /** The hyperparameters the last step used (numbers may be changed here between steps). */
  readonly hyperparams: Record<string, number>;
  /** The inner state. */
  readonly inner: S;
}

/**
 * Hyperparameters in the optimizer state, as optax's `inject_hyperparams`:
 * `make` builds the transformation from numbers; each value given as a
 * number sits in `state.hyperparams`, where a training loop may read or
 * change it between steps; a value given as a {@link Schedule} is
 * evaluated at the step count every step (and recorded there).
 * @example
 * ```ts
 * const tx = injectHyperparams((h) => adam(h.learningRate!), { learningRate: 1e-3 });
 * let state = tx.init(params);
 * state = { ...state, hyperparams: { learningRate: 1e-4 } }; // lower it mid-run
 * ```
 * @category Optimizers
 */
export function injectHyperparams(make: (hyperparams: Readonly<Record<string, number>>) => GradientTransformation, hyperparams: Readonly<Record<string, number | Schedule>>): GradientTransformation<InjectHyperparamsState> {
  const evaluate = (count: number, current: Readonly<Record<string, number>>): Record<string, number> =>
    Object.fromEntries(Object.entries(hyperparams).map(([k, v]) => [k, typeof v === 'function' ? v(count) : current[k] ?? v]));
  return {
    init: (params, spec) => {
      const h = evaluate(0, {});
      return { count: 0, hyperparams: h, inner: make(h).init(params, spec) };
    },
    update: (g, state, params) => {
      const h = evaluate(state.count, state.hyperparams);
      const [u, s] = make(h).update(g, state.inner, params);
      return [u, { count: state.count + 1, hyperparams: h, inner: s }];
    },
  };
}

/**
 * The leaf under which {@link flatten} hands its inner transformation the
 * flattened leaves: each raveled and concatenated, in
 * {@link FlattenState.flat} order.
 * @example
 * ```ts
 * const [u] = adam(1e-3).update({ [FLAT]: flatGrads }, state, { [FLAT]: flatParams });
 * ```
 * @category Optimizers
 */
export const FLAT = '(flat)';

/**
 * State of {@link flatten}.
 * @category Optimizers
 */
export interface FlattenState<S extends OptState = OptState> extends tf.TensorContainerObject {
  /** The flattened leaves, in the order of their segments in the {@link FLAT} vector. */
  readonly flat: string[];
  /** Each flattened leaf's shape, in the same order (its segment is its size). */
  readonly shapes: number[][];
  /** Leaves larger than `maxLeafSize`, which the inner transformation sees as themselves. */
  readonly own: string[];
  /** Their shapes, in the same order. */
  readonly ownShapes: number[][];
  /** The inner state, over {@link FLAT} and the `own` leaves. */
  readonly inner: S;
}

/**
 * Options of {@link flatten}.
 * @category Optimizers
 */
export interface FlattenOptions {
  /**
   * Leaves with more entries than this stay leaves of their own (default:
   * none, as optax). Flattening pays a concatenation and a split of every
   * flattened entry each step to save a dozen kernels per leaf: a gain for
   * biases and a sparse selection's gathered entries, a loss for large
   * kernels (on wasm, training the shipped ViT whole takes longer flattened).
   */
  readonly maxLeafSize?: number;
}

/**
 * optax's `flatten`: the inner transformation runs on one vector, every
 * leaf raveled and concatenated, and its updates are split back into the
 * leaves. An element-wise transformation (sgd, momentum, Adam, AdamW
 * without a mask, RMSProp, Lion, and chains of them) gives the same
 * updates bit for bit, with a dozen kernels per step where it took a
 * dozen per leaf: on a model of many small leaves (biases, a sparse
 * selection's gathered entries) those per-kernel costs are most of the
 * optimizer's time. A transformation that looks at leaves (a {@link Filter}
 * or {@link Mask} inside it, Adafactor's factored moments, block RMS)
 * sees one 1-D leaf instead: keep those outside. The leaves `update` gets
 * must be the ones `init` got, with the same shapes ({@link SpecError}
 * otherwise). `fineTune`'s default optimizer is
 * `flatten(adamw(…), { maxLeafSize: 4096 })` where 8 or more small leaves
 * train (below that, with Adam one kernel per leaf on wasm and cpu, the
 * reshapes, concatenations and split cost more than they save).
 * @example
 * ```ts
 * const tx = trainOnly(flatten(adamw(1e-3), { maxLeafSize: 4096 }), gpsMask); // one Adam over the small leaves
 * ```
 * @category Optimizers
 */
export function flatten(inner: GradientTransformation, options: FlattenOptions = {}): GradientTransformation<FlattenState> {
  const max = options.maxLeafSize ?? Infinity;
  if (!(max >= 0)) throw new ConfigError(`flatten: maxLeafSize must be a number ≥ 0, got ${String(max)}`);
  const ravel = (t: Tree<tf.Tensor>, leaves: readonly string[]) => {
    const parts = leaves.map((p) => tf.reshape(t[p]!, [-1]));
    return parts.length === 1 ? parts[0]! : tf.concat(parts, 0);
  };
  /** What inner sees: the flattened leaves under FLAT (when there are any), the rest by path. */
  const view = (t: Tree<tf.Tensor>, s: Pick<FlattenState, 'flat' | 'own'>) => ({
    ...(s.flat.length > 0 ? { [FLAT]: ravel(t, s.flat) } : {}),
    ...Object.fromEntries(s.own.map((p) => [p, t[p]!])),
  });
  const show = (p: string, shape: readonly number[]) => `'${p}' [${shape.join(', ')}]`;
  return {
    init: (params) => {
      const leaves = paths(params);
      const flat = leaves.filter((p) => params[p]!.size <= max);
      const own = leaves.filter((p) => params[p]!.size > max);
      const s = { flat, own, shapes: flat.map((p) => [...params[p]!.shape]), ownShapes: own.map((p) => [...params[p]!.shape]) };
      return { ...s, inner: inner.init(view(params, s)) };
    },
    update: (g, state, params) => {
      const { flat, shapes, own, ownShapes } = state;
      const ok = (p: string, shape: readonly number[] | undefined) => g[p] !== undefined && shape !== undefined && g[p]!.shape.length === shape.length && g[p]!.shape.every((d, j) => d === shape[j]);
      const got = paths(g);
      if (got.length !== flat.length + own.length || !flat.every((p, i) => ok(p, shapes[i])) || !own.every((p, i) => ok(p, ownShapes[i]))) {
        throw new SpecError(`flatten: the updates' leaves ${got.map((p) => show(p, g[p]!.shape)).join(', ')} are not the leaves init saw (${[...flat.map((p, i) => show(p, shapes[i]!)), ...own.map((p, i) => show(p, ownShapes[i]!))].join(', ')})`);
      }
      for (const p of got) if (params[p] === undefined) throw new SpecError(`flatten: no '${p}' in the parameters beside the updates`);
      if (got.length === 0) return [{}, state];
      const [u, next] = inner.update(view(g, state), state.inner, view(params, state));
      const out: Record<string, tf.Tensor> = Object.fromEntries(own.map((p) => [p, u[p]!]));
      if (flat.length > 0) {
        const v = u[FLAT]!;
        const parts = flat.length === 1 ? [v] : tf.split(v, shapes.map((s) => s.reduce((a, b) => a * b, 1)));
        flat.forEach((p, i) => (out[p] = tf.reshape(parts[i]!, shapes[i]!)));
      }
      return [out, { ...state, inner: next }];
    },
  };
}
