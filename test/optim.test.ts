import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import { MaskError, paths, tree, type Params } from '../src/index.js';
import { subset } from '../src/data/index.js';
import { buildTask } from '../src/node/index.js';
import { cnn, vit } from '../src/models/index.js';
import { gps, maskAlgebra, maskOf, countMask } from '../src/selection/index.js';
import { adam, applyUpdates, clipByGlobalNorm, constant, cosineDecay, deviceMask, evaluate, fineTune, linearWarmup, masked, momentum, partition, sgd, type GradientTransformation, type OptState } from '../src/optim/index.js';

const vals = (t: tf.Tensor) => Array.from(t.dataSync());

/** Steps a transformation on one leaf with a fixed gradient sequence. */
function steps(tx: GradientTransformation, p0: number[], grads: number[][]): number[] {
  let params: Params = tree([['w', tf.tensor(p0)]]);
  let state: OptState = tx.init(params);
  for (const g of grads) {
    const [u, s] = tx.update({ w: tf.tensor(g) }, state, params);
    params = applyUpdates(params, u);
    state = s;
  }
  return vals(params['w']!);
}

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
    const dm = deviceMask(maskOf(spec, () => bits));
    const state = masked(adam(0.1), dm, { sparseState: true }).init(tree([['w', tf.zeros([10, 10])]]));
    const sizes = (c: unknown): number => (c instanceof tf.Tensor ? c.size : c && typeof c === 'object' ? Object.values(c).reduce((s: number, x) => s + sizes(x), 0) : 0);
    expect(sizes(state)).toBe(2 * 2); // first and second moments of two entries
    expect(sizes(masked(adam(0.1), dm).init(tree([['w', tf.zeros([10, 10])]])))).toBe(2 * 100);
    dm.dispose();
  });
});

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
