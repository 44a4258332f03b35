/**
 * Optimizer laws: frozen entries stay bit-identical, sparse state equals
 * dense state on the selection, and the rest, for any transformation.
 * @module
 */
import fc from 'fast-check';
import { floatsArb, maskFor, scoresFor, specArb, toParams } from './arbitraries.js';
import type { Laws } from './laws.js';
import * as tf from '@tensorflow/tfjs-core';
import { leafSize, paths, type ParamSpec, type Params, type Tree } from '../core/index.js';
import type { Mask, Scores } from '../selection/index.js';
import { maskAlgebra } from '../selection/index.js';
import { applyUpdates, disposeReplaced, trainOnly, type GradientTransformation, type OptState, type Updates } from '../optim/index.js';

const bitsOf = (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer));

/**
 * Runs a transformation over a list of gradient trees from `params` and
 * returns the parameters it ends at: state initialised (with `spec`, for
 * masks given as filters), each step's updates written with `apply`
 * (default `applyUpdates`), everything in between disposed — the caller's
 * `params` included in nothing it frees. What the optimizer laws run, for a
 * law of your own.
 * @example
 * ```ts
 * const end = runSteps(trainOnly(adam(1e-2), mask), params, [g1, g2, g3], { spec });
 * ```
 * @category Laws
 */
export function runSteps(
  tx: GradientTransformation,
  params: Params,
  grads: readonly Updates[],
  options: { readonly spec?: ParamSpec; readonly apply?: (p: Params, u: Updates) => Params } = {},
): Params {
  const apply = options.apply ?? applyUpdates;
  let state: OptState = tf.tidy(() => tx.init(params, options.spec));
  let current = params;
  const own = new Set(Object.values(params));
  for (const g of grads) {
    const out = tf.tidy(() => {
      const [u, next] = tx.update(g, state, current);
      return { p: apply(current, u), next };
    });
    disposeReplaced(state, out.next);
    const kept = new Set(Object.values(out.p));
    for (const t of Object.values(current)) if (!own.has(t) && !kept.has(t)) t.dispose();
    state = out.next;
    current = out.p;
  }
  tf.dispose(state);
  return current;
}

/**
 * Options of {@link optimizerLaws}.
 * @category Laws
 */
export interface OptimizerLawOptions {
  /** Steps per run (default 3). */
  readonly steps?: number;
  /** Sparse state in the default masking (default false). */
  readonly sparseState?: boolean;
  /** How a transformation is restricted to a mask (default sparsetune's `trainOnly`), to test a masking of your own. */
  readonly maskWith?: (tx: GradientTransformation, mask: Mask) => GradientTransformation;
  /** How updates are written (default `applyUpdates`). */
  readonly applyWith?: (params: Params, updates: Updates, mask: Mask) => Params;
}

/**
 * Laws of a transformation and its masking: frozen entries stay
 * bit-identical over several steps (NaN and ±Inf gradients at frozen
 * positions, −0 parameters); an all-ones mask gives exactly the unmasked
 * transformation; results do not depend on the order the leaves come in
 * (state keyed by path, not position). `make` builds a fresh transformation.
 * @example
 * ```ts
 * checkLaws(optimizerLaws(() => adamw(1e-2, { weightDecay: 0.1 })), { numRuns: 50 });
 * ```
 * @category Laws
 */
export function optimizerLaws(make: () => GradientTransformation, options: OptimizerLawOptions = {}): Laws {
  const steps = options.steps ?? 3;
  const maskWith = options.maskWith ?? ((tx, mask) => trainOnly(tx, mask, { sparseState: options.sparseState ?? false }));
  const applyWith = options.applyWith ?? ((p: Params, u: Updates) => applyUpdates(p, u));
  const specs = specArb({ maxLeaves: 3, maxRank: 2, minDim: 1, maxDim: 3 });
  const setup = specs.chain((spec) =>
    fc.record({
      spec: fc.constant(spec),
      params: fc.record(Object.fromEntries(paths(spec).map((p) => [p, floatsArb(leafSize(spec[p]!), { ties: false }).map((v) => v.map((x, i) => (i % 5 === 4 ? -0 : x)))]))) as fc.Arbitrary<Scores>,
      grads: fc.array(scoresFor(spec, { nonFinite: true }), { minLength: steps, maxLength: steps }),
      finite: fc.array(scoresFor(spec, { ties: false }), { minLength: steps, maxLength: steps }),
      mask: maskFor(spec),
    }),
  );
  return {
    'frozen entries stay bit-identical': fc.property(setup, ({ spec, params, grads, mask }) => {
      const p0 = toParams(spec, params);
      const end = runSteps(maskWith(make(), mask), p0, grads.map((g) => toParams(spec, g)), { apply: (p, u) => applyWith(p, u, mask) });
      return paths(spec).every((p) => {
        const a = bitsOf(end[p]!);
        const b = bitsOf(p0[p]!);
        return mask.bits[p]!.every((m, i) => m === 1 || a[i] === b[i]);
      });
    }),
    'an all-ones mask is the unmasked transformation': fc.property(setup, ({ spec, params, finite }) => {
      const p0 = toParams(spec, params);
      const one = maskAlgebra(spec).one;
      const g = finite.map((x) => toParams(spec, x));
      const a = runSteps(maskWith(make(), one), p0, g, { apply: (p, u) => applyWith(p, u, one) });
      const b = runSteps(make(), p0, g);
      return paths(spec).every((p) => bitsOf(a[p]!).every((x, i) => x === bitsOf(b[p]!)[i]));
    }),
    'independent of the order of the leaves': fc.property(setup, ({ spec, params, finite }) => {
      const p0 = toParams(spec, params);
      const reverse = <T>(t: Tree<T>): Tree<T> => Object.fromEntries(paths(spec).reverse().map((p) => [p, t[p]!]));
      const g = finite.map((x) => toParams(spec, x));
      const a = runSteps(make(), p0, g);
      const b = runSteps(make(), reverse(p0), g.map(reverse));
      return paths(spec).every((p) => bitsOf(a[p]!).every((x, i) => x === bitsOf(b[p]!)[i]));
    }),
  };
}
