/**
 * Arbitraries: fast-check generators of specs, parameter values, scores,
 * masks, budgets, seeds and selection environments.
 * @module
 */
import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs-core';
import { leafSize, paramSpec, paths, tree, type ParamSpec, type Params, type Role, type Tree } from '../core/index.js';
import { exactly, fraction, maskOf, selectionEnv, type Budget, type Mask, type Scores, type SelectionEnv } from '../selection/index.js';

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
  /** Leaf paths to draw from (default {@link pathArb}): pass your model's own to exercise your filters. */
  readonly paths?: fc.Arbitrary<string> | readonly string[];
}

/** Paths that order differently as strings and as {@link comparePaths} (`blocks.10` after `blocks.2`). */
const PATHS = ['a', 'b', 'c', 'blocks.0.w', 'blocks.1.w', 'blocks.2.w', 'blocks.10.w', 'head.kernel', 'head.bias'];
const SEGMENTS = ['blocks', 'attn', 'mlp', 'qkv', 'kernel', 'bias', 'norm', 'head', 'stem', 'w', 'x_1', 'Conv2D'];

/**
 * Leaf paths: the fixed ones of a transformer-like model half the time,
 * otherwise 1–4 dot-separated segments mixing names and block indices
 * (`mlp.3.kernel`, `stem.Conv2D`, `blocks.12.attn.0`), so path filters,
 * `byBlock` and numeric ordering meet paths they were not written for.
 * @example
 * ```ts
 * fc.assert(fc.property(pathArb(), (p) => paramSpec([[p, { shape: [2], role: 'bias', neuronAxis: 0 }]]) !== undefined));
 * ```
 * @category Arbitraries
 */
export function pathArb(): fc.Arbitrary<string> {
  const segment = fc.oneof(fc.constantFrom(...SEGMENTS), fc.nat(12).map(String));
  const drawn = fc
    .array(segment, { minLength: 1, maxLength: 4 })
    .map((segs) => (segs.length === 1 && /^[0-9]+$/.test(segs[0]!) ? ['blocks', ...segs] : segs).join('.'));
  return fc.oneof(fc.constantFrom(...PATHS), drawn);
}

function pathsOf(given: SpecArbOptions['paths']): fc.Arbitrary<string> {
  if (given === undefined) return pathArb();
  return Array.isArray(given) ? fc.constantFrom(...(given as readonly string[])) : (given as fc.Arbitrary<string>);
}

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
    .uniqueArray(fc.tuple(pathsOf(options.paths), leaf), { selector: ([p]) => p, minLength: 1, maxLength: options.maxLeaves ?? 4 })
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

/**
 * `n` float32 values as {@link ValueOptions} asks: ties, zeros, −0, negatives,
 * and NaN / ±Infinity on request.
 * @example
 * ```ts
 * fc.assert(fc.property(floatsArb(6, { nonFinite: true }), (xs) => xs.length === 6));
 * ```
 * @category Arbitraries
 */
export function floatsArb(n: number, o: ValueOptions = {}): fc.Arbitrary<Float32Array> {
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
  return fc.record(Object.fromEntries(paths(spec).map((p) => [p, floatsArb(leafSize(spec[p]!), options)]))) as fc.Arbitrary<Scores>;
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
