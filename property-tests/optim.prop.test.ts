// Laws of masked optimisation over random trees, masks, gradients and
// optimizers, drawn with the testing kit's arbitraries and run by its
// checkLaws (the seed is printed by vitest.config.ts; FC_SEED replays it).
import { fc } from '@fast-check/vitest';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import { checkLaws, maskFor, optimizerLaws, runSteps, scoresFor, specArb, toParams, valuesFor, type Laws } from '../src/testing/index.js';
import { paths, type ParamSpec, type Params } from '../src/index.js';
import { maskAlgebra } from '../src/selection/index.js';
import { adafactor, adam, adamw, addDecayedWeights, applyIfFinite, applySelectedUpdates, applyUpdates, chain, disposeReplaced, freeze, lion, masked, momentum, multiSteps, rmsprop, scaleByAdam, scaleByLearningRate, sgd, sparseState, trainOnly, warmupCosine, type GradientTransformation, type OptState, type SparseState, type Updates } from '../src/optim/index.js';

const optimizers: Record<string, () => GradientTransformation> = {
  sgd: () => sgd(0.1),
  momentum: () => momentum(0.1, 0.9),
  nesterov: () => momentum(0.1, 0.9, true),
  adam: () => adam(0.05),
  adamw: () => adamw(0.05, { weightDecay: 0.1 }),
  rmsprop: () => rmsprop(0.05, { centered: true, momentum: 0.5 }),
  lion: () => lion(0.05, { weightDecay: 0.1 }),
  adafactor: () => adafactor(0.05, { minDimSizeToFactor: 2, weightDecayRate: 0.1 }),
  multiSteps: () => multiSteps(adam(0.05), 2),
  applyIfFinite: () => applyIfFinite(adam(0.05), 1),
};
/** Element-wise optimizers: sparse state must equal dense state on them exactly. */
const elementwise = ['sgd', 'momentum', 'nesterov', 'adam', 'adamw', 'rmsprop', 'lion', 'multiSteps'];

const bits = (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer));
const specs = specArb({ maxLeaves: 3, maxRank: 2, minDim: 1, maxDim: 3 });
/** Parameters with −0 in them (an update of +0 would turn it into +0). */
const withNegZero = (spec: ParamSpec) => valuesFor(spec, { ties: false }).map((v) => Object.fromEntries(Object.entries(v).map(([p, xs]) => [p, xs.map((x, i) => (i % 4 === 3 ? -0 : x))])));

/** Runs `tx` over the gradient trees, applying its updates with plain applyUpdates; returns the parameters. */
const run = (tx: GradientTransformation, spec: ParamSpec, params: Params, grads: readonly Updates[]): Params => runSteps(tx, params, grads, { spec });

const setup = (nonFinite: boolean) =>
  specs.chain((spec) =>
    fc.record({
      spec: fc.constant(spec),
      params: withNegZero(spec),
      grads: fc.array(scoresFor(spec, { nonFinite }), { minLength: 3, maxLength: 3 }),
      mask: maskFor(spec),
      other: maskFor(spec),
      opt: fc.constantFrom(...Object.keys(optimizers)),
      sparse: fc.boolean(),
    }),
  );

/** Whether `a` equals `b` bit for bit wherever `where(p, i)` holds. */
/**
 * Same bits at the entries `where` picks, a NaN matching any NaN: WebAssembly
 * leaves a NaN result's sign and payload unspecified, so two kernels that
 * both produce NaN (an add on XNNPACK's vector path and on a scalar one)
 * may give different NaN bits.
 */
const sameBits = (spec: ParamSpec, a: Params, b: Params, where: (p: string, i: number) => boolean) =>
  paths(spec).every((p) => {
    const [x, y] = [bits(a[p]!), bits(b[p]!)];
    const isNaN = (v: number) => (v & 0x7f800000) === 0x7f800000 && (v & 0x007fffff) !== 0;
    return x.every((v, i) => !where(p, i) || v === y[i] || (isNaN(v) && isNaN(y[i]!)));
  });

const laws: Laws = {
  'trainOnly: frozen entries stay bit-identical under every optimizer, NaN/Inf gradients and −0 parameters, dense and sparse state': fc.property(setup(true), ({ spec, params, grads, mask, opt, sparse }) => {
    const p0 = toParams(spec, params);
    const end = run(trainOnly(optimizers[opt]!(), mask, { sparseState: sparse }), spec, p0, grads.map((g) => toParams(spec, g)));
    return sameBits(spec, end, p0, (p, i) => mask.bits[p]![i] === 0);
  }),
  'sparse state equals dense state on the selected entries (element-wise optimizers), bit for bit': fc.property(setup(false), ({ spec, params, grads, mask, opt }) => {
    const name = elementwise.includes(opt) ? opt : 'adam';
    const p0 = toParams(spec, params);
    const g = grads.map((x) => toParams(spec, x));
    const a = run(trainOnly(optimizers[name]!(), mask, { sparseState: true }), spec, p0, g);
    const b = run(trainOnly(optimizers[name]!(), mask, { sparseState: false }), spec, p0, g);
    const c = run(chain(sparseState(optimizers[name]!(), mask), freeze(maskAlgebra(spec).not(mask))), spec, p0, g);
    return sameBits(spec, a, b, () => true) && sameBits(spec, a, c, () => true);
  }),
  'trainOnly fed the selected values of partly selected leaves, applied with applySelectedUpdates, equals the dense path bit for bit (frozen entries untouched)': fc.property(setup(true), ({ spec, params, grads, mask, opt }) => {
    const name = elementwise.includes(opt) ? opt : 'adamw';
    const p0 = toParams(spec, params);
    const g = grads.map((x) => toParams(spec, x));
    const dense = run(trainOnly(optimizers[name]!(), mask, { sparseState: true }), spec, p0, g);
    // The same run with each partly selected leaf's gradient given as its selected values ([n], flat index order).
    const tx = trainOnly(optimizers[name]!(), mask, { sparseState: true });
    let state = tf.tidy(() => tx.init(p0, spec)) as unknown as SparseState;
    let current = p0;
    for (const gs of g) {
      const out = tf.tidy(() => {
        const vs = Object.fromEntries(
          paths(spec).map((p) => {
            const b = mask.bits[p]!;
            const n = b.reduce((a, x) => a + x, 0);
            if (n === 0 || n === b.length) return [p, gs[p]!];
            const flat = gs[p]!.dataSync();
            return [p, tf.tensor1d(Array.from(b.keys()).filter((i) => b[i]).map((i) => flat[i]!))];
          }),
        );
        const [u, next] = tx.update(vs, state as unknown as OptState as never, current);
        return { p: applySelectedUpdates(current, u, next as unknown as SparseState), next };
      });
      disposeReplaced(state, out.next);
      state = out.next as unknown as SparseState;
      current = out.p;
    }
    tf.dispose(state);
    return sameBits(spec, current, dense, () => true) && sameBits(spec, current, p0, (p, i) => mask.bits[p]![i] === 0);
  }),
  'masked (optax): inner where the mask is true, the incoming updates elsewhere': fc.property(setup(true), ({ spec, params, grads, mask, opt }) => {
    const p0 = toParams(spec, params);
    const g = toParams(spec, grads[0]!);
    const tx = masked(optimizers[opt]!(), mask);
    const [u] = tx.update(g, tx.init(p0, spec), p0);
    // Outside: the gradient itself. Inside: what the inner gives on the gradient zeroed outside.
    const inner = optimizers[opt]!();
    const sel = paths(spec).filter((p) => mask.bits[p]!.some((b) => b === 1));
    const gz = Object.fromEntries(sel.map((p) => [p, tf.where(tf.tensor(mask.bits[p]!, g[p]!.shape, 'bool'), g[p]!, tf.zerosLike(g[p]!))]));
    const v: Updates = sel.length ? inner.update(gz, inner.init(Object.fromEntries(sel.map((p) => [p, p0[p]!]))), Object.fromEntries(sel.map((p) => [p, p0[p]!])))[0] : {};
    return paths(spec).every((p) => {
      const [got, pass] = [bits(u[p]!), bits(g[p]!)];
      const want = v[p] ? bits(v[p]!) : pass;
      return got.every((x, i) => x === (mask.bits[p]![i] ? want[i] : pass[i]));
    });
  }),
  'freeze (optax): zero where the mask is true, applying it moves nothing there; the rest pass through': fc.property(setup(true), ({ spec, params, grads, mask }) => {
    const p0 = toParams(spec, params);
    const g = toParams(spec, grads[0]!);
    const tx = freeze(mask);
    const [u] = tx.update(g, tx.init(p0, spec), p0);
    const after = applyUpdates(p0, u);
    return sameBits(spec, after, p0, (p, i) => mask.bits[p]![i] === 1) && sameBits(spec, u, g, (p, i) => mask.bits[p]![i] === 0);
  }),
  'an all-ones mask is the plain optimizer, bit for bit': fc.property(setup(false), ({ spec, params, grads, opt, sparse }) => {
    const p0 = toParams(spec, params);
    const g = grads.map((x) => toParams(spec, x));
    const a = run(trainOnly(optimizers[opt]!(), maskAlgebra(spec).one, { sparseState: sparse }), spec, p0, g);
    return sameBits(spec, a, run(optimizers[opt]!(), spec, p0, g), () => true);
  }),
  'an empty mask moves nothing and keeps the inner state as it was': fc.property(setup(true), ({ spec, params, grads, opt, sparse }) => {
    const p0 = toParams(spec, params);
    const tx = trainOnly(optimizers[opt]!(), maskAlgebra(spec).zero, { sparseState: sparse });
    const state = tf.tidy(() => tx.init(p0, spec));
    const [u, next] = tx.update(toParams(spec, grads[0]!), state, p0);
    const ok = next.inner === state.inner && sameBits(spec, applyUpdates(p0, u), p0, () => true);
    tf.dispose(state);
    return ok;
  }),
  'trainOnly twice equals trainOnly with the intersection': fc.property(setup(false), ({ spec, params, grads, mask, other, opt }) => {
    const p0 = toParams(spec, params);
    const g = grads.map((x) => toParams(spec, x));
    const nested = run(trainOnly(trainOnly(optimizers[opt]!(), mask, { sparseState: false }), other, { sparseState: false }), spec, p0, g);
    const once = run(trainOnly(optimizers[opt]!(), maskAlgebra(spec).meet(mask, other), { sparseState: false }), spec, p0, g);
    return sameBits(spec, nested, once, () => true);
  }),
  'chain equals applying the transformations one after another': fc.property(setup(false), ({ spec, params, grads }) => {
    const p0 = toParams(spec, params);
    const g = grads.map((x) => toParams(spec, x));
    const parts = () => [scaleByAdam(), addDecayedWeights(0.1), scaleByLearningRate(0.05)] as GradientTransformation[];
    const chained = run(chain(...parts()), spec, p0, g);
    let current = p0;
    const ts = parts();
    let states: OptState[] = ts.map((t) => tf.tidy(() => t.init(p0)));
    for (const gs of g) {
      const out = tf.tidy(() => {
        let u: Updates = gs;
        const next = ts.map((t, i) => {
          const [v, st] = t.update(u, states[i]!, current);
          u = v;
          return st;
        });
        return { p: applyUpdates(current, u), next };
      });
      states.forEach((st, i) => disposeReplaced(st, out.next[i]!));
      states = out.next;
      current = out.p;
    }
    return sameBits(spec, current, chained, () => true);
  }),
};

describe('masked optimisation', () => {
  test.each(Object.keys(laws))('%s', (name) => {
    // tidy-free bookkeeping above leaves the arbitraries' tensors to the engine; scope each law.
    tf.engine().startScope();
    try {
      checkLaws({ [name]: laws[name]! }, { numRuns: 40 });
    } finally {
      tf.engine().endScope();
    }
  });
});

describe('optimizer laws, through the testing kit', () => {
  test.each(Object.keys(optimizers))('%s (with trainOnly, dense and sparse state)', (name) => {
    for (const sparse of [false, true]) checkLaws(optimizerLaws(optimizers[name]!, { sparseState: sparse }), { numRuns: 25 });
  });
});

describe('schedules', () => {
  test('warmupCosine: init at 0, peak at the end of warm-up, end at the last step', () => {
    checkLaws({
      warmupCosine: fc.property(fc.double({ min: 0, max: 1e-3, noNaN: true }), fc.double({ min: 1e-3, max: 1, noNaN: true }), fc.double({ min: 0, max: 1e-4, noNaN: true }), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 500 }), (init, peak, end, warm, decay) => {
        const s = warmupCosine({ init, peak, warmupSteps: warm, totalSteps: warm + decay, end });
        const near = (a: number, b: number) => Math.abs(a - b) < 1e-12;
        let ok = near(s(0), init) && near(s(warm), peak) && near(s(warm + decay), end) && near(s(warm + decay + 10), end);
        for (let t = 0; t < warm + decay; t++) ok &&= s(t) <= peak + 1e-15;
        return ok;
      }),
    });
    expect(true).toBe(true);
  });
});
