import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { ConfigError, MaskError, paths, SpecError, tree, type Params } from '../src/index.js';
import { runSteps, scoresFor, specArb, toParams } from '../src/testing/index.js';
import { subset } from '../src/data/index.js';
import { buildTask } from '../src/node/index.js';
import { cnn, vit } from '../src/models/index.js';
import { gps, maskAlgebra, maskOf, countMask } from '../src/selection/index.js';
import { byRole } from '../src/selection/index.js';
import { adafactor, adam, adamw, addDecayedWeights, applyIfFinite, applyUpdates, chain, clipByGlobalNorm, constant, cosineDecay, evaluate, exponentialDecay, fineTune, FLAT, flatten, freeze, injectHyperparams, joinSchedules, linearSchedule, linearWarmup, lion, masked, momentum, multiSteps, partition, rmsprop, scaleByAdam, scaleByLearningRate, sgd, sparseState, trainOnly, trainStep, type GradientTransformation, type OptState } from '../src/optim/index.js';
import { batches } from '../src/data/index.js';
import { NonFiniteError, useStockGradients } from '../src/index.js';
import { describeOnBackends } from './gradcheck.js';

const vals = (t: tf.Tensor) => Array.from(t.dataSync());

/** Steps a transformation on one leaf with a fixed gradient sequence. */
function steps(tx: GradientTransformation, p0: number[], grads: number[][], shape?: number[]): number[] {
  let params: Params = tree([['w', tf.tensor(p0, shape)]]);
  let state: OptState = tx.init(params);
  for (const g of grads) {
    const [u, s] = tx.update({ w: tf.tensor(g, shape) }, state, params);
    params = applyUpdates(params, u);
    state = s;
  }
  return vals(params['w']!);
}
/** Total elements of the tensors in a state. */
const sizes = (c: unknown): number => (c instanceof tf.Tensor ? c.size : c && typeof c === 'object' ? Object.values(c).reduce((s: number, x) => s + sizes(x), 0) : 0);

describe('transformations against hand-written references', () => {
  const p0 = [0.5, -1, 2];
  const grads = [[0.1, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.1, 0.2]];
  test('adam', () => {
    const [b1, b2, eps, lr] = [0.9, 0.999, 1e-8, 0.01];
    const p = [...p0];
    const m = [0, 0, 0];
    const v = [0, 0, 0];
    grads.forEach((g, t) => {
      for (let i = 0; i < 3; i++) {
        m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
        v[i] = b2 * v[i]! + (1 - b2) * g[i]! ** 2;
        const mh = m[i]! / (1 - b1 ** (t + 1));
        const vh = v[i]! / (1 - b2 ** (t + 1));
        p[i] = p[i]! - (lr * mh) / (Math.sqrt(vh) + eps);
      }
    });
    steps(adam(lr), p0, grads).forEach((x, i) => expect(x).toBeCloseTo(p[i]!, 6));
  });
  test('momentum, plain and Nesterov', () => {
    for (const nesterov of [false, true]) {
      const p = [...p0];
      const tr = [0, 0, 0];
      grads.forEach((g) => {
        for (let i = 0; i < 3; i++) {
          tr[i] = g[i]! + 0.9 * tr[i]!;
          p[i] = p[i]! - 0.1 * (nesterov ? g[i]! + 0.9 * tr[i]! : tr[i]!);
        }
      });
      steps(momentum(0.1, 0.9, nesterov), p0, grads).forEach((x, i) => expect(x).toBeCloseTo(p[i]!, 6));
    }
    steps(sgd(0.1), p0, grads.slice(0, 1)).forEach((x, i) => expect(x).toBeCloseTo(p0[i]! - 0.1 * grads[0]![i]!, 6));
  });
  test('clipByGlobalNorm scales only when the norm is too large', () => {
    const [u] = clipByGlobalNorm(1).update({ a: tf.tensor([3, 4]), b: tf.tensor([0]) }, {}, {});
    expect(vals(u['a']!).map((x) => +x.toFixed(5))).toEqual([0.6, 0.8]);
    const [w] = clipByGlobalNorm(10).update({ a: tf.tensor([3, 4]) }, {}, {});
    expect(vals(w['a']!)).toEqual([3, 4]);
  });
  test('partition applies a transformation per label and names a missing one', () => {
    const tx = partition((p) => (p.startsWith('head') ? 'head' : 'body'), { head: sgd(1), body: sgd(0.1) });
    const params = tree([['head.w', tf.tensor([1])], ['body.w', tf.tensor([1])]]);
    const [u] = tx.update({ 'head.w': tf.tensor([1]), 'body.w': tf.tensor([1]) }, tx.init(params), params);
    expect([vals(u['head.w']!)[0], vals(u['body.w']!)[0]]).toEqual([-1, expect.closeTo(-0.1, 6)]);
    expect(() => partition(() => 'x', { y: sgd(1) }).init(params)).toThrow("partition: leaf 'body.w' has label 'x', which has no transformation (labels: y)");
  });
  test('schedules', () => {
    expect(constant(3)(100)).toBe(3);
    expect(linearWarmup(0, 1, 10)(5)).toBe(0.5);
    expect(linearWarmup(0, 1, 10)(20)).toBe(1);
    expect(cosineDecay(1, 10)(5)).toBeCloseTo(0.5);
    expect(cosineDecay(1, 10, 0.1)(10)).toBe(0.1);
  });
  test('sparse state holds the selected entries only', () => {
    const spec = tree([['w', { shape: [10, 10], dtype: 'float32' as const, role: 'kernel' as const, neuronAxis: 1 }]]);
    const bits = new Uint8Array(100);
    bits[3] = bits[42] = 1;
    const mask = maskOf(spec, () => bits);
    const w = tree([['w', tf.zeros([10, 10])]]);
    const state = sparseState(adam(0.1), mask).init(w);
    // Moments of two entries, plus the two selected indices the wrapper keeps.
    expect(sizes(state.inner)).toBe(2 * 2);
    expect(sizes(state)).toBe(2 * 2 + 2);
    expect(sizes(trainOnly(adam(0.1), mask, { sparseState: false }).init(w).inner)).toBe(2 * 100);
    tf.dispose(state);
  });
});

describe('the catalogue against hand-written loops and optax\'s update rules', () => {
  const p0 = [0.5, -1, 2, 0.25];
  const grads = [[0.1, -0.2, 0.3, 0], [0.05, 0.4, -0.1, 1], [-0.3, 0.1, 0.2, -0.5], [0.2, 0.2, -0.2, 0.1]];
  const close = (got: number[], want: number[], digits = 6) => got.forEach((x, i) => expect(x).toBeCloseTo(want[i]!, digits));

  test('rmsprop: ε inside the root (optax default), outside, centered, with momentum', () => {
    const lr = 0.01;
    for (const o of [{}, { epsInSqrt: false }, { centered: true }, { centered: true, momentum: 0.9, eps: 1e-3 }, { biasCorrection: true, decay: 0.5 }] as const) {
      const decay = 'decay' in o ? o.decay : 0.9;
      const eps = 'eps' in o ? o.eps : 1e-8;
      const p = [...p0];
      const nu = [0, 0, 0, 0];
      const mu = [0, 0, 0, 0];
      const tr = [0, 0, 0, 0];
      grads.forEach((g, t) => {
        for (let i = 0; i < 4; i++) {
          nu[i] = decay * nu[i]! + (1 - decay) * g[i]! ** 2;
          mu[i] = decay * mu[i]! + (1 - decay) * g[i]!;
          const c = 'biasCorrection' in o ? 1 - decay ** (t + 1) : 1;
          const v = nu[i]! / c - ('centered' in o ? (mu[i]! / c) ** 2 : 0);
          // optax: g · rsqrt(v + ε) by default, g / (√v + ε) with eps_in_sqrt=False.
          let u = 'epsInSqrt' in o ? g[i]! / (Math.sqrt(v) + eps) : g[i]! / Math.sqrt(v + eps);
          if ('momentum' in o) u = tr[i] = u + o.momentum * tr[i]!;
          p[i] = p[i]! - lr * u;
        }
      });
      close(steps(rmsprop(lr, o), p0, grads), p, 4);
    }
  });

  test('lion: sign(b1·m + (1−b1)·g), then m ← b2·m + (1−b2)·g, decoupled decay (optax defaults 0.9, 0.99, 1e-3)', () => {
    const lr = 0.01;
    const wd = 1e-3;
    const p = [...p0];
    const m = [0, 0, 0, 0];
    for (const g of grads) {
      for (let i = 0; i < 4; i++) {
        const u = Math.sign(0.9 * m[i]! + 0.1 * g[i]!);
        m[i] = 0.99 * m[i]! + 0.01 * g[i]!;
        p[i] = p[i]! - lr * (u + wd * p[i]!);
      }
    }
    close(steps(lion(lr), p0, grads), p);
  });

  test('adafactor: factored row/column second moments, block-RMS clipping and parameter scale, as optax', () => {
    // A [3, 4] leaf, factored because both dims reach minDimSizeToFactor = 3.
    const [R, C] = [3, 4];
    const P = Array.from({ length: R * C }, (_, i) => Math.sin(i + 1));
    const G = [0, 1, 2].map((s) => Array.from({ length: R * C }, (_, i) => Math.cos(3 * i + s) * (s + 1)));
    const lr = 0.1;
    const p = [...P];
    // optax's _factored_dims: d1 = second-largest dim (rows, 0), d0 = largest (columns, 1).
    let vRow = new Array(R).fill(0); // mean over d0 (columns): one per row
    let vCol = new Array(C).fill(0); // mean over d1 (rows): one per column
    G.forEach((g, t) => {
      const beta = 1 - (t + 1) ** -0.8;
      const sq = g.map((x) => x * x + 1e-30);
      vRow = vRow.map((v, r) => beta * v + (1 - beta) * sq.slice(r * C, r * C + C).reduce((a, b) => a + b, 0) / C);
      vCol = vCol.map((v, c) => beta * v + (1 - beta) * [0, 1, 2].reduce((a, r) => a + sq[r * C + c]!, 0) / R);
      const rowMean = vRow.reduce((a, b) => a + b, 0) / R;
      let u = g.map((x, i) => x * (vRow[Math.floor(i / C)]! / rowMean) ** -0.5 * vCol[i % C]! ** -0.5);
      const rms = Math.sqrt(u.reduce((a, x) => a + x * x, 0) / u.length);
      u = u.map((x) => x / Math.max(1, rms / 1));
      const prms = Math.max(Math.sqrt(p.reduce((a, x) => a + x * x, 0) / p.length), 1e-3);
      for (let i = 0; i < p.length; i++) p[i] = p[i]! - lr * u[i]! * prms;
    });
    close(steps(adafactor(lr, { minDimSizeToFactor: 3 }), P, G, [R, C]), p, 5);
  });

  test('adafactor keeps a row and a column where Adam keeps two matrices (state size in numbers)', () => {
    const w = tree([['w', tf.zeros([256, 128])], ['b', tf.zeros([128])]]);
    const a = adam(1e-3).init(w);
    const f = adafactor(1e-3).init(w);
    // Adam: m and v for 256·128 + 128 entries. Adafactor: 256 + 128 for the matrix, the bias whole.
    expect(sizes(a)).toBe(2 * (256 * 128 + 128));
    expect(sizes(f)).toBe(256 + 128 + 128);
    expect(sizes(f) / sizes(a)).toBeLessThan(0.01);
    tf.dispose([a, f] as unknown as tf.Tensor[]);
  });

  test('multiSteps: the inner optimizer on the mean of every k gradients, zero updates between, as optax MultiSteps', () => {
    const k = 2;
    const got = steps(multiSteps(adam(0.01), k), p0, grads);
    const means = [0, 1].map((j) => grads[2 * j]!.map((x, i) => (x + grads[2 * j + 1]![i]!) / 2));
    close(got, steps(adam(0.01), p0, means));
    // Between real steps nothing moves, bit for bit.
    const once = steps(multiSteps(adam(0.01), 3), [-0, 1, 2, 3], grads.slice(0, 2));
    expect(Object.is(once[0], -0)).toBe(true);
    expect(once.slice(1)).toEqual([1, 2, 3]);
    // Summing instead of averaging.
    close(steps(multiSteps(sgd(0.1), 2, { useGradMean: false }), p0, grads.slice(0, 2)), p0.map((x, i) => x - 0.1 * (grads[0]![i]! + grads[1]![i]!)));
  });

  test('applyIfFinite skips non-finite steps, counts them, and lets the update through after too many in a row', () => {
    const tx = applyIfFinite(sgd(0.1), 1);
    let params: Params = tree([['w', tf.tensor([1, 2])]]);
    let state = tx.init(params);
    const step = (g: number[]) => {
      const [u, s] = tx.update({ w: tf.tensor(g) }, state, params);
      params = applyUpdates(params, u);
      state = s;
      return vals(params['w']!);
    };
    expect(step([1, NaN])).toEqual([1, 2]);
    expect([state.notFiniteCount, state.lastFinite, state.totalNotFinite]).toEqual([1, false, 1]);
    expect(step([1, 1]).map((x) => +x.toFixed(5))).toEqual([0.9, 1.9]);
    expect([state.notFiniteCount, state.lastFinite, state.totalNotFinite]).toEqual([0, true, 1]);
    step([Infinity, 0]);
    // The second in a row exceeds maxConsecutiveErrors = 1: applied, as optax.
    expect(step([Infinity, 0])[0]).toBe(-Infinity);
    expect([state.notFiniteCount, state.totalNotFinite]).toEqual([2, 3]);
  });

  test('injectHyperparams: a schedule evaluated per step, a number changeable in the state', () => {
    const lr = (t: number) => 0.1 / (t + 1);
    close(steps(injectHyperparams((h) => adam(h.learningRate!), { learningRate: lr }), p0, grads), steps(adam(lr), p0, grads));
    const tx = injectHyperparams((h) => sgd(h.learningRate!), { learningRate: 0.1 });
    const params = tree([['w', tf.tensor([1])]]);
    const [u1, s1] = tx.update({ w: tf.tensor([1]) }, tx.init(params), params);
    const [u2] = tx.update({ w: tf.tensor([1]) }, { ...s1, hyperparams: { learningRate: 0.5 } }, params);
    expect([vals(u1['w']!)[0], vals(u2['w']!)[0]]).toEqual([expect.closeTo(-0.1, 6), -0.5]);
  });

  test('schedules against optax\'s formulas', () => {
    const lin = linearSchedule(1, 0.2, 10, 5);
    expect([lin(0), lin(5), lin(10), lin(15), lin(100)].map((x) => +x.toFixed(6))).toEqual([1, 1, 0.6, 0.2, 0.2]);
    const ex = exponentialDecay({ init: 2, transitionSteps: 10, decayRate: 0.5, transitionBegin: 5 });
    expect([ex(0), ex(5), ex(15), ex(25)]).toEqual([2, 2, 1, 0.5]);
    expect(ex(10)).toBeCloseTo(2 * 0.5 ** 0.5, 12);
    expect(exponentialDecay({ init: 2, transitionSteps: 10, decayRate: 0.5, staircase: true })(19)).toBe(1);
    expect(exponentialDecay({ init: 2, transitionSteps: 10, decayRate: 0.5, end: 0.4 })(100)).toBe(0.4);
    const joined = joinSchedules([linearSchedule(0, 1, 10), constant(7), (t) => t], [10, 20]);
    expect([joined(5), joined(10), joined(19), joined(20), joined(23)]).toEqual([0.5, 7, 7, 0, 3]);
  });
});

describe('masked, freeze and trainOnly (optax semantics, one mask)', () => {
  const spec = tree([
    ['a.kernel', { shape: [2, 2], dtype: 'float32' as const, role: 'kernel' as const, neuronAxis: 1 }],
    ['a.bias', { shape: [2], dtype: 'float32' as const, role: 'bias' as const, neuronAxis: 0 }],
  ]);
  const params = tree([['a.kernel', tf.tensor([[1, 2], [3, 4]])], ['a.bias', tf.tensor([-0, 5])]]);
  const g = { 'a.kernel': tf.tensor([[1, 1], [1, 1]]), 'a.bias': tf.tensor([1, 1]) };
  const entry = maskOf(spec, (_, p) => (p === 'a.kernel' ? Uint8Array.from([1, 0, 0, 1]) : new Uint8Array(2)));

  test('masked passes the updates outside the mask through; freeze zeros the ones inside', () => {
    const tx = masked(scale2(), byRole('kernel'));
    const [u] = tx.update(g, tx.init(params, spec), params);
    expect([vals(u['a.kernel']!), vals(u['a.bias']!)]).toEqual([[2, 2, 2, 2], [1, 1]]);
    const te = masked(scale2(), entry);
    const [v] = te.update(g, te.init(params, spec), params);
    expect([vals(v['a.kernel']!), vals(v['a.bias']!)]).toEqual([[2, 1, 1, 2], [1, 1]]);
    const fz = freeze(byRole('kernel'));
    const [w] = fz.update(g, fz.init(params, spec), params);
    expect([vals(w['a.kernel']!).map((x) => Object.is(x, -0)), vals(w['a.bias']!)]).toEqual([[true, true, true, true], [1, 1]]);
  });

  test('a Filter without the spec is a ConfigError that says how to give it', () => {
    expect(() => masked(sgd(1), byRole('kernel')).init(params)).toThrow('masked: a Filter needs the parameter spec; call init(params, model.spec)');
  });

  test('adamw decays only where its mask says (a Filter, as optax\'s mask)', () => {
    const tx = adamw(0.1, { weightDecay: 0.5, mask: byRole('kernel') });
    const ref = chain(scaleByAdam(), masked(addDecayedWeights(0.5), byRole('kernel')), scaleByLearningRate(0.1));
    const [u] = tx.update(g, tx.init(params, spec), params);
    const [r] = ref.update(g, ref.init(params, spec), params);
    expect(vals(u['a.bias']!)).toEqual(vals(adam(0.1).update({ b: g['a.bias'] }, adam(0.1).init({ b: params['a.bias']! }), {})[0]['b']!));
    expect(vals(u['a.kernel']!)).toEqual(vals(r['a.kernel']!));
    expect(vals(u['a.kernel']!)).not.toEqual(vals(adam(0.1).update({ k: g['a.kernel'] }, adam(0.1).init({ k: params['a.kernel']! }), {})[0]['k']!));
  });

  test('trainOnly equals chain(masked(inner, m), freeze(not m)), dense and sparse state', () => {
    const not = maskOf(spec, (_, p) => entry.bits[p]!.map((b) => 1 - b));
    for (const sparse of [false, true]) {
      const a = trainOnly(adam(0.1), entry, { sparseState: sparse });
      const b = chain(masked(adam(0.1), entry), freeze(not));
      let [pa, pb] = [params, params];
      let [sa, sb]: OptState[] = [a.init(params, spec), b.init(params, spec)];
      for (let i = 0; i < 3; i++) {
        const [ua, na] = a.update(g, sa as never, pa);
        const [ub, nb] = b.update(g, sb as never, pb);
        [pa, pb, sa, sb] = [applyUpdates(pa, ua), applyUpdates(pb, ub), na, nb];
      }
      for (const p of paths(spec)) expect(vals(pa[p]!)).toEqual(vals(pb[p]!));
      expect(Object.is(vals(pa['a.bias']!)[0], -0)).toBe(true);
    }
  });
});

/** Doubles updates: a visible inner transformation. */
function scale2(): GradientTransformation {
  return { init: () => ({}), update: (u, s) => [Object.fromEntries(Object.entries(u).map(([p, x]) => [p, tf.mul(x, 2)])), s] };
}

describe('fineTune', () => {
  const model = vit({ input: [28, 28, 1], patch: 7, width: 8, depth: 1, heads: 2, classes: 4 });
  const params = model.init(0);
  const task = buildTask('rotation', { testSize: 10 });
  const train = subset(task.train, [...Array(48).keys()]);
  const val = subset(task.val, [...Array(32).keys()]);
  const kernelsAndHead = maskOf(model.spec, (l) => l.role === 'kernel' || l.role === 'head');

  test('trains only the mask, leaves the caller\'s parameters alone, and disposes what it makes', () => {
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    const copy = Object.fromEntries(paths(params).map((p) => [p, vals(params[p]!)]));
    const r = fineTune({ model, params, mask: kernelsAndHead, train, val, epochs: 3, batchSize: 16, progressBar: false, onStep: () => counts.push(tf.memory().numTensors) });
    // Flat across steps, and only the tuned leaves remain afterwards.
    expect(new Set(counts.slice(1)).size).toBe(1);
    const tuned = paths(r.params).filter((p) => r.params[p] !== params[p]);
    expect(tf.memory().numTensors - before).toBe(tuned.length);
    for (const p of paths(params)) {
      expect(vals(params[p]!)).toEqual(copy[p]);
      if (model.spec[p]!.role === 'norm' || model.spec[p]!.role === 'bias') expect(r.params[p]).toBe(params[p]);
    }
    expect(r.history.map((h) => h.epoch)).toEqual([1, 2, 3]);
    expect(r.history.every((h) => h.valAccuracy !== undefined)).toBe(true);
    expect(r.history[2]!.loss).toBeLessThan(r.history[0]!.loss);
  });

  test('trainStep: 1,000 steps of a hand-written loop leave the tensor count as it was, a throwing step too', () => {
    const mask = kernelsAndHead;
    const tx = trainOnly(adamw(1e-3), mask);
    // batches() frees each batch when it moves on, so this step reuses the first one while it lives.
    const it = batches(train, 8);
    const batch = it.next().value!;
    const before = tf.memory().numTensors;
    let p: Params = params;
    let state: OptState | undefined;
    const counts = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      ({ params: p, state } = trainStep({ model, params: p, optimizer: tx, state, x: batch.x, y: batch.y, trainable: mask }));
      counts.add(tf.memory().numTensors);
    }
    expect(counts.size).toBe(1);
    // What remains: the tuned leaves and the state (moments and trainOnly's mask).
    const kept = paths(p).filter((k) => p[k] !== params[k]).length;
    const stateTensors = (c: unknown): number => (c instanceof tf.Tensor ? 1 : c && typeof c === 'object' ? Object.values(c).reduce((n: number, x) => n + stateTensors(x), 0) : 0);
    expect(tf.memory().numTensors - before).toBe(kept + stateTensors(state));
    const mid = tf.memory().numTensors;
    const bad = { ...batch, x: tf.fill(batch.x.shape, NaN) };
    expect(() => trainStep({ model, params: p, optimizer: tx, state, x: bad.x, y: batch.y, trainable: mask })).toThrow(NonFiniteError);
    expect(() => trainStep({ model, params: p, optimizer: tx, state, x: batch.x, y: batch.y, loss: () => { throw new Error('boom'); } })).toThrow('boom');
    expect(tf.memory().numTensors).toBe(mid + 1); // the NaN batch made here
    bad.x.dispose();
    tf.dispose(state);
    for (const k of paths(p)) if (p[k] !== params[k]) p[k]!.dispose();
    expect(tf.memory().numTensors).toBe(before);
    it.return(undefined);
  });

  test('keepBest returns the epoch with the best validation accuracy', () => {
    const r = fineTune({ model, params, mask: kernelsAndHead, train, val, epochs: 3, batchSize: 16, keepBest: true, learningRate: 1e-2, progressBar: false });
    const best = Math.max(...r.history.map((h) => h.valAccuracy!));
    expect(r.history[r.epoch - 1]!.valAccuracy).toBe(best);
    expect(evaluate(model, r.params, val)).toBe(best);
  });

  test('takes a selector and selects on the training data', () => {
    const r = fineTune({ model, params, mask: gps({ k: 1 }), train, epochs: 1, batchSize: 16, progressBar: false });
    expect(countMask(r.mask).trainable).toBeGreaterThan(0);
  });

  test('bad input is an error before any step', () => {
    let stepped = false;
    const base = { model, params, train, epochs: 1, progressBar: false, onStep: () => (stepped = true) };
    expect(() => fineTune({ ...base, mask: maskAlgebra(model.spec).zero })).toThrow(new MaskError('fineTune: the mask selects nothing to train'));
    const other = cnn({ input: [28, 28, 1], channels: [2], features: 3, classes: 4 });
    expect(() => fineTune({ ...base, mask: maskAlgebra(other.spec).one })).toThrow(MaskError);
    const badLabels = { ...train, labels: train.labels.map((c, i) => (i === 5 ? 9 : c)) };
    expect(() => fineTune({ ...base, mask: kernelsAndHead, train: badLabels })).toThrow('fineTune: train label 9 at index 5 is outside [0, 4)');
    expect(() => fineTune({ ...base, mask: kernelsAndHead, train: { ...train, images: train.images.subarray(1) } })).toThrow(/fineTune: argument train: expected 48 samples of shape \[28, 28, 1\] \(37632 values\), got 37631 values/);
    expect(() => fineTune({ ...base, mask: kernelsAndHead, keepBest: true })).toThrow('fineTune: keepBest needs validation data');
    expect(stepped).toBe(false);
  });
});

describe('flatten', () => {
  const bits = (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer));
  const elementwise: [string, () => GradientTransformation][] = [
    ['adamw', () => adamw(0.05, { weightDecay: 0.1 })],
    ['momentum', () => momentum(0.1, 0.9, true)],
    ['rmsprop', () => rmsprop(0.01, { momentum: 0.5 })],
    ['lion', () => lion(0.01)],
  ];
  // Random trees (1–4 leaves of up to 3×3), random gradients, and a size limit that
  // flattens all, some or none of the leaves: the same bits as the unflattened optimizer.
  const setup = specArb({ maxLeaves: 4, maxRank: 2, minDim: 1, maxDim: 3 }).chain((spec) =>
    fc.record({
      spec: fc.constant(spec),
      params: scoresFor(spec, { ties: false }),
      grads: fc.array(scoresFor(spec, { ties: false }), { minLength: 3, maxLength: 3 }),
      maxLeafSize: fc.constantFrom(0, 1, 3, 4, Infinity),
    }),
  );
  test.each(elementwise)('%s: flattened, the same updates bit for bit, whichever leaves are flattened', (_name, make) => {
    fc.assert(
      fc.property(setup, ({ spec, params, grads, maxLeafSize }) => {
        const p0 = toParams(spec, params);
        const g = grads.map((x) => toParams(spec, x));
        const a = runSteps(flatten(make(), { maxLeafSize }), p0, g);
        const b = runSteps(make(), p0, g);
        const same = paths(spec).every((p) => bits(a[p]!).join() === bits(b[p]!).join());
        tf.dispose([...Object.values(p0), ...Object.values(a), ...Object.values(b), ...g.flatMap((x) => Object.values(x))]);
        return same;
      }),
    );
  });
  test('one vector for the small leaves, the large ones as themselves; other leaves are a SpecError', () => {
    const params = tree([['a', tf.ones([2])], ['b', tf.ones([3, 3])], ['c', tf.ones([1])]]);
    const tx = flatten(adam(0.1), { maxLeafSize: 4 });
    const state = tx.init(params);
    expect([state.flat, state.own, state.shapes, state.ownShapes]).toEqual([['a', 'c'], ['b'], [[2], [1]], [[3, 3]]]);
    const mu = (state.inner as unknown as [{ mu: Record<string, tf.Tensor> }])[0].mu;
    expect(Object.fromEntries(Object.entries(mu).map(([k, v]) => [k, v.shape]))).toEqual({ [FLAT]: [3], b: [3, 3] });
    expect(() => tx.update({ a: tf.ones([2]), b: tf.ones([3, 3]) }, state, params)).toThrow(SpecError);
    expect(() => tx.update({ a: tf.ones([3]), b: tf.ones([3, 3]), c: tf.ones([1]) }, state, params)).toThrow(/'a' \[3\]/);
    // A leaf of its own is checked too.
    expect(() => tx.update({ a: tf.ones([2]), b: tf.ones([9]), c: tf.ones([1]) }, state, params)).toThrow(/'b' \[9\]/);
    expect(() => flatten(adam(0.1), { maxLeafSize: -1 })).toThrow(ConfigError);
  });
});

// scaleByAdam runs as one kernel of our own on wasm and cpu (kernels.ts
// adamStep); tfjs's ops (under useStockGradients) are the reference, and it
// must equal them bit for bit: every float32 operation rounded where theirs is.
describeOnBackends((backend) => {
  const bits = (t: tf.Tensor) => Array.from(new Uint32Array((t.dataSync() as Float32Array).slice().buffer));
  const run = (stock: boolean, g: number[][], shape: number[], o: { b1: number; b2: number; eps: number }) => {
    useStockGradients(stock);
    try {
      // As fineTune runs it: each update in a tidy.
      return tf.tidy(() => {
        const tx = scaleByAdam(o);
        let state = tx.init({ w: tf.zeros(shape) });
        const out: number[][] = [];
        for (const x of g) {
          const [u, next] = tx.update({ w: tf.tensor(x, shape) }, state, {});
          out.push(bits(u['w']!), ...(['mu', 'nu'] as const).map((k) => bits((next as { mu: Params; nu: Params })[k]['w']!)));
          state = next;
        }
        return out;
      });
    } finally {
      useStockGradients(false);
    }
  };
  test(`${backend}: scaleByAdam's one-kernel step equals tfjs's ops bit for bit (updates and moments), any gradients and hyperparameters, and leaks nothing`, () => {
    const f32 = fc.float({ noDefaultInfinity: true, noNaN: true });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }).chain((n) => fc.tuple(fc.constant(n), fc.array(fc.array(f32, { minLength: n, maxLength: n }), { minLength: 1, maxLength: 4 }))),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        fc.double({ min: 1e-12, max: 1, noNaN: true }),
        ([n, g], b1, b2, eps) => {
          const before = tf.memory().numTensors;
          expect(run(false, g, [n], { b1, b2, eps })).toEqual(run(true, g, [n], { b1, b2, eps }));
          expect(tf.memory().numTensors).toBe(before);
        },
      ),
    );
  });
});
