// Laws of the forward-only criterion (FPS) over random MLPs, CNNs and data:
// non-negative scores, per-neuron budgets, invariance under sign flips that
// leave the network's function unchanged, homogeneity in the input's scale,
// and independence of the batch size. The run's seed is printed by
// vitest.config.ts; FC_SEED=<seed> replays it.
import { fc, test } from '@fast-check/vitest';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect } from 'vitest';
import { dataSet, leafSize, paths, type Params } from '../src/index.js';
import { cnn, defineModel, mlp } from '../src/models/index.js';
import { feedforward, fps, scoresOf, select, selectionEnv } from '../src/selection/index.js';
import { checkLaws, criterionLaws } from '../src/testing/index.js';

const value = fc.float({ min: -4, max: 4, noNaN: true, noDefaultInfinity: true });

/** A random MLP, its parameters and data that fit it. */
const mlpCase = fc
  .record({ din: fc.integer({ min: 1, max: 5 }), hidden: fc.integer({ min: 1, max: 4 }), classes: fc.integer({ min: 2, max: 3 }), n: fc.integer({ min: 1, max: 6 }), seed: fc.nat(1000) })
  .chain((c) => fc.record({ c: fc.constant(c), images: fc.array(value, { minLength: c.n * c.din, maxLength: c.n * c.din }), batch: fc.integer({ min: 1, max: 7 }) }));

function build({ c, images }: { c: { din: number; hidden: number; classes: number; n: number; seed: number }; images: number[] }) {
  const model = mlp({ input: [c.din], hidden: [c.hidden], classes: c.classes });
  const params = model.init(c.seed);
  const data = dataSet({ images: Float32Array.from(images), labels: [...Array(c.n).keys()].map((i) => i % c.classes), shape: [c.din] });
  return { model, params, data };
}

const close = (a: Float32Array, b: Float32Array, tol = 1e-4) => a.every((v, i) => Math.abs(v - b[i]!) <= tol * (1 + Math.abs(v)));

describe('feedforward (FPS) laws', () => {
  test.prop([mlpCase], { numRuns: 40 })('scores are finite and ≥ 0, and leave no tensor behind', (k) => {
    const { model, params, data } = build(k);
    const before = tf.memory().numTensors;
    const s = scoresOf(selectionEnv({ model, params, data }), feedforward({ batchSize: k.batch }));
    expect(tf.memory().numTensors).toBe(before);
    for (const p of paths(model.spec)) expect(s[p]!.every((v) => Number.isFinite(v) && v >= 0)).toBe(true);
    tf.dispose(Object.values(params));
  });

  test.prop([mlpCase, fc.integer({ min: 0, max: 5 })], { numRuns: 40 })('fps({ k }) keeps min(k, fan-in) entries of every kernel neuron, biases and head whole, nothing else', (k, kk) => {
    const { model, params, data } = build(k);
    const mask = select(fps({ k: kk }), selectionEnv({ model, params, data }));
    for (const p of paths(model.spec)) {
      const leaf = model.spec[p]!;
      const bits = mask.bits[p]!;
      if (leaf.role === 'kernel') {
        const [fanIn, out] = leaf.shape as [number, number];
        for (let j = 0; j < out; j++) expect([...Array(fanIn).keys()].filter((i) => bits[i * out + j]).length).toBe(Math.min(kk, fanIn));
      } else expect(bits.every((b) => b === 1)).toBe(true);
    }
    tf.dispose(Object.values(params));
  });

  test.prop([mlpCase, fc.array(fc.boolean(), { minLength: 5, maxLength: 5 })], { numRuns: 40 })(
    "flipping an input feature's sign with its first-layer row (the same network) leaves every score unchanged",
    (k, flips) => {
      const { model, params, data } = build(k);
      const din = k.c.din;
      const sign = flips.slice(0, din).map((f) => (f ? -1 : 1));
      const flippedImages = data.images.map((v, i) => v * sign[i % din]!);
      const w = params['layers.0.kernel']!;
      const flippedParams: Params = { ...params, 'layers.0.kernel': tf.mul(w, tf.tensor2d(sign, [din, 1])) };
      const a = scoresOf(selectionEnv({ model, params, data }), feedforward());
      const b = scoresOf(selectionEnv({ model, params: flippedParams, data: { ...data, images: flippedImages } }), feedforward());
      for (const p of paths(model.spec)) expect(close(a[p]!, b[p]!)).toBe(true);
      tf.dispose([...Object.values(params), flippedParams['layers.0.kernel']!]);
    },
  );

  test.prop([mlpCase, fc.float({ min: Math.fround(0.1), max: 10, noNaN: true })], { numRuns: 40 })('on a linear probe, scaling the input by c > 0 scales the head scores by c', (k, c) => {
    const din = k.c.din;
    const probe = defineModel({ name: 'probe', config: {}, input: [din] as const, features: din, backbone: [], forward: (_p, x) => x }, k.c.classes);
    const params = probe.init(k.c.seed);
    const { data } = build(k);
    const a = scoresOf(selectionEnv({ model: probe, params, data }), feedforward());
    const b = scoresOf(selectionEnv({ model: probe, params, data: { ...data, images: data.images.map((v) => v * c) } }), feedforward());
    expect(close(b['head.kernel']!, a['head.kernel']!.map((v) => v * c))).toBe(true);
    tf.dispose(Object.values(params));
  });

  test.prop([fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.nat(1000)], { numRuns: 15 })('a CNN: the batch size changes nothing but summation order', (b1, b2, seed) => {
    const model = cnn({ input: [6, 6, 2], channels: [3], features: 4, classes: 2 });
    const params = model.init(seed);
    const images = Float32Array.from({ length: 5 * 72 }, (_, i) => Math.sin(i * 0.37 + seed));
    const data = dataSet({ images, labels: [0, 1, 0, 1, 0], shape: [6, 6, 2] });
    const a = scoresOf(selectionEnv({ model, params, data }), feedforward({ batchSize: b1 }));
    const b = scoresOf(selectionEnv({ model, params, data }), feedforward({ batchSize: b2 }));
    for (const p of paths(model.spec)) expect(a[p]!.length).toBe(leafSize(model.spec[p]!));
    for (const p of paths(model.spec)) expect(close(a[p]!, b[p]!)).toBe(true);
    tf.dispose(Object.values(params));
  });

  test('the testing kit: neuron, layer and net over feedforward scores agree with the reference selections', () => {
    const envs = mlpCase.map((k) => {
      const { model, params, data } = build(k);
      return selectionEnv({ model, params, data, seed: k.c.seed });
    });
    checkLaws(criterionLaws(feedforward(), envs), { numRuns: 25 });
  });
});
