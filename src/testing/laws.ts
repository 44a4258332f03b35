/**
 * Law suites for mask algebras, selectors and criteria, and the runner that
 * reports a failing law by name with the seed that replays it.
 * @module
 */
import fc from 'fast-check';
import { envArb, maskFor, specArb } from './arbitraries.js';
import { referenceSelection } from './references.js';
import { leafSize, paths, type ParamSpec, type Tree } from '../core/index.js';
import { fraction, layer, net, neuron, select, type Criterion, type Filter, type Mask, type MaskAlgebra, type SelectionEnv, type Selector } from '../selection/index.js';
import { maskAlgebra } from '../selection/index.js';

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
      return same(select(neuron(k, criterion), e), referenceSelection.neuron(e.spec, scores, k));
    }),
    'net is the reference top of the concatenation': fc.property(envs, fc.double({ min: 0, max: 1, noNaN: true }), (env, f) => {
      const { env: e, scores } = withScores(env);
      const total = paths(e.spec).reduce((s, p) => s + leafSize(e.spec[p]!), 0);
      return same(select(net(fraction(f), criterion), e), referenceSelection.net(e.spec, scores, Math.floor(f * total + 0.5)));
    }),
    'layer is the per-leaf reference top': fc.property(envs, fc.double({ min: 0, max: 1, noNaN: true }), (env, f) => {
      const { env: e, scores } = withScores(env);
      return same(select(layer(fraction(f), criterion), e), referenceSelection.layer(e.spec, scores, f));
    }),
  };
}
