/**
 * The testing kit: fast-check arbitraries for specs, parameters, scores,
 * masks and budgets, and law suites for mask algebras, selectors, criteria
 * and optimizers — what sparsetune's own property tests use. Import it from
 * `sparsetune/testing`; it needs `fast-check` (an optional peer dependency).
 *
 * Every suite returns named fast-check properties, usable from any test
 * runner; {@link checkLaws} runs them and reports a failing law by name with
 * the seed and path that replay it.
 *
 * @module
 */
import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs-core';
import { leafSize, paramSpec, paths, tree, type LeafSpec, type ParamSpec, type Params, type Role, type Tree } from '../core/index.js';
import {
  exactly,
  fraction,
  fromScores,
  layer,
  maskOf,
  net,
  neuron,
  select,
  selectionEnv,
  type Budget,
  type Criterion,
  type Filter,
  type Mask,
  type MaskAlgebra,
  type Scores,
  type SelectionEnv,
  type Selector,
} from '../selection/index.js';
import { maskAlgebra } from '../selection/index.js';
import { applyMaskedUpdates, applyUpdates, deviceMask, disposeReplaced, masked, type DeviceMask, type GradientTransformation, type OptState, type Updates } from '../optim/index.js';

// ---------------------------------------------------------------------------
// Arbitraries

/**
 * Options of {@link specArb}.
 * @category Arbitraries
 */
export interface SpecArbOptions {
  /** Most leaves (default 4). */
  readonly maxLeaves?: number;
  /** Largest rank (default 4). */
  readonly maxRank?: number;
  /** Largest dim (default 4); dims start at `minDim`. */
  readonly maxDim?: number;
  /** Smallest dim (default 0: empty leaves happen). */
  readonly minDim?: number;
  /** Roles to draw from (default all but `adapter`). */
  readonly roles?: readonly Role[];
}

const PATHS = ['a', 'b', 'c', 'blocks.0.w', 'blocks.1.w', 'blocks.10.w', 'head.kernel', 'head.bias'];

/**
 * Parameter specs: up to `maxLeaves` leaves of rank 1–`maxRank`, tiny and
 * empty dims, random roles and neuron axes. Shrinks toward one small leaf.
 * @example
 * ```ts
 * fc.assert(fc.property(specArb({ maxRank: 2 }), (spec) => countEntries(spec) >= 0));
 * ```
 * @category Arbitraries
 */
export function specArb(options: SpecArbOptions = {}): fc.Arbitrary<ParamSpec> {
  const roles = options.roles ?? (['kernel', 'bias', 'norm', 'embedding', 'token', 'head'] as const);
  const leaf = fc
    .array(fc.integer({ min: options.minDim ?? 0, max: options.maxDim ?? 4 }), { minLength: 1, maxLength: options.maxRank ?? 4 })
    .chain((shape) => fc.record({ shape: fc.constant(shape), role: fc.constantFrom(...roles), neuronAxis: fc.nat(shape.length - 1) }));
  return fc
    .uniqueArray(fc.tuple(fc.constantFrom(...PATHS), leaf), { selector: ([p]) => p, minLength: 1, maxLength: options.maxLeaves ?? 4 })
    .map((entries) => paramSpec(entries));
}

/**
 * Options of {@link valuesFor} and {@link scoresFor}.
 * @category Arbitraries
 */
export interface ValueOptions {
  /** Include NaN and ±Infinity (default false). */
  readonly nonFinite?: boolean;
  /** Draw from a few small integers so ties are common (default: half the time). */
  readonly ties?: boolean;
}

function numbers(n: number, o: ValueOptions): fc.Arbitrary<Float32Array> {
  const tied = fc.array(fc.integer({ min: -2, max: 3 }), { minLength: n, maxLength: n });
  const spread = fc.array(fc.float({ noNaN: true, min: -10, max: 10 }), { minLength: n, maxLength: n });
  const special = fc.array(fc.oneof(fc.float({ noNaN: true, min: -10, max: 10 }), fc.constantFrom(Number.NaN, Infinity, -Infinity, 0, -0)), { minLength: n, maxLength: n });
  const pick = o.nonFinite ? special : o.ties === true ? tied : o.ties === false ? spread : fc.oneof(tied, spread);
  return pick.map((xs) => Float32Array.from(xs));
}

/**
 * One Float32Array per leaf of `spec`: ties, zeros and negative values, and
 * NaN / ±Infinity on request.
 * @example
 * ```ts
 * specArb().chain((spec) => scoresFor(spec, { ties: true }))
 * ```
 * @category Arbitraries
 */
export function scoresFor(spec: ParamSpec, options: ValueOptions = {}): fc.Arbitrary<Scores> {
  return fc.record(Object.fromEntries(paths(spec).map((p) => [p, numbers(leafSize(spec[p]!), options)]))) as fc.Arbitrary<Scores>;
}

/**
 * Host values for a parameter tree of `spec` (see {@link toParams}).
 * @example
 * ```ts
 * specArb().chain((spec) => valuesFor(spec)).map((v) => toParams(spec, v))
 * ```
 * @category Arbitraries
 */
export const valuesFor = (spec: ParamSpec, options: ValueOptions = {}): fc.Arbitrary<Scores> => scoresFor(spec, options);

/**
 * Tensors for host values; the caller disposes them.
 * @example
 * ```ts
 * const params = toParams(spec, values);
 * ```
 * @category Arbitraries
 */
export function toParams(spec: ParamSpec, values: Tree<Float32Array>): Params {
  return tree(paths(spec).map((p) => [p, tf.tensor(values[p]!, [...spec[p]!.shape], 'float32')]));
}

/**
 * Masks over `spec`.
 * @example
 * ```ts
 * specArb().chain((spec) => fc.tuple(maskFor(spec), maskFor(spec)))
 * ```
 * @category Arbitraries
 */
export function maskFor(spec: ParamSpec): fc.Arbitrary<Mask> {
  return fc
    .record(Object.fromEntries(paths(spec).map((p) => [p, fc.array(fc.boolean(), { minLength: leafSize(spec[p]!), maxLength: leafSize(spec[p]!) })])))
    .map((bits) => maskOf(spec, (_, p) => Uint8Array.from((bits as Record<string, boolean[]>)[p]!, Number)));
}

/**
 * Budgets for `total` eligible entries: valid ones (a count in [0, total],
 * a fraction in [0, 1]) or, with `valid: false`, invalid ones (negative,
 * fractional or too large counts, fractions outside [0, 1]).
 * @example
 * ```ts
 * budgetArb(100, { valid: false }) // every one is a BudgetError
 * ```
 * @category Arbitraries
 */
export function budgetArb(total: number, options: { readonly valid?: boolean } = {}): fc.Arbitrary<Budget> {
  if (options.valid === false) {
    return fc.oneof(
      fc.integer({ min: -100, max: -1 }).map(exactly),
      fc.integer({ min: total + 1, max: total + 100 }).map(exactly),
      fc.double({ min: 0.1, max: 0.9, noNaN: true }).map((x) => exactly(Math.floor(total / 2) + x)),
      fc.double({ min: 1.0001, max: 10, noNaN: true }).map(fraction),
      fc.double({ min: -10, max: -0.0001, noNaN: true }).map(fraction),
    );
  }
  return fc.oneof(fc.integer({ min: 0, max: total }).map(exactly), fc.double({ min: 0, max: 1, noNaN: true }).map(fraction));
}

/**
 * Seeds.
 * @example
 * ```ts
 * fc.property(seedArb, (seed) => ...)
 * ```
 * @category Arbitraries
 */
export const seedArb: fc.Arbitrary<number> = fc.integer({ min: 0, max: 2 ** 31 - 1 });

/**
 * Selection environments over random specs with random parameters and seeds
 * (no model or data: for criteria of parameters and scores).
 * @example
 * ```ts
 * selectorLaws(neuron(2, magnitude()), { env: envArb({ maxRank: 2 }) })
 * ```
 * @category Arbitraries
 */
export function envArb(options: SpecArbOptions = {}): fc.Arbitrary<SelectionEnv> {
  return specArb(options).chain((spec) => fc.tuple(valuesFor(spec), seedArb).map(([v, seed]) => selectionEnv({ spec, params: toParams(spec, v), seed })));
}

// ---------------------------------------------------------------------------
// Running laws

/**
 * Named properties, one per law.
 * @category Laws
 */
export type Laws = Readonly<Record<string, fc.IProperty<never> | fc.IProperty<unknown[]>>>;

/**
 * Runs every law with `fc.assert`; a failure is rethrown as an Error whose
 * message starts with the law's name and carries fast-check's report (the
 * counterexample, and the seed and path that replay it).
 * @example
 * ```ts
 * checkLaws(selectorLaws(mySelector, { filter: byRole('kernel') }), { numRuns: 200 });
 * ```
 * @category Laws
 */
export function checkLaws(laws: Laws, parameters: fc.Parameters<unknown> = {}): void {
  for (const [name, property] of Object.entries(laws)) {
    try {
      fc.assert(property as fc.IProperty<unknown>, parameters);
    } catch (e) {
      throw new Error(`law '${name}' failed: ${(e as Error).message}`);
    }
  }
}

// ---------------------------------------------------------------------------
// Mask algebra laws

/**
 * The Boolean algebra laws (associativity, commutativity, idempotence,
 * identities, annihilators, absorption, distributivity, complement,
 * De Morgan, double complement, implication) for the algebra of any spec
 * the arbitrary draws, plus the monoid identities.
 * @example
 * ```ts
 * checkLaws(maskAlgebraLaws(maskAlgebra));
 * ```
 * @category Laws
 */
export function maskAlgebraLaws(instance: (spec: ParamSpec) => MaskAlgebra, specs: fc.Arbitrary<ParamSpec> = specArb()): Laws {
  const three = specs.chain((spec) => fc.tuple(fc.constant(instance(spec)), maskFor(spec), maskFor(spec), maskFor(spec)));
  const law = (f: (A: MaskAlgebra, a: Mask, b: Mask, c: Mask) => [Mask, Mask]) =>
    fc.property(three, ([A, a, b, c]) => {
      const [x, y] = f(A, a, b, c);
      return A.eq.equals(x, y);
    });
  return {
    'join is associative': law((A, a, b, c) => [A.join(a, A.join(b, c)), A.join(A.join(a, b), c)]),
    'meet is associative': law((A, a, b, c) => [A.meet(a, A.meet(b, c)), A.meet(A.meet(a, b), c)]),
    'join is commutative': law((A, a, b) => [A.join(a, b), A.join(b, a)]),
    'meet is commutative': law((A, a, b) => [A.meet(a, b), A.meet(b, a)]),
    'join is idempotent': law((A, a) => [A.join(a, a), a]),
    'meet is idempotent': law((A, a) => [A.meet(a, a), a]),
    'zero is the identity of join': law((A, a) => [A.join(a, A.zero), a]),
    'one is the identity of meet': law((A, a) => [A.meet(a, A.one), a]),
    'one annihilates join': law((A, a) => [A.join(a, A.one), A.one]),
    'zero annihilates meet': law((A, a) => [A.meet(a, A.zero), A.zero]),
    'absorption (join)': law((A, a, b) => [A.join(a, A.meet(a, b)), a]),
    'absorption (meet)': law((A, a, b) => [A.meet(a, A.join(a, b)), a]),
    'meet distributes over join': law((A, a, b, c) => [A.meet(a, A.join(b, c)), A.join(A.meet(a, b), A.meet(a, c))]),
    'join distributes over meet': law((A, a, b, c) => [A.join(a, A.meet(b, c)), A.meet(A.join(a, b), A.join(a, c))]),
    'complement (join)': law((A, a) => [A.join(a, A.not(a)), A.one]),
    'complement (meet)': law((A, a) => [A.meet(a, A.not(a)), A.zero]),
    'De Morgan (join)': law((A, a, b) => [A.not(A.join(a, b)), A.meet(A.not(a), A.not(b))]),
    'De Morgan (meet)': law((A, a, b) => [A.not(A.meet(a, b)), A.join(A.not(a), A.not(b))]),
    'double complement': law((A, a) => [A.not(A.not(a)), a]),
    'implication is ¬a ∨ b': law((A, a, b) => [A.implies(a, b), A.join(A.not(a), b)]),
    'a → a is one': law((A, a) => [A.implies(a, a), A.one]),
    'a ∧ (a → b) = a ∧ b': law((A, a, b) => [A.meet(a, A.implies(a, b)), A.meet(a, b)]),
    'b ∧ (a → b) = b': law((A, a, b) => [A.meet(b, A.implies(a, b)), b]),
    'a → (b ∧ c) = (a → b) ∧ (a → c)': law((A, a, b, c) => [A.implies(a, A.meet(b, c)), A.meet(A.implies(a, b), A.implies(a, c))]),
    'union monoid identity': law((A, a) => [A.union.concat(A.union.empty, a), a]),
    'intersection monoid identity': law((A, a) => [A.intersection.concat(a, A.intersection.empty), a]),
  };
}

// ---------------------------------------------------------------------------
// Selector and criterion laws

/**
 * Options of {@link selectorLaws}.
 * @category Laws
 */
export interface SelectorLawOptions {
  /** Environments to run in (default {@link envArb}). */
  readonly env?: fc.Arbitrary<SelectionEnv>;
  /** The selector must pick nothing outside leaves passing this filter. */
  readonly filter?: Filter;
  /** For budgeted selectors: the exact number of entries it must pick in an environment. */
  readonly budget?: (env: SelectionEnv) => number;
  /** For selectors with a k: the selector at k (checks that a smaller k picks a subset). */
  readonly atK?: (k: number) => Selector;
}

/**
 * Laws every selector should obey: the same environment (seed included)
 * gives the same mask; the mask covers the spec exactly; nothing outside
 * `filter` is selected; a budget is met exactly; and, with `atK`, a smaller
 * k selects a subset.
 * @example
 * ```ts
 * checkLaws(selectorLaws(only(byRole('kernel'), neuron(2, magnitude())), { filter: byRole('kernel'), atK: (k) => neuron(k, magnitude()) }));
 * ```
 * @category Laws
 */
export function selectorLaws(selector: Selector, options: SelectorLawOptions = {}): Laws {
  const envs = options.env ?? envArb();
  const laws: Record<string, fc.IProperty<[SelectionEnv]> | fc.IProperty<[SelectionEnv, number, number]>> = {
    'deterministic under a seed': fc.property(envs, (env) => {
      const a = select(selector, env);
      const b = select(selector, { ...env, cache: new Map() });
      return maskAlgebra(env.spec).eq.equals(a, b);
    }),
    'covers the spec exactly': fc.property(envs, (env) => {
      const m = select(selector, env);
      const ps = paths(env.spec);
      return (
        paths(m.bits).length === ps.length &&
        ps.every((p) => m.bits[p]!.length === leafSize(env.spec[p]!) && m.bits[p]!.every((b) => b === 0 || b === 1))
      );
    }),
  };
  if (options.filter) {
    const filter = options.filter;
    laws['selects nothing outside the filter'] = fc.property(envs, (env) => {
      const m = select(selector, env);
      return paths(env.spec).every((p) => filter(p, env.spec[p]!) || m.bits[p]!.every((b) => b === 0));
    });
  }
  if (options.budget) {
    const budget = options.budget;
    laws['meets its budget exactly'] = fc.property(envs, (env) => {
      const m = select(selector, env);
      return paths(env.spec).reduce((s, p) => s + m.bits[p]!.reduce((a, b) => a + b, 0), 0) === budget(env);
    });
  }
  if (options.atK) {
    const atK = options.atK;
    laws['monotone in k'] = fc.property(envs, fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 6 }), (env, k1, k2) => {
      const A = maskAlgebra(env.spec);
      const small = select(atK(Math.min(k1, k2)), env);
      const big = select(atK(Math.max(k1, k2)), env);
      return A.eq.equals(A.meet(small, big), small);
    });
  }
  return laws as Laws;
}

const rankKey = (v: number) => (Number.isNaN(v) ? -Infinity : v);
/** Reference ranking: score descending (NaN as −∞), then index ascending. */
function ranked(idx: number[], s: Float32Array): number[] {
  return [...idx].sort((a, b) => (rankKey(s[a]!) === rankKey(s[b]!) ? a - b : rankKey(s[b]!) > rankKey(s[a]!) ? 1 : -1));
}

/**
 * The granularities' reference definitions, written as sorts.
 * @category Laws
 */
export interface ReferenceSelection {
  /** For every neuron, the `k` best entries of its fan-in. */
  neuron(spec: ParamSpec, scores: Scores, k: number): Tree<Uint8Array>;
  /** The `count` best entries of all leaves concatenated in spec order. */
  net(spec: ParamSpec, scores: Scores, count: number): Tree<Uint8Array>;
  /** In every leaf, its best `round(f · size)` entries. */
  layer(spec: ParamSpec, scores: Scores, f: number): Tree<Uint8Array>;
}

const reference: ReferenceSelection = {
  neuron(spec: ParamSpec, scores: Scores, k: number): Tree<Uint8Array> {
    return Object.fromEntries(
      paths(spec).map((p) => {
        const leaf: LeafSpec = spec[p]!;
        const n = leafSize(leaf);
        const inner = leaf.shape.slice(leaf.neuronAxis + 1).reduce((a, b) => a * b, 1);
        const dim = leaf.shape[leaf.neuronAxis]!;
        const out = new Uint8Array(n);
        for (let j = 0; j < dim; j++) {
          const members = [...Array(n).keys()].filter((i) => Math.floor(i / inner) % dim === j);
          for (const i of ranked(members, scores[p]!).slice(0, k)) out[i] = 1;
        }
        return [p, out];
      }),
    );
  },
  net(spec: ParamSpec, scores: Scores, count: number): Tree<Uint8Array> {
    const ps = paths(spec);
    const flat = Float32Array.from(ps.flatMap((p) => Array.from(scores[p]!)));
    const chosen = new Set(ranked([...flat.keys()], flat).slice(0, count));
    let at = 0;
    return Object.fromEntries(ps.map((p) => [p, Uint8Array.from(scores[p]!, () => (chosen.has(at++) ? 1 : 0))]));
  },
  layer(spec: ParamSpec, scores: Scores, f: number): Tree<Uint8Array> {
    return Object.fromEntries(
      paths(spec).map((p) => {
        const s = scores[p]!;
        const chosen = new Set(ranked([...s.keys()], s).slice(0, Math.floor(f * s.length + 0.5)));
        return [p, Uint8Array.from(s, (_, i) => (chosen.has(i) ? 1 : 0))];
      }),
    );
  },
};

/**
 * For a user's criterion: `neuron`, `layer` and `net` over its scores agree
 * with the reference definitions written as sorts (score descending, NaN as
 * −∞, ties to the lower index).
 * @example
 * ```ts
 * checkLaws(criterionLaws(fromScores((env) => myScores(env), 'mine')));
 * ```
 * @category Laws
 */
export function criterionLaws(criterion: Criterion, envs: fc.Arbitrary<SelectionEnv> = envArb()): Laws {
  const withScores = (env: SelectionEnv) => {
    const fresh = { ...env, cache: new Map() };
    return { env: fresh, scores: (select(neuron(0, criterion), fresh), fresh.cache.get(criterion.key)!) };
  };
  const same = (m: Mask, want: Tree<Uint8Array>) => paths(m.spec).every((p) => m.bits[p]!.every((b, i) => b === want[p]![i]));
  return {
    'neuron(k) is the per-neuron reference top-k': fc.property(envs, fc.integer({ min: 0, max: 5 }), (env, k) => {
      const { env: e, scores } = withScores(env);
      return same(select(neuron(k, criterion), e), reference.neuron(e.spec, scores, k));
    }),
    'net is the reference top of the concatenation': fc.property(envs, fc.double({ min: 0, max: 1, noNaN: true }), (env, f) => {
      const { env: e, scores } = withScores(env);
      const total = paths(e.spec).reduce((s, p) => s + leafSize(e.spec[p]!), 0);
      return same(select(net(fraction(f), criterion), e), reference.net(e.spec, scores, Math.floor(f * total + 0.5)));
    }),
    'layer is the per-leaf reference top': fc.property(envs, fc.double({ min: 0, max: 1, noNaN: true }), (env, f) => {
      const { env: e, scores } = withScores(env);
      return same(select(layer(fraction(f), criterion), e), reference.layer(e.spec, scores, f));
    }),
  };
}

/**
 * The reference selection of the granularities for given scores — what
 * {@link criterionLaws} compares with, exposed for a user's own tests.
 * @example
 * ```ts
 * referenceSelection.neuron(spec, scores, 2)
 * ```
 * @category Laws
 */
export const referenceSelection: ReferenceSelection = reference;

/**
 * Scores of a fixed tree as a criterion, for tests (a fresh key per call).
 * @example
 * ```ts
 * neuron(1, scoresCriterion(scores))
 * ```
 * @category Laws
 */
export const scoresCriterion = (scores: Scores): Criterion => fromScores(scores);

// ---------------------------------------------------------------------------
// Optimizer laws

const bitsOf = (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer));

function runSteps(tx: GradientTransformation, params: Params, grads: readonly Updates[], apply: (p: Params, u: Updates) => Params): Params {
  let state: OptState = tf.tidy(() => tx.init(params));
  let current = params;
  for (const g of grads) {
    const out = tf.tidy(() => {
      const [u, next] = tx.update(g, state, current);
      return { p: apply(current, u), next };
    });
    disposeReplaced(state, out.next);
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
  /** How a transformation is masked (default sparsetune's `masked`), to test a masking of your own. */
  readonly maskWith?: (tx: GradientTransformation, dm: DeviceMask) => GradientTransformation;
  /** How masked updates are written (default `applyMaskedUpdates`). */
  readonly applyWith?: (params: Params, updates: Updates, dm: DeviceMask) => Params;
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
  const maskWith = options.maskWith ?? ((tx, dm) => masked(tx, dm, { sparseState: options.sparseState ?? false }));
  const applyWith = options.applyWith ?? applyMaskedUpdates;
  const specs = specArb({ maxLeaves: 3, maxRank: 2, minDim: 1, maxDim: 3 });
  const setup = specs.chain((spec) =>
    fc.record({
      spec: fc.constant(spec),
      params: fc.record(Object.fromEntries(paths(spec).map((p) => [p, numbers(leafSize(spec[p]!), { ties: false }).map((v) => v.map((x, i) => (i % 5 === 4 ? -0 : x)))]))) as fc.Arbitrary<Scores>,
      grads: fc.array(scoresFor(spec, { nonFinite: true }), { minLength: steps, maxLength: steps }),
      finite: fc.array(scoresFor(spec, { ties: false }), { minLength: steps, maxLength: steps }),
      mask: maskFor(spec),
    }),
  );
  return {
    'frozen entries stay bit-identical': fc.property(setup, ({ spec, params, grads, mask }) => {
      const p0 = toParams(spec, params);
      const dm = deviceMask(mask);
      try {
        const end = runSteps(maskWith(make(), dm), p0, grads.map((g) => toParams(spec, g)), (p, u) => applyWith(p, u, dm));
        return paths(spec).every((p) => {
          const a = bitsOf(end[p]!);
          const b = bitsOf(p0[p]!);
          return mask.bits[p]!.every((m, i) => m === 1 || a[i] === b[i]);
        });
      } finally {
        dm.dispose();
      }
    }),
    'an all-ones mask is the unmasked transformation': fc.property(setup, ({ spec, params, finite }) => {
      const p0 = toParams(spec, params);
      const dm = deviceMask(maskAlgebra(spec).one);
      try {
        const g = finite.map((x) => toParams(spec, x));
        const a = runSteps(maskWith(make(), dm), p0, g, (p, u) => applyWith(p, u, dm));
        const b = runSteps(make(), p0, g, applyUpdates);
        return paths(spec).every((p) => bitsOf(a[p]!).every((x, i) => x === bitsOf(b[p]!)[i]));
      } finally {
        dm.dispose();
      }
    }),
    'independent of the order of the leaves': fc.property(setup, ({ spec, params, finite }) => {
      const p0 = toParams(spec, params);
      const reverse = <T>(t: Tree<T>): Tree<T> => Object.fromEntries(paths(spec).reverse().map((p) => [p, t[p]!]));
      const g = finite.map((x) => toParams(spec, x));
      const a = runSteps(make(), p0, g, applyUpdates);
      const b = runSteps(make(), reverse(p0), g.map(reverse), applyUpdates);
      return paths(spec).every((p) => bitsOf(a[p]!).every((x, i) => x === bitsOf(b[p]!)[i]));
    }),
  };
}
