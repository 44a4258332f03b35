// Laws of re-selection during training, over random selectors, seeds, intervals and
// optimizers (fineTune's reselect), and over random trees and masks (carryState), run
// by the testing kit's checkLaws (the seed is printed; FC_SEED replays it).
import { fc } from '@fast-check/vitest';
import * as tf from '@tensorflow/tfjs-core';
import { describe, test } from 'vitest';
import { checkLaws, maskFor, scoresFor, seedArb, specArb, toParams, valuesFor, type Laws } from '../src/testing/index.js';
import { paths, rng, type ParamSpec, type Params } from '../src/index.js';
import { dataSet } from '../src/data/index.js';
import { mlp } from '../src/models/index.js';
import { byRole, countOnes, exactly, except, fraction, layer, net, neuron, only, random, select, selectionEnv, type Mask, type Selector } from '../src/selection/index.js';
import { adam, adamw, applyUpdates, carryState, disposeReplaced, fineTune, lion, momentum, rmsprop, sgd, trainOnly, type GradientTransformation, type MaskedState, type Updates } from '../src/optim/index.js';

const model = mlp({ input: [3, 3, 1], hidden: [5], classes: 3 });
const base = model.init(0);
const g = rng(7);
const train = dataSet({ images: Float32Array.from({ length: 24 * 9 }, () => g.normal()), labels: Array.from({ length: 24 }, (_, i) => i % 3), shape: [3, 3, 1], classes: 3 });
const total = (m: Mask) => paths(m.spec).reduce((n, p) => n + countOnes(m.bits[p]!), 0);
const bitsOf = (p: Params) => Object.fromEntries(paths(p).map((k) => [k, new Uint32Array(Float32Array.from(p[k]!.dataSync()).buffer)]));

const optimizers: Record<string, () => GradientTransformation> = {
  sgd: () => sgd(0.1),
  momentum: () => momentum(0.1, 0.9),
  adam: () => adam(0.05),
  adamw: () => adamw(0.05, { weightDecay: 0.1 }),
  rmsprop: () => rmsprop(0.05, { centered: true, momentum: 0.5 }),
  lion: () => lion(0.05, { weightDecay: 0.1 }),
};

/** Selectors of a fixed count, each re-run with a new seed; `turns` moves whole leaves in and out. */
const selectors: Record<string, (k: number) => Selector> = {
  neuron: (k) => neuron(k, random()),
  net: (k) => net(exactly(4 * k), random()),
  layer: () => layer(fraction(0.1), random()),
  kernels: (k) => only(byRole('kernel'), neuron(k, random())),
  turns: (k) => {
    let calls = 0;
    return (ctx) => (calls++ % 2 === 0 ? only(byRole('head'), net(exactly(2 * k), random())) : except(byRole('head'), net(exactly(2 * k), random())))(ctx);
  },
};

const laws: Laws = {
  'fineTune reselect: every mask holds the first mask\'s count; no entry outside the mask in force moves in a step, bit for bit; entries never selected stay the base\'s': fc.property(
    fc.record({
      kind: fc.constantFrom(...Object.keys(selectors)),
      k: fc.integer({ min: 1, max: 3 }),
      every: fc.integer({ min: 1, max: 4 }),
      seed: seedArb,
      opt: fc.constantFrom(...Object.keys(optimizers)),
      sparseState: fc.boolean(),
    }),
    ({ kind, k, every, seed, opt, sparseState }) => {
      const selector = selectors[kind]!(k);
      const first = select(selector, selectionEnv({ model, params: base, seed }));
      // The parameters every training step starts from, as bit copies.
      const seen: Record<string, Uint32Array>[] = [];
      const rec = { ...model, apply: ((p: Params, x: tf.Tensor, o?: object) => (seen.push(bitsOf(p)), (model.apply as (...a: unknown[]) => unknown)(p, x, o))) as typeof model.apply };
      const events: { step: number; mask: Mask }[] = [];
      const r = fineTune({ model: rec, params: base, mask: first, train, epochs: 2, batchSize: 8, seed, optimizer: optimizers[opt]!(), sparseState, progressBar: false, cacheFeatures: false, reselect: { every, selector }, onStep: (s) => s.reselection && events.push(s.reselection) });
      let ok = events.length === Math.ceil(6 / every) - 1 && events.every((e) => total(e.mask) === total(first));
      // (Feature caching is off: a cached step runs the head alone, which the recording cannot see.)
      ok &&= seen.length === 6;
      const snaps = [...seen, bitsOf(r.params)];
      for (let s = 0; s < seen.length && ok; s++) {
        const m = [...events].reverse().find((e) => e.step <= s)?.mask ?? first;
        for (const p of paths(m.spec)) ok &&= snaps[s]![p]!.every((v, i) => m.bits[p]![i] === 1 || v === snaps[s + 1]![p]![i]);
      }
      const start = bitsOf(base);
      for (const p of paths(model.spec)) ok &&= snaps.at(-1)![p]!.every((v, i) => r.mask.bits[p]![i] === 1 || v === start[p]![i]);
      tf.dispose(paths(r.params).filter((p) => r.params[p] !== base[p]).map((p) => r.params[p]!));
      return ok;
    },
  ),
};

/** Runs `tx` from `state` over the gradients; returns the parameters and the final state. */
function run(tx: GradientTransformation<MaskedState>, state: MaskedState, params: Params, grads: readonly Updates[]): { params: Params; state: MaskedState } {
  let current = params;
  for (const gs of grads) {
    const out = tf.tidy(() => {
      const [u, next] = tx.update(gs, state, current);
      return { p: applyUpdates(current, u), next };
    });
    disposeReplaced(state, out.next);
    state = out.next;
    current = out.p;
  }
  return { params: current, state };
}

const specs = specArb({ maxLeaves: 3, maxRank: 2, minDim: 1, maxDim: 3 });
const setup = specs.chain((spec: ParamSpec) =>
  fc.record({
    spec: fc.constant(spec),
    params: valuesFor(spec, { ties: false }),
    before: fc.array(scoresFor(spec), { minLength: 2, maxLength: 2 }),
    after: fc.array(scoresFor(spec, { nonFinite: true }), { minLength: 2, maxLength: 2 }),
    from: maskFor(spec),
    to: maskFor(spec),
    opt: fc.constantFrom(...Object.keys(optimizers)),
    sparseState: fc.boolean(),
  }),
);

const carryLaws: Laws = {
  'carryState to the same mask changes nothing: the run goes on bit for bit as without it': fc.property(setup, ({ spec, params, before, after, from, opt, sparseState }) => {
    const p0 = toParams(spec, params);
    const tx = trainOnly(optimizers[opt]!(), from, { sparseState });
    const mid = run(tx, tf.tidy(() => tx.init(p0, spec)), p0, before.map((x) => toParams(spec, x)));
    const ga = after.map((x) => toParams(spec, x));
    // The same state twice: one goes on as it is, the other through carryState.
    const copy = cloneTree(mid.state) as MaskedState;
    const plain = run(tx, mid.state, mid.params, ga);
    const carried = carryState({ inner: optimizers[opt]!(), state: copy, from, to: from, params: mid.params, spec });
    const through = run(carried.optimizer, carried.state, mid.params, ga);
    const [a, b] = [bitsOf(plain.params), bitsOf(through.params)];
    return paths(spec).every((p) => a[p]!.every((v, i) => v === b[p]![i]));
  }),
  'after carryState to any mask, entries outside it stay bit-identical, NaN and Inf gradients included': fc.property(setup, ({ spec, params, before, after, from, to, opt, sparseState }) => {
    const p0 = toParams(spec, params);
    const tx = trainOnly(optimizers[opt]!(), from, { sparseState });
    const mid = run(tx, tf.tidy(() => tx.init(p0, spec)), p0, before.map((x) => toParams(spec, x)));
    const carried = carryState({ inner: optimizers[opt]!(), state: mid.state, from, to, params: mid.params, spec });
    const end = run(carried.optimizer, carried.state, mid.params, after.map((x) => toParams(spec, x)));
    const [a, b] = [bitsOf(mid.params), bitsOf(end.params)];
    return paths(spec).every((p) => a[p]!.every((v, i) => to.bits[p]![i] === 1 || v === b[p]![i]));
  }),
};

/** A copy of a state tree: new tensors, the same numbers and strings. */
function cloneTree(c: unknown): unknown {
  if (c instanceof tf.Tensor) return tf.clone(c);
  if (Array.isArray(c)) return c.map(cloneTree);
  if (c !== null && typeof c === 'object') return Object.assign({ ...(c as object) }, Object.fromEntries(Object.entries(c).map(([k, v]) => [k, cloneTree(v)])));
  return c;
}

describe('re-selection during training', () => {
  test.each(Object.keys(laws))('%s', (name) => checkLaws({ [name]: laws[name]! }, { numRuns: 12 }));
  test.each(Object.keys(carryLaws))('%s', (name) => {
    // The arbitraries' tensors and the runs' are left to the engine; scope each law.
    tf.engine().startScope();
    try {
      checkLaws({ [name]: carryLaws[name]! }, { numRuns: 40 });
    } finally {
      tf.engine().endScope();
    }
  });
});
