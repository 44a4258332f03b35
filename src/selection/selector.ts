/**
 * The selector algebra. A selector maps a context — the environment and the
 * entries it may choose among (`eligible`) — to a mask, with errors in
 * `Either`. Selectors are `granularity × criterion` (`neuron`, `layer`,
 * `net` over a {@link Criterion}), restricted by filters and combined with
 * `union`, `intersect`, `complement` and `refine`. Nothing outside
 * `eligible` is ever selected, and budgets count only eligible entries.
 *
 * @module
 */
import * as E from 'fp-ts/lib/Either.js';
import { pipe } from 'fp-ts/lib/function.js';
import { requireBackend } from '../core/backend.js';
import { BudgetError, pathMatcher, paths, SparsetuneError, type LeafSpec, type Role } from '../core/index.js';
import { assertMaskFor, depthOf, maskAlgebra, maskOf, countOnes, type Mask } from './mask.js';
import { scoresOf, type Criterion, type SelectionEnv } from './scores.js';
import { topKGlobal, topKPerNeuron } from './topk.js';

/**
 * What a selector sees: the environment and the entries it may select.
 * @category Selection
 */
export interface SelectionContext {
  /** Spec, parameters, data, seed and score cache. */
  readonly env: SelectionEnv;
  /** The entries this selector may choose among. */
  readonly eligible: Mask;
}

/**
 * A selector: context → mask, or an error.
 * @category Selection
 */
export type Selector = (ctx: SelectionContext) => E.Either<SparsetuneError, Mask>;

/**
 * How many entries a budgeted selector keeps: an exact `count`, a
 * `fraction` of the eligible entries (rounded to the nearest integer,
 * halves up), or the same count as a given mask (`sameAs`: per leaf for
 * {@link layer}, in total for {@link net}) — so ablations match a
 * reference mask's parameter count exactly.
 * @category Selection
 */
export type Budget =
  | { readonly kind: 'count'; readonly n: number }
  | { readonly kind: 'fraction'; readonly f: number }
  | { readonly kind: 'sameAs'; readonly mask: Mask };

/**
 * A budget of exactly `n` entries.
 * @example
 * ```ts
 * net(exactly(1000), gradient())
 * ```
 * @category Selection
 */
export const exactly = (n: number): Budget => ({ kind: 'count', n });
/**
 * A budget of `round(f · eligible)` entries, `0 ≤ f ≤ 1`.
 * @example
 * ```ts
 * layer(fraction(0.01), magnitude())
 * ```
 * @category Selection
 */
export const fraction = (f: number): Budget => ({ kind: 'fraction', f });
/**
 * A budget of as many entries as `mask` holds (per leaf for `layer`, in total for `net`).
 * @example
 * ```ts
 * net(sameAs(gpsMask), random()) // as many entries as GPS chose
 * ```
 * @category Selection
 */
export const sameAs = (mask: Mask): Budget => ({ kind: 'sameAs', mask });

/** The entry count a budget asks for out of `available`, or a BudgetError. */
function resolve(budget: Budget, available: number, reference: number): E.Either<BudgetError, number> {
  switch (budget.kind) {
    case 'count':
      if (!Number.isInteger(budget.n) || budget.n < 0) return E.left(new BudgetError(`budget: count must be a non-negative integer, got ${budget.n}`));
      if (budget.n > available) return E.left(new BudgetError(`budget: count ${budget.n} is more than the ${available} eligible entries`));
      return E.right(budget.n);
    case 'fraction':
      if (!(budget.f >= 0 && budget.f <= 1)) return E.left(new BudgetError(`budget: fraction must be in [0, 1], got ${budget.f}`));
      return E.right(Math.floor(budget.f * available + 0.5));
    case 'sameAs':
      if (reference > available) return E.left(new BudgetError(`budget: the reference mask holds ${reference} entries, more than the ${available} eligible`));
      return E.right(reference);
  }
}

// ---------------------------------------------------------------------------
// Filters

/**
 * A predicate on leaves.
 * @category Filters
 */
export type Filter = (path: string, leaf: LeafSpec) => boolean;

/**
 * Leaves whose path matches a glob (`*` one segment, `**` any number), e.g. `'blocks.*.attn.**'`.
 * @example
 * ```ts
 * only(byPath('blocks.*.mlp.**'), neuron(2, gradient()))
 * ```
 * @category Filters
 */
export function byPath(pattern: string): Filter {
  const match = pathMatcher(pattern);
  return (path) => match(path);
}

/**
 * Leaves of any of the given roles.
 * @example
 * ```ts
 * only(byRole('bias', 'head'), all) // BitFit
 * ```
 * @category Filters
 */
export const byRole =
  (...roles: Role[]): Filter =>
  (_path, leaf) =>
    roles.includes(leaf.role);

/**
 * Leaves in the given blocks (first numeric path segment, `blocks.3.…` → 3).
 * @example
 * ```ts
 * only(byBlock((b) => b >= 2), neuron(1, gradient())) // the top blocks only
 * ```
 * @category Filters
 */
export const byBlock =
  (blocks: readonly number[] | ((block: number) => boolean)): Filter =>
  (path) => {
    const block = depthOf(path);
    if (block === null) return false;
    return typeof blocks === 'function' ? blocks(block) : blocks.includes(block);
  };

/**
 * Leaves passing every filter.
 * @example
 * ```ts
 * only(and(byRole('kernel'), byBlock([0])), all)
 * ```
 * @category Filters
 */
export const and =
  (...fs: Filter[]): Filter =>
  (p, l) =>
    fs.every((f) => f(p, l));
/**
 * Leaves passing any filter.
 * @example
 * ```ts
 * only(or(byRole('bias'), byRole('norm')), all)
 * ```
 * @category Filters
 */
export const or =
  (...fs: Filter[]): Filter =>
  (p, l) =>
    fs.some((f) => f(p, l));
/**
 * Leaves failing the filter.
 * @example
 * ```ts
 * only(not(byRole('head')), net(fraction(0.001), random()))
 * ```
 * @category Filters
 */
export const not =
  (f: Filter): Filter =>
  (p, l) =>
    !f(p, l);

// ---------------------------------------------------------------------------
// Granularities

/**
 * The criterion's scores, or our own errors as a Left. Anything else (a
 * throwing `onProgress` or user criterion, an out-of-memory) is thrown as
 * it is, so the caller sees its own error, class and all.
 */
const withScores = (ctx: SelectionContext, criterion: Criterion): E.Either<SparsetuneError, ReturnType<typeof scoresOf>> => {
  try {
    return E.right(scoresOf(ctx.env, criterion));
  } catch (e) {
    if (e instanceof SparsetuneError) return E.left(e);
    throw e;
  }
};

/**
 * For every neuron, the top-`k` entries of its fan-in by `criterion`
 * (among eligible ones). `k` is clamped to each neuron's eligible fan-in,
 * so a vector leaf (fan-in 1 per neuron) is kept whole by any `k ≥ 1`.
 * @example
 * ```ts
 * only(byRole('kernel'), neuron(1, gradient()))
 * ```
 * @category Selectors
 */
export function neuron(k: number, criterion: Criterion): Selector {
  return (ctx) => {
    if (!Number.isInteger(k) || k < 0) return E.left(new BudgetError(`neuron: k must be a non-negative integer, got ${k}`));
    return pipe(
      withScores(ctx, criterion),
      E.map((scores) =>
        maskOf(ctx.env.spec, (leaf, p) => topKPerNeuron(scores[p]!, leaf.shape, leaf.neuronAxis, k, ctx.eligible.bits[p]!)),
      ),
    );
  };
}

/**
 * Within each leaf, its top entries by `criterion`. A `count` budget is
 * split over the leaves in proportion to their eligible entries (largest
 * remainders, ties to the earlier leaf); a `fraction` applies to each
 * leaf; `sameAs(mask)` takes each leaf's count from the mask.
 * @example
 * ```ts
 * layer(fraction(0.005), gradient())
 * ```
 * @category Selectors
 */
export function layer(budget: Budget, criterion: Criterion): Selector {
  return (ctx) => {
    const spec = ctx.env.spec;
    const ps = paths(spec);
    const avail = ps.map((p) => countOnes(ctx.eligible.bits[p]!));
    let counts: E.Either<BudgetError, number[]>;
    if (budget.kind === 'count') {
      const totalAvail = avail.reduce((a, b) => a + b, 0);
      counts = pipe(
        resolve(budget, totalAvail, 0),
        E.map((n) => {
          const exact = avail.map((a) => (totalAvail === 0 ? 0 : (n * a) / totalAvail));
          const base = exact.map(Math.floor);
          let left = n - base.reduce((a, b) => a + b, 0);
          const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
          for (const [, i] of order) if (left > 0 && base[i]! < avail[i]!) (base[i]!++, left--);
          return base;
        }),
      );
    } else {
      if (budget.kind === 'sameAs') {
        try {
          assertMaskFor(spec, budget.mask, 'layer: sameAs');
        } catch (e) {
          return E.left(e as SparsetuneError);
        }
      }
      counts = E.sequenceArray(ps.map((p, i) => resolve(budget, avail[i]!, budget.kind === 'sameAs' ? countOnes(budget.mask.bits[p]!) : 0))) as E.Either<BudgetError, number[]>;
    }
    return pipe(
      counts,
      E.chainW((cs) =>
        pipe(
          withScores(ctx, criterion),
          E.map((scores) => maskOf(spec, (_, p) => topKGlobal([scores[p]!], [ctx.eligible.bits[p]!], cs[ps.indexOf(p)]!)[0]!)),
        ),
      ),
    );
  };
}

/**
 * One global top over every eligible entry by `criterion`, leaves taken in
 * spec order (ties to the earlier leaf, then the lower index).
 * @example
 * ```ts
 * net(exactly(5000), sensitivity())
 * ```
 * @category Selectors
 */
export function net(budget: Budget, criterion: Criterion): Selector {
  return (ctx) => {
    const spec = ctx.env.spec;
    const ps = paths(spec);
    const eligible = ps.map((p) => ctx.eligible.bits[p]!);
    const avail = eligible.reduce((s, e) => s + countOnes(e), 0);
    if (budget.kind === 'sameAs') {
      try {
        assertMaskFor(spec, budget.mask, 'net: sameAs');
      } catch (e) {
        return E.left(e as SparsetuneError);
      }
    }
    const reference = budget.kind === 'sameAs' ? ps.reduce((s, p) => s + countOnes(budget.mask.bits[p]!), 0) : 0;
    return pipe(
      resolve(budget, avail, reference),
      E.chainW((n) =>
        pipe(
          withScores(ctx, criterion),
          E.map((scores) => {
            const picked = topKGlobal(
              ps.map((p) => scores[p]!),
              eligible,
              n,
            );
            return maskOf(spec, (_, p) => picked[ps.indexOf(p)]!);
          }),
        ),
      ),
    );
  };
}

/**
 * Every eligible entry (of the leaves the context allows).
 * @example
 * ```ts
 * only(byRole('head'), all) // linear probing
 * ```
 * @category Selectors
 */
export const all: Selector = (ctx) => E.right(ctx.eligible);

/**
 * Nothing.
 * @example
 * ```ts
 * union(none, bitfit()) // none is union's identity
 * ```
 * @category Selectors
 */
export const none: Selector = (ctx) => E.right(maskAlgebra(ctx.env.spec).zero);

// ---------------------------------------------------------------------------
// Combinators

const restrict = (ctx: SelectionContext, filter: Filter): SelectionContext => ({
  ...ctx,
  eligible: maskAlgebra(ctx.env.spec).meet(
    ctx.eligible,
    maskOf(ctx.env.spec, (leaf, p) => filter(p, leaf)),
  ),
});

/**
 * `s` choosing only among leaves that pass `filter` (its budget counts only those).
 * @example
 * ```ts
 * only(byRole('kernel'), neuron(1, gradient()))
 * ```
 * @category Combinators
 */
export const only =
  (filter: Filter, s: Selector): Selector =>
  (ctx) =>
    s(restrict(ctx, filter));

/**
 * `s` choosing only among leaves that fail `filter`.
 * @example
 * ```ts
 * except(byRole('head'), net(fraction(0.01), magnitude()))
 * ```
 * @category Combinators
 */
export const except = (filter: Filter, s: Selector): Selector => only(not(filter), s);

/**
 * Entries any of the selectors picks (pointwise or). Scores are shared, so
 * selectors on the same criterion cost one computation.
 * @example
 * ```ts
 * union(only(byRole('kernel'), neuron(1, gradient())), bitfit())
 * ```
 * @category Combinators
 */
export const union =
  (...ss: Selector[]): Selector =>
  (ctx) =>
    pipe(
      E.sequenceArray(ss.map((s) => s(ctx))),
      E.map((ms) => ms.reduce(maskAlgebra(ctx.env.spec).join, maskAlgebra(ctx.env.spec).zero)),
    );

/**
 * Entries every selector picks (pointwise and).
 * @example
 * ```ts
 * intersect(neuron(4, gradient()), neuron(4, magnitude())) // both criteria agree
 * ```
 * @category Combinators
 */
export const intersect =
  (...ss: Selector[]): Selector =>
  (ctx) =>
    pipe(
      E.sequenceArray(ss.map((s) => s(ctx))),
      E.map((ms) => ms.reduce(maskAlgebra(ctx.env.spec).meet, ctx.eligible)),
    );

/**
 * Eligible entries `s` does not pick.
 * @example
 * ```ts
 * complement(only(byRole('head'), all)) // everything but the head
 * ```
 * @category Combinators
 */
export const complement =
  (s: Selector): Selector =>
  (ctx) =>
    pipe(
      s(ctx),
      E.map((m) => maskAlgebra(ctx.env.spec).meet(ctx.eligible, maskAlgebra(ctx.env.spec).not(m))),
    );

/**
 * `inner` choosing only among what `outer` picked; `inner`'s budget counts only those.
 * @example
 * ```ts
 * // The 1% of the gradient-selected kernel entries with the largest magnitude.
 * refine(only(byRole('kernel'), neuron(4, gradient())), net(fraction(0.01), magnitude()))
 * ```
 * @category Combinators
 */
export const refine =
  (outer: Selector, inner: Selector): Selector =>
  (ctx) =>
    pipe(
      outer(ctx),
      E.chain((o) => inner({ ...ctx, eligible: o })),
    );

/**
 * Runs a selector on an environment and returns its mask; errors are thrown.
 * @example
 * ```ts
 * const mask = select(gps({ k: 1 }), selectionEnv({ model, params, data: task.train }));
 * console.log(describeMask(mask));
 * ```
 * @category Selection
 */
export function select(selector: Selector, env: SelectionEnv): Mask {
  requireBackend('select');
  const result = selector({ env, eligible: maskAlgebra(env.spec).one });
  if (E.isLeft(result)) throw result.left;
  return result.right;
}
