// Laws of masks and selectors over random specs, scores and masks.
import { fc, test } from '@fast-check/vitest';
import * as E from 'fp-ts/lib/Either.js';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test as plain } from 'vitest';
import { BudgetError, leafSize, MaskError, paths, tree, type ParamSpec } from '../src/index.js';
import {
  checkLaws,
  maskAlgebraLaws,
  maskFor as kitMaskFor,
  scoresFor as kitScoresFor,
  specArb as kitSpecArb,
} from '../src/testing/index.js';
import {
  complement,
  exactly,
  fraction,
  fromScores,
  intersect,
  layer,
  magnitude,
  maskAlgebra,
  maskFromIndices,
  maskToIndices,
  net,
  neuron,
  random,
  refine,
  select,
  selectionEnv,
  union,
  type Mask,
  type Selector,
} from '../src/selection/index.js';

// ---- arbitraries: the testing kit's --------------------------------------
const specArb = kitSpecArb();
const maskFor = kitMaskFor;
const scoresFor = (spec: ParamSpec) => fc.oneof(kitScoresFor(spec, { ties: true }), kitScoresFor(spec, { ties: false }), kitScoresFor(spec, { nonFinite: true }));
const specScores = specArb.chain((spec) => fc.tuple(fc.constant(spec), scoresFor(spec)));
const specMasks = (n: number) => specArb.chain((spec) => fc.tuple(fc.constant(spec), fc.array(maskFor(spec), { minLength: n, maxLength: n })));

const envOf = (spec: ParamSpec, seed = 0) => selectionEnv({ spec, params: tree(paths(spec).map((p) => [p, tf.zeros([...spec[p]!.shape])])), seed });
const run = (s: Selector, spec: ParamSpec, seed = 0) => select(s, envOf(spec, seed));
const bitsOf = (m: Mask) => paths(m.spec).map((p) => Array.from(m.bits[p]!));

/** Neuron index of each flat index of a leaf. */
function neuronOf(shape: readonly number[], axis: number): (i: number) => number {
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  return (i) => Math.floor(i / inner) % shape[axis]!;
}
/** Reference ranking: score descending (NaN as −∞), then index ascending. */
const rank = (v: number) => (Number.isNaN(v) ? -Infinity : v);
const ranked = (idx: number[], s: Float32Array) => [...idx].sort((a, b) => (rank(s[a]!) === rank(s[b]!) ? a - b : rank(s[b]!) > rank(s[a]!) ? 1 : -1));

// ---- Boolean algebra -------------------------------------------------------
describe('mask algebra', () => {
  plain('Boolean algebra laws, through the testing kit', () => checkLaws(maskAlgebraLaws(maskAlgebra)));

  test.prop([specMasks(2)])('selectors combine pointwise', ([spec, [a, b]]) => {
    const A = maskAlgebra(spec);
    const sa: Selector = () => E.right(a!);
    const sb: Selector = () => E.right(b!);
    expect(A.eq.equals(run(union(sa, sb), spec), A.join(a!, b!))).toBe(true);
    expect(A.eq.equals(run(intersect(sa, sb), spec), A.meet(a!, b!))).toBe(true);
    expect(A.eq.equals(run(complement(sa), spec), A.not(a!))).toBe(true);
  });

  test.prop([specMasks(1), specArb])('a mask of another spec is an error, never a broadcast', ([spec, [a]], other) => {
    fc.pre(paths(other).join() !== paths(spec).join() || JSON.stringify(other) !== JSON.stringify(spec));
    const A = maskAlgebra(other);
    expect(() => A.join(a!, A.zero)).toThrow(MaskError);
    expect(() => A.not(a!)).toThrow(MaskError);
  });

  test.prop([specMasks(1)])('flat indices round-trip exactly', ([spec, [a]]) => {
    const back = maskFromIndices(spec, maskToIndices(a!));
    expect(bitsOf(back)).toEqual(bitsOf(a!));
    for (const idx of Object.values(maskToIndices(a!))) for (let i = 1; i < idx.length; i++) expect(idx[i]!).toBeGreaterThan(idx[i - 1]!);
  });
});

// ---- granularities ----------------------------------------------------------
describe('neuron', () => {
  // Wide leaves reach the four-neurons-at-a-time scan of a last-axis kernel and its tail.
  const wide = kitSpecArb({ maxLeaves: 2, maxRank: 2, minDim: 1, maxDim: 11 }).chain((spec) => fc.tuple(fc.constant(spec), scoresFor(spec)));
  for (const [name, arb] of [['', specScores], [' (wide leaves)', wide]] as const) {
    test.prop([arb, fc.integer({ min: 0, max: 6 })])(`selects exactly the reference top-min(k, fan-in) of every neuron${name}`, ([spec, scores], k) => {
      const m = run(neuron(k, fromScores(scores)), spec);
      for (const p of paths(spec)) {
        const leaf = spec[p]!;
        const of = neuronOf(leaf.shape, leaf.neuronAxis);
        const want = new Uint8Array(leafSize(leaf));
        const dim = leaf.shape[leaf.neuronAxis]!;
        for (let n = 0; n < dim; n++) {
          const members = [...Array(leafSize(leaf)).keys()].filter((i) => of(i) === n);
          for (const i of ranked(members, scores[p]!).slice(0, k)) want[i] = 1;
        }
        expect(Array.from(m.bits[p]!)).toEqual(Array.from(want));
      }
    });
  }

  test.prop([specScores, fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 4 })])('is monotone in k', ([spec, scores], k1, k2) => {
    const [lo, hi] = k1 <= k2 ? [k1, k2] : [k2, k1];
    const A = maskAlgebra(spec);
    const small = run(neuron(lo, fromScores(scores)), spec);
    const big = run(neuron(hi, fromScores(scores)), spec);
    expect(A.eq.equals(A.meet(small, big), small)).toBe(true);
  });
});

describe('layer and net', () => {
  test.prop([specScores, fc.double({ min: 0, max: 1, noNaN: true })])('net equals the top of the concatenation in spec order, and meets its budget', ([spec, scores], f) => {
    const total = paths(spec).reduce((s, p) => s + leafSize(spec[p]!), 0);
    const n = Math.floor(f * total + 0.5);
    const m = run(net(fraction(f), fromScores(scores)), spec);
    const flat = paths(spec).flatMap((p) => Array.from(scores[p]!));
    const order = ranked([...flat.keys()], Float32Array.from(flat)).slice(0, n);
    const want = new Uint8Array(total);
    for (const i of order) want[i] = 1;
    expect(bitsOf(m).flat()).toEqual(Array.from(want));
  });

  test.prop([specScores, fc.nat()])('layer meets a count budget exactly, split over leaves, each leaf its own top', ([spec, scores], seedN) => {
    const total = paths(spec).reduce((s, p) => s + leafSize(spec[p]!), 0);
    const n = total === 0 ? 0 : seedN % (total + 1);
    const m = run(layer(exactly(n), fromScores(scores)), spec);
    const perLeaf = paths(spec).map((p) => m.bits[p]!.reduce((a, b) => a + b, 0));
    expect(perLeaf.reduce((a, b) => a + b, 0)).toBe(n);
    for (const p of paths(spec)) {
      const s = scores[p]!;
      const bits = m.bits[p]!;
      const want = ranked([...s.keys()], s).slice(0, bits.reduce((a, b) => a + b, 0));
      expect([...bits.keys()].filter((i) => bits[i])).toEqual([...want].sort((a, b) => a - b));
    }
  });
});

// ---- combinators and criteria -----------------------------------------------
describe('combinators and criteria', () => {
  test.prop([specScores, fc.integer({ min: 0, max: 4 }), fc.double({ min: 0, max: 1, noNaN: true })])('refine(outer, inner) ⊆ outer and inner counts only what outer kept', ([spec, scores], k, f) => {
    const A = maskAlgebra(spec);
    const outer = neuron(k, fromScores(scores));
    const o = run(outer, spec);
    const r = run(refine(outer, net(fraction(f), random())), spec);
    expect(A.eq.equals(A.meet(r, o), r)).toBe(true);
    const kept = paths(spec).reduce((s, p) => s + o.bits[p]!.reduce((a, b) => a + b, 0), 0);
    expect(paths(spec).reduce((s, p) => s + r.bits[p]!.reduce((a, b) => a + b, 0), 0)).toBe(Math.floor(f * kept + 0.5));
  });

  test.prop([specArb, fc.integer(), fc.integer({ min: 0, max: 3 })])('the same seed gives the same random mask', (spec, seed, k) => {
    expect(bitsOf(run(neuron(k, random()), spec, seed))).toEqual(bitsOf(run(neuron(k, random()), spec, seed)));
  });

  test.prop([specScores, fc.integer({ min: 0, max: 3 })])('magnitude equals fromScores(|W|)', ([spec, values], k) => {
    const params = tree(paths(spec).map((p) => [p, tf.tensor(values[p]!, [...spec[p]!.shape])]));
    const env = () => selectionEnv({ spec, params });
    const abs = Object.fromEntries(paths(spec).map((p) => [p, values[p]!.map(Math.abs)]));
    expect(bitsOf(select(neuron(k, magnitude()), env()))).toEqual(bitsOf(select(neuron(k, fromScores(abs)), env())));
  });
});

// ---- budgets -------------------------------------------------------------------
describe('budgets', () => {
  test.prop([specScores])('0 selects nothing, everything selects all, beyond is an error', ([spec, scores]) => {
    const total = paths(spec).reduce((s, p) => s + leafSize(spec[p]!), 0);
    const A = maskAlgebra(spec);
    const c = fromScores(scores);
    for (const make of [net, layer]) {
      expect(A.eq.equals(run(make(exactly(0), c), spec), A.zero)).toBe(true);
      expect(A.eq.equals(run(make(fraction(0), c), spec), A.zero)).toBe(true);
      expect(A.eq.equals(run(make(exactly(total), c), spec), A.one)).toBe(true);
      expect(A.eq.equals(run(make(fraction(1), c), spec), A.one)).toBe(true);
      expect(() => run(make(exactly(total + 1), c), spec)).toThrow(BudgetError);
      expect(() => run(make(exactly(-1), c), spec)).toThrow(BudgetError);
      expect(() => run(make(exactly(0.5), c), spec)).toThrow(BudgetError);
      expect(() => run(make(fraction(1.01), c), spec)).toThrow(BudgetError);
      expect(() => run(make(fraction(-0.01), c), spec)).toThrow(BudgetError);
    }
    expect(() => run(neuron(-1, c), spec)).toThrow(BudgetError);
  });
});
