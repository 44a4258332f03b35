// Laws of masked optimisation over random trees, masks, gradients and optimizers.
import { fc, test } from '@fast-check/vitest';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test as plain } from 'vitest';
import { checkLaws, optimizerLaws } from '../src/testing/index.js';
import { paramSpec, paths, tree, type ParamSpec, type Params } from '../src/index.js';
import { maskAlgebra, maskOf } from '../src/selection/index.js';
import { adam, adamw, applyMaskedUpdates, applyUpdates, chain, deviceMask, disposeReplaced, masked, momentum, scaleByAdam, scaleByLearningRate, addDecayedWeights, sgd, warmupCosine, type GradientTransformation, type OptState, type Updates } from '../src/optim/index.js';

const specArb = fc
  .uniqueArray(fc.tuple(fc.constantFrom('a.w', 'b.w', 'c.bias', 'head.kernel'), fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 2 })), { selector: ([p]) => p, minLength: 1, maxLength: 3 })
  .map((es) => paramSpec(es.map(([p, shape]) => [p, { shape, role: 'kernel', neuronAxis: shape.length - 1 }] as const)));
const size = (spec: ParamSpec, p: string) => spec[p]!.shape.reduce((a, b) => a * b, 1);
const valuesFor = (spec: ParamSpec, special: boolean) =>
  fc.record(
    Object.fromEntries(
      paths(spec).map((p) => [
        p,
        // Parameters include −0 (an update of +0 would flip it); gradients NaN and ±Inf as well.
        fc.array(special ? fc.oneof(fc.float({ noNaN: true, min: -3, max: 3 }), fc.constantFrom(Number.NaN, Infinity, -Infinity, -0)) : fc.oneof(fc.float({ noNaN: true, min: -3, max: 3 }), fc.constant(-0)), {
          minLength: size(spec, p),
          maxLength: size(spec, p),
        }),
      ]),
    ),
  ) as fc.Arbitrary<Record<string, number[]>>;
const maskArb = (spec: ParamSpec) =>
  fc.record(Object.fromEntries(paths(spec).map((p) => [p, fc.array(fc.boolean(), { minLength: size(spec, p), maxLength: size(spec, p) })]))).map((b) => maskOf(spec, (_, p) => Uint8Array.from((b as Record<string, boolean[]>)[p]!, Number)));
const optimizers: Record<string, () => GradientTransformation> = {
  sgd: () => sgd(0.1),
  momentum: () => momentum(0.1, 0.9),
  nesterov: () => momentum(0.1, 0.9, true),
  adam: () => adam(0.05),
  adamw: () => adamw(0.05, { weightDecay: 0.1 }),
};
const toTree = (spec: ParamSpec, v: Record<string, number[]>): Params => tree(paths(spec).map((p) => [p, tf.tensor(v[p]!, [...spec[p]!.shape])]));
const bits = (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer));

/** Runs `steps` updates with fresh gradients each step; masks may change per step. */
function run(tx: (step: number) => GradientTransformation, params: Params, grads: (step: number) => Updates, steps: number, apply: (p: Params, u: Updates, step: number) => Params): Params {
  let state: OptState = tf.tidy(() => tx(0).init(params));
  let current = params;
  for (let s = 0; s < steps; s++) {
    const out = tf.tidy(() => {
      const [u, next] = tx(s).update(grads(s), state, current);
      return { p: apply(current, u, s), next };
    });
    disposeReplaced(state, out.next);
    state = out.next;
    current = out.p;
  }
  tf.dispose(state);
  return current;
}

describe('masked optimizers', () => {
  const setup = specArb.chain((spec) =>
    fc.record({
      spec: fc.constant(spec),
      params: valuesFor(spec, false),
      grads: fc.array(valuesFor(spec, true), { minLength: 3, maxLength: 3 }),
      masks: fc.array(maskArb(spec), { minLength: 3, maxLength: 3 }),
      opt: fc.constantFrom(...Object.keys(optimizers)),
      sparse: fc.boolean(),
    }),
  );

  test.prop([setup])('frozen entries stay bit-identical: every optimizer, decay, momentum built up, NaN/Inf at frozen positions, masks changing between steps', ({ spec, params, grads, masks, opt, sparse }) => {
    const p0 = toTree(spec, params);
    // Warm up momentum and moments with finite gradients on everything, then switch to masked steps.
    const inner = optimizers[opt]!();
    const dms = masks.map(deviceMask);
    const warm = toTree(spec, params);
    let state: OptState = tf.tidy(() => inner.init(p0));
    const [, warmed] = tf.tidy(() => inner.update(warm, state, p0));
    disposeReplaced(state, warmed);
    state = warmed;
    let current = p0;
    for (let s = 0; s < 3; s++) {
      const dm = dms[s]!;
      const g = toTree(spec, grads[s]!);
      const before = Object.fromEntries(paths(spec).map((p) => [p, bits(current[p]!)]));
      const tx = masked(inner, dm, { sparseState: false });
      const out = tf.tidy(() => {
        const [u, next] = tx.update(g, state, current);
        return { p: applyMaskedUpdates(current, u, dm), next };
      });
      disposeReplaced(state, out.next);
      state = out.next;
      current = out.p;
      for (const p of paths(spec)) {
        const now = bits(current[p]!);
        masks[s]!.bits[p]!.forEach((m, i) => {
          if (!m) expect(now[i]).toBe(before[p]![i]);
        });
      }
    }
    tf.dispose(state);
    // The sparse-state variant, with one fixed mask.
    if (sparse) {
      const dm = dms[0]!;
      const end = run(() => masked(optimizers[opt]!(), dm, { sparseState: true }), p0, (s) => toTree(spec, grads[s]!), 3, (p, u) => applyMaskedUpdates(p, u, dm));
      for (const p of paths(spec)) {
        const a = bits(end[p]!);
        const b = bits(p0[p]!);
        masks[0]!.bits[p]!.forEach((m, i) => {
          if (!m) expect(a[i]).toBe(b[i]);
        });
      }
    }
    dms.forEach((d) => d.dispose());
  });

  const finite = specArb.chain((spec) => fc.record({ spec: fc.constant(spec), params: valuesFor(spec, false), grads: fc.array(valuesFor(spec, false), { minLength: 4, maxLength: 4 }), mask: maskArb(spec), other: maskArb(spec), opt: fc.constantFrom(...Object.keys(optimizers)), sparse: fc.boolean() }));

  test.prop([finite])('an all-ones mask equals the plain optimizer, bit for bit', ({ spec, params, grads, opt, sparse }) => {
    const p0 = toTree(spec, params);
    const dm = deviceMask(maskAlgebra(spec).one);
    const g = (s: number) => toTree(spec, grads[s]!);
    const a = run(() => masked(optimizers[opt]!(), dm, { sparseState: sparse }), p0, g, 4, (p, u) => applyMaskedUpdates(p, u, dm));
    const b = run(() => optimizers[opt]!(), p0, g, 4, (p, u) => applyUpdates(p, u));
    for (const p of paths(spec)) expect(bits(a[p]!)).toEqual(bits(b[p]!));
    dm.dispose();
  });

  test.prop([finite])('an empty mask leaves parameters and optimizer state unchanged', ({ spec, params, grads, opt, sparse }) => {
    const p0 = toTree(spec, params);
    const dm = deviceMask(maskAlgebra(spec).zero);
    const tx = masked(optimizers[opt]!(), dm, { sparseState: sparse });
    const state = tf.tidy(() => tx.init(p0));
    const snapshot = JSON.stringify(state, (_, v) => (v instanceof tf.Tensor ? Array.from(v.dataSync()) : v));
    const [u, next] = tx.update(toTree(spec, grads[0]!), state, p0);
    expect(next).toBe(state);
    expect(JSON.stringify(next, (_, v) => (v instanceof tf.Tensor ? Array.from(v.dataSync()) : v))).toBe(snapshot);
    const end = applyMaskedUpdates(p0, u, dm);
    for (const p of paths(spec)) expect(bits(end[p]!)).toEqual(bits(p0[p]!));
    dm.dispose();
  });

  test.prop([finite])('masking twice equals masking with the intersection', ({ spec, params, grads, mask, other, opt }) => {
    const p0 = toTree(spec, params);
    const [da, db, dab] = [mask, other, maskAlgebra(spec).meet(mask, other)].map(deviceMask) as [ReturnType<typeof deviceMask>, ReturnType<typeof deviceMask>, ReturnType<typeof deviceMask>];
    const g = (s: number) => toTree(spec, grads[s]!);
    // The law is about the updates, so both are applied through the intersection.
    const nested = run(() => masked(masked(optimizers[opt]!(), da), db), p0, g, 4, (p, u) => applyMaskedUpdates(p, u, dab));
    const once = run(() => masked(optimizers[opt]!(), dab), p0, g, 4, (p, u) => applyMaskedUpdates(p, u, dab));
    for (const p of paths(spec)) expect(bits(nested[p]!)).toEqual(bits(once[p]!));
    [da, db, dab].forEach((d) => d.dispose());
  });

  test.prop([finite])('chain equals applying the transformations one after another', ({ spec, params, grads }) => {
    const p0 = toTree(spec, params);
    const parts = () => [scaleByAdam(), addDecayedWeights(0.1), scaleByLearningRate(0.05)] as GradientTransformation[];
    const g = (s: number) => toTree(spec, grads[s]!);
    const chained = run(() => chain(...parts()), p0, g, 4, (p, u) => applyUpdates(p, u));
    // By hand: three states, threaded through in order.
    const ts = parts();
    let states: OptState[] = ts.map((t) => tf.tidy(() => t.init(p0)));
    let current = p0;
    for (let s = 0; s < 4; s++) {
      const out = tf.tidy(() => {
        let u = g(s);
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
    for (const p of paths(spec)) expect(bits(current[p]!)).toEqual(bits(chained[p]!));
  });

  test.prop([finite])('state does not depend on the order the leaves come in', ({ spec, params, grads, opt }) => {
    const p0 = toTree(spec, params);
    const reversed = Object.fromEntries(paths(spec).reverse().map((p) => [p, p0[p]!])) as Params;
    const g = (s: number) => toTree(spec, grads[s]!);
    const gr = (s: number) => Object.fromEntries(paths(spec).reverse().map((p) => [p, g(s)[p]!])) as Updates;
    const a = run(() => optimizers[opt]!(), p0, g, 4, (p, u) => applyUpdates(p, u));
    const b = run(() => optimizers[opt]!(), reversed, gr, 4, (p, u) => applyUpdates(p, u));
    for (const p of paths(spec)) expect(bits(a[p]!)).toEqual(bits(b[p]!));
  });
});

describe('optimizer laws, through the testing kit', () => {
  plain.each(Object.keys(optimizers))('%s (dense and sparse state)', (name) => {
    checkLaws(optimizerLaws(optimizers[name]!));
    checkLaws(optimizerLaws(optimizers[name]!, { sparseState: true }));
  });
});

describe('schedules', () => {
  test.prop([fc.double({ min: 0, max: 1e-3, noNaN: true }), fc.double({ min: 1e-3, max: 1, noNaN: true }), fc.double({ min: 0, max: 1e-4, noNaN: true }), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 500 })])(
    'warmupCosine: init at 0, peak at the end of warm-up, end at the last step',
    (init, peak, end, warm, decay) => {
      const s = warmupCosine({ init, peak, warmupSteps: warm, totalSteps: warm + decay, end });
      expect(s(0)).toBeCloseTo(init, 12);
      expect(s(warm)).toBeCloseTo(peak, 12);
      expect(s(warm + decay)).toBeCloseTo(end, 12);
      expect(s(warm + decay + 10)).toBeCloseTo(end, 12);
      for (let t = 0; t < warm + decay; t++) expect(s(t)).toBeLessThanOrEqual(peak + 1e-15);
    },
  );
});

