/**
 * Wrappers that change when and how an inner transformation runs, as
 * optax's: gradient accumulation ({@link multiSteps}), skipping non-finite
 * steps ({@link applyIfFinite}) and hyperparameters kept in the state
 * ({@link injectHyperparams}).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, mapTree, paths } from '../core/index.js';
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
