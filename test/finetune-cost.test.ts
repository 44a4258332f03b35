// fineTune's cost that follows the selection: sparse kernel gradients and
// cached features for head-only training give the results of the plain
// path (to float rounding), with no tensor left behind.
import * as tf from '@tensorflow/tfjs-core';
import { expect, test } from 'vitest';
import { paths, useStockGradients, type Params } from '../src/index.js';
import { subset } from '../src/data/index.js';
import { buildTask } from '../src/node/index.js';
import { cnn, mlp, vit } from '../src/models/index.js';
import { bitfit, linearProbe, maskOf, type Selector } from '../src/selection/index.js';
import * as E from 'fp-ts/lib/Either.js';
import { fineTune, type FineTuneOptions } from '../src/optim/index.js';

const task = buildTask('rotation', { testSize: 10 });
const train = subset(task.train, [...Array(40).keys()]);
const val = subset(task.val, [...Array(24).keys()]);

/** max |a − b| over every leaf, relative to the largest |b|. */
function maxRelDiff(a: Params, b: Params): number {
  let num = 0;
  let den = 1e-12;
  for (const p of paths(b)) {
    const x = a[p]!.dataSync();
    const y = b[p]!.dataSync();
    for (let i = 0; i < y.length; i++) {
      num = Math.max(num, Math.abs(x[i]! - y[i]!));
      den = Math.max(den, Math.abs(y[i]!));
    }
  }
  return num / den;
}

const dispose = (tuned: Params, given: Params) => tf.dispose(paths(tuned).filter((p) => tuned[p] !== given[p]).map((p) => tuned[p]!));

test.each([
  ['vit', vit({ input: [28, 28, 1], patch: 7, width: 32, depth: 2, heads: 4, classes: 4 })],
  ['cnn', cnn({ input: [28, 28, 1], channels: [8], features: 32, classes: 4 })],
  // Kernels large against the batch: their products run on the frozen base (keepBasePacked).
  ['mlp', mlp({ input: [28, 28, 1], hidden: [32], classes: 4 })],
] as const)('%s: a sparse selection trains as with dense gradients, with the sparse gradient path taken', (_name, model) => {
  const params = model.init(0);
  // Two entries in every eighth column of each dense kernel (few enough for the cost model) and the head whole.
  const mask = maskOf(model.spec, (leaf) => {
    if (leaf.role === 'head') return true;
    if (leaf.role !== 'kernel' || leaf.shape.length !== 2) return false;
    const [k, n] = leaf.shape as [number, number];
    const bits = new Uint8Array(k * n);
    for (let j = 0; j < n; j += 8) for (const i of [j % k, (7 * j + 3) % k]) bits[i * n + j] = 1;
    return bits;
  });
  const o: FineTuneOptions = { model, params, mask, train, val, epochs: 2, batchSize: 16, progressBar: false, learningRate: 1e-2 };
  const before = tf.memory().numTensors;
  const sparse = fineTune(o);
  const dense = fineTune({ ...o, sparseGradients: false });
  expect(sparse.sparseGradientLeaves.length).toBeGreaterThan(0);
  expect(sparse.sparseGradientLeaves.every((p) => model.spec[p]!.role === 'kernel')).toBe(true);
  expect(dense.sparseGradientLeaves).toEqual([]);
  // With sparse state (the default) those leaves' gradients and updates stay at the selected values.
  expect(sparse.selectedValueLeaves).toEqual(sparse.sparseGradientLeaves);
  // Dense state takes the dense-shaped sparse gradient, with the same result.
  const denseState = fineTune({ ...o, sparseState: false });
  expect(denseState.selectedValueLeaves).toEqual([]);
  expect(maxRelDiff(denseState.params, dense.params)).toBeLessThan(1e-5);
  dispose(denseState.params, params);
  expect(maxRelDiff(sparse.params, dense.params)).toBeLessThan(1e-5);
  sparse.history.forEach((h, i) => expect(h.loss).toBeCloseTo(dense.history[i]!.loss, 5));
  // Frozen entries stay bit-identical on the sparse path too.
  for (const p of sparse.sparseGradientLeaves) {
    const bits = mask.bits[p]!;
    const a = sparse.params[p]!.dataSync();
    const b = params[p]!.dataSync();
    for (let i = 0; i < bits.length; i++) if (!bits[i]) expect(a[i]).toBe(b[i]);
  }
  dispose(sparse.params, params);
  dispose(dense.params, params);
  expect(tf.memory().numTensors).toBe(before);
  tf.dispose(Object.values(params));
});

test('a kernel also used outside a matmul (a penalty on it) is found on the first step\'s tape and takes its whole gradient', () => {
  const base = mlp({ input: [28, 28, 1], hidden: [16], classes: 4 });
  // Its first kernel also enters the logits through a penalty: the probe alone would miss that share of the gradient.
  const model = { ...base, apply: ((p: Params, x: tf.Tensor, o?: object) => {
    const out = (base.apply as (...a: unknown[]) => { logits: tf.Tensor })(p, x, o);
    return { ...out, logits: tf.add(out.logits, tf.mul(tf.sum(tf.square(p['layers.0.kernel']!)), 1e-2)) };
  }) as unknown as typeof base.apply };
  const params = base.init(0);
  const mask = maskOf(base.spec, (leaf, p) => (p === 'layers.0.kernel' ? Uint8Array.from({ length: 784 * 16 }, (_, i) => (i % 97 === 0 ? 1 : 0)) : leaf.role === 'head'));
  const o: FineTuneOptions = { model, params, mask, train, epochs: 1, batchSize: 16, progressBar: false, learningRate: 1e-2 };
  const before = tf.memory().numTensors;
  const sparse = fineTune(o);
  const dense = fineTune({ ...o, sparseGradients: false });
  expect(sparse.sparseGradientLeaves).toEqual(['layers.0.kernel']);
  expect(sparse.selectedValueLeaves).toEqual([]);
  expect(maxRelDiff(sparse.params, dense.params)).toBeLessThan(1e-5);
  dispose(sparse.params, params);
  dispose(dense.params, params);
  expect(tf.memory().numTensors).toBe(before);
  tf.dispose(Object.values(params));
});

test.each([
  ['linear probing', linearProbe()],
  ['head only, part of it', null],
] as const)('%s trains on features computed once, as the uncached run does', (_name, selector) => {
  const model = vit({ input: [28, 28, 1], patch: 7, width: 32, depth: 2, heads: 4, classes: 4 });
  const params = model.init(1);
  const mask = selector ?? maskOf(model.spec, (leaf, p) => p === 'head.kernel' ? Uint8Array.from({ length: 32 * 4 }, (_, i) => (i % 3 ? 1 : 0)) : false);
  const o: FineTuneOptions = { model, params, mask, train, val, epochs: 3, batchSize: 16, progressBar: false, learningRate: 3e-2, keepBest: true };
  const before = tf.memory().numTensors;
  const cached = fineTune(o);
  const plain = fineTune({ ...o, cacheFeatures: false });
  expect(cached.cachedFeatures).toBe(true);
  expect(plain.cachedFeatures).toBe(false);
  expect(maxRelDiff(cached.params, plain.params)).toBeLessThan(1e-5);
  cached.history.forEach((h, i) => {
    expect(h.loss).toBeCloseTo(plain.history[i]!.loss, 5);
    expect(h.valAccuracy).toBe(plain.history[i]!.valAccuracy);
  });
  expect(cached.epoch).toBe(plain.epoch);
  dispose(cached.params, params);
  dispose(plain.params, params);
  expect(tf.memory().numTensors).toBe(before);
  tf.dispose(Object.values(params));
});

test('a selection beyond the head is not cached', () => {
  const model = vit({ input: [28, 28, 1], patch: 7, width: 32, depth: 1, heads: 4, classes: 4 });
  const params = model.init(2);
  const r = fineTune({ model, params, mask: bitfit(), train, epochs: 1, batchSize: 20, progressBar: false });
  expect(r.cachedFeatures).toBe(false);
  dispose(r.params, params);
  tf.dispose(Object.values(params));
});

test('re-selection on the sparse-gradient path: the new mask gets its own probes, and the run equals the dense-gradient one', () => {
  const model = vit({ input: [28, 28, 1], patch: 7, width: 32, depth: 2, heads: 4, classes: 4 });
  const params = model.init(0);
  // Two entries in every eighth column of each dense kernel, moving with each call: each
  // re-selection picks other entries, so the first mask's probes no longer fit.
  const sparsePick = (shift: number): Selector => (ctx) =>
    E.right(
      maskOf(ctx.env.spec, (leaf) => {
        if (leaf.role === 'head') return true;
        if (leaf.role !== 'kernel' || leaf.shape.length !== 2) return false;
        const [k, n] = leaf.shape as [number, number];
        const bits = new Uint8Array(k * n);
        for (let j = 0; j < n; j += 8) for (const i of [(j + shift) % k, (7 * j + 3 + shift) % k]) bits[i * n + j] = 1;
        return bits;
      }),
    );
  let calls = 0;
  const moving: Selector = (ctx) => sparsePick(calls++)(ctx);
  const run = (sparseGradients: boolean) => {
    calls = 0;
    return fineTune({ model, params, mask: moving, train, epochs: 1, batchSize: 8, progressBar: false, learningRate: 1e-2, sparseGradients, reselect: { every: 2 } });
  };
  const before = tf.memory().numTensors;
  const sparse = run(true);
  const dense = run(false);
  expect(sparse.reselections.length).toBeGreaterThan(0);
  expect(sparse.reselections.every((r) => r.added > 0)).toBe(true);
  expect(sparse.selectedValueLeaves.length).toBeGreaterThan(0);
  expect(maxRelDiff(sparse.params, dense.params)).toBeLessThan(1e-5);
  dispose(sparse.params, params);
  dispose(dense.params, params);
  expect(tf.memory().numTensors).toBe(before);
  tf.dispose(Object.values(params));
});

test("a linear-probing step's optimizer is one Adam kernel per leaf, not twelve, and its two leaves are not flattened (that costs more kernels than it saves); 8 small leaves are", async () => {
  const model = mlp({ input: [28, 28, 1], hidden: [32], classes: 4 });
  const params = model.init(3);
  /** The kernels one more epoch (of 3 steps) adds: the steps' own, whatever runs once per run cancels. */
  const perEpoch = async (mask: FineTuneOptions['mask'], m: FineTuneOptions['model'] = model, p: Params = params) => {
    const count = async (epochs: number) => {
      const names = new Map<string, number>();
      const { kernels } = await tf.profile(() => dispose(fineTune({ model: m, params: p, mask, train: subset(train, [...Array(24).keys()]), epochs, batchSize: 8, progressBar: false }).params, p));
      for (const k of kernels) names.set(k.name, (names.get(k.name) ?? 0) + 1);
      return names;
    };
    const [a, b] = [await count(1), await count(2)];
    return new Map([...b].map(([k, v]) => [k, v - (a.get(k) ?? 0)] as const).filter(([, v]) => v !== 0));
  };
  const linear = await perEpoch(linearProbe());
  expect(linear.get('SparsetuneAdam')).toBe(2 * 3);
  for (const k of ['Sqrt', 'RealDiv', 'Square', 'Concat', 'SplitV']) expect(linear.get(k)).toBeUndefined();
  // BitFit of this MLP trains a bias and the head: 3 leaves, unflattened.
  const bias = await perEpoch(bitfit(), model, params);
  expect(bias.get('SparsetuneAdam')).toBe(3 * 3);
  // Of a deeper one, 7 biases and the head: 9 small leaves, one AdamW over one vector.
  const deep = mlp({ input: [28, 28, 1], hidden: [8, 8, 8, 8, 8, 8, 8], classes: 4 });
  const deepParams = deep.init(3);
  const flat = await perEpoch(bitfit(), deep, deepParams);
  expect(flat.get('SparsetuneAdam')).toBe(3);
  expect(flat.get('Concat')).toBeGreaterThan(0);
  // Where Adam is twelve ops (other backends; here under useStockGradients), flattening pays from 2 leaves.
  useStockGradients(true);
  try {
    expect((await perEpoch(bitfit(), model, params)).get('Concat')).toBeGreaterThan(0);
  } finally {
    useStockGradients(false);
  }
  tf.dispose(Object.values(params));
  tf.dispose(Object.values(deepParams));
});
