import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { checked, DataError, randomNormal, rng, ShapeError, useStockGradients } from '../src/index.js';
import { describeOnBackends, finiteDifferenceError, grads } from './gradcheck.js';
import { accuracy, crossEntropy, supConLoss } from '../src/models/index.js';

const ints = (xs: number[]) => checked(tf.tensor1d(xs, 'int32'), ['B']);

describe('crossEntropy', () => {
  const logits = checked(tf.tensor2d([[2, 0, 0], [0, 1, 3]]), ['B', 3]);
  const y = ints([0, 1]);
  const manual = (eps: number) => {
    const rows = [[2, 0, 0], [0, 1, 3]];
    return (
      rows.reduce((s, row, i) => {
        const lse = Math.log(row.reduce((a, v) => a + Math.exp(v), 0));
        return s - row.reduce((a, v, k) => a + ((k === [0, 1][i] ? 1 - eps : 0) + eps / 3) * (v - lse), 0);
      }, 0) / 2
    );
  };
  test('matches the definition, with and without label smoothing', () => {
    expect(crossEntropy(logits, y).dataSync()[0]).toBeCloseTo(manual(0), 5);
    expect(crossEntropy(logits, y, { labelSmoothing: 0.1 }).dataSync()[0]).toBeCloseTo(manual(0.1), 5);
  });
  test('is finite for huge logits', () => {
    const big = checked(tf.tensor2d([[1e4, 0]]), ['B', 2]);
    expect(crossEntropy(big, ints([1])).dataSync()[0]).toBeCloseTo(1e4, 0);
  });
  test('rejects float labels, a bad smoothing and mismatched batch', () => {
    expect(() => crossEntropy(logits, checked(tf.tensor1d([0, 1]), ['B']))).toThrow(new ShapeError('crossEntropy: argument labels: expected dtype int32, got float32'));
    expect(() => crossEntropy(logits, y, { labelSmoothing: 1 })).toThrow('crossEntropy: labelSmoothing must be in [0, 1), got 1');
    expect(() => crossEntropy(logits, ints([0]) as never)).toThrow('crossEntropy: argument labels: expected [B=2], got [1]');
  });
  test('accuracy', () => {
    expect(accuracy(logits, ints([0, 2]))).toBe(1);
    expect(accuracy(logits, ints([1, 2]))).toBe(0.5);
  });
});

/** SupCon written with plain loops in float64, as Khosla et al. define it. */
function referenceSupCon(z: number[][], labels: number[], tau: number): number {
  const n = z.length;
  const b = labels.length;
  const lab = (i: number) => labels[i % b]!;
  const unit = z.map((v) => {
    const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    return v.map((x) => x / norm);
  });
  const dot = (i: number, j: number) => unit[i]!.reduce((s, x, k) => s + x * unit[j]![k]!, 0) / tau;
  let total = 0;
  for (let i = 0; i < n; i++) {
    let denom = 0;
    for (let a = 0; a < n; a++) if (a !== i) denom += Math.exp(dot(i, a));
    let sum = 0;
    let count = 0;
    for (let p = 0; p < n; p++) {
      if (p === i || lab(p) !== lab(i)) continue;
      sum += dot(i, p) - Math.log(denom);
      count++;
    }
    total += -sum / count;
  }
  return total / n;
}

describe('supConLoss', () => {
  const cases: [string, number[]][] = [
    ['mixed labels', [0, 1, 0, 2, 1]],
    ['a class with a single sample', [0, 0, 1, 2, 2]],
    ['every label the same', [3, 3, 3, 3]],
  ];
  test.each(cases)('value and gradient match a plain-loop reference: %s', (_name, labels) => {
    const b = labels.length;
    const f = 6;
    const tau = 0.5; // a larger τ keeps float32 finite differences well conditioned
    const x = randomNormal(rng(b).fork('features'), [2 * b, f]);
    const rows = x.arraySync() as number[][];
    const y = ints(labels);
    const ours = (t: tf.Tensor) => supConLoss(t as never, y, { temperature: tau });
    expect(ours(x).dataSync()[0]).toBeCloseTo(referenceSupCon(rows, labels, tau), 4);
    // Gradient: tfjs against central differences of the float64 reference.
    const g = tf.grad(ours)(x).arraySync() as number[][];
    const h = 1e-5;
    for (let i = 0; i < 2 * b; i++) {
      for (let k = 0; k < f; k++) {
        const plus = rows.map((r) => [...r]);
        const minus = rows.map((r) => [...r]);
        plus[i]![k]! += h;
        minus[i]![k]! -= h;
        const numeric = (referenceSupCon(plus, labels, tau) - referenceSupCon(minus, labels, tau)) / (2 * h);
        expect(Math.abs(g[i]![k]! - numeric)).toBeLessThan(1e-4 + 1e-3 * Math.abs(numeric));
      }
    }
  });
  test('default temperature is 0.07', () => {
    const x = randomNormal(rng(0), [4, 3]);
    const y = ints([0, 1]);
    expect(supConLoss(x as never, y).dataSync()[0]).toBeCloseTo(referenceSupCon(x.arraySync() as number[][], [0, 1], 0.07), 3);
  });
  test('needs two views per label', () => {
    expect(() => supConLoss(tf.zeros([5, 3]) as never, ints([0, 1]))).toThrow(new ShapeError('supConLoss: argument features: expected [2·B=4, F] (two views per label), got [5, 3]'));
  });
});

// crossEntropy is one kernel of our own (loss and gradient on the host);
// tfjs's ops (one-hot, log-softmax, …) are the reference it must equal.
/** Entry by entry within 1e-5 · (1 + |reference|): a relative error alone is undefined where both are 0. (tfjs's one-hot needs two classes, so the reference does too.) */
function close(a: tf.Tensor, b: tf.Tensor): void {
  const [x, y] = [a.dataSync(), b.dataSync()];
  expect(x.length).toBe(y.length);
  x.forEach((v, i) => expect(Math.abs(v - y[i]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(y[i]!))));
}

describeOnBackends((backend) => {
  const reference = (eps: number) => (z: tf.Tensor, y: tf.Tensor) => {
    useStockGradients(true);
    try {
      return crossEntropy(checked(z, ['B', 'K']), checked(y, ['B']), { labelSmoothing: eps });
    } finally {
      useStockGradients(false);
    }
  };
  test(`${backend}: loss and gradient equal tfjs's own ops, any batch, class count, labels and smoothing`, () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 2, max: 12 }), fc.nat(), fc.constantFrom(0, 0.1, 0.35), fc.double({ min: 0.1, max: 30, noNaN: true }), (b, k, seed, eps, scale) => {
        tf.tidy(() => {
          const z = tf.mul(randomNormal(rng(seed).fork('z'), [b, k]), scale);
          const y = tf.tensor1d(Array.from({ length: b }, (_, i) => (seed + 7 * i) % k), 'int32');
          const ours = (zz: tf.Tensor) => crossEntropy(checked(zz, ['B', 'K']), checked(y, ['B']), { labelSmoothing: eps });
          const theirs = (zz: tf.Tensor) => reference(eps)(zz, y);
          close(ours(z), theirs(z));
          close(grads(ours, [z])[0]!, grads(theirs, [z])[0]!);
          // The kernel's second output (the saved gradient) is freed with the tape.
          const before = tf.memory().numTensors;
          tf.dispose(Object.values(tf.valueAndGrad(ours)(z)));
          expect(tf.memory().numTensors).toBe(before);
        });
      }),
    );
  });
  test(`${backend}: labels computed from the logits (pseudo-labels) differentiate as with tfjs's ops: their gradient is zero`, () => {
    const z = tf.mul(randomNormal(rng(5).fork('z'), [4, 3]), 2);
    const pseudo = (f: (l: tf.Tensor, y: tf.Tensor) => tf.Tensor) => (zz: tf.Tensor) => f(zz, tf.cast(tf.argMax(zz, 1), 'int32'));
    const ours = tf.grad(pseudo((l, y) => crossEntropy(checked(l, ['B', 'K']), checked(y, ['B']))))(z);
    const theirs = tf.grad(pseudo(reference(0)))(z);
    close(ours, theirs);
    tf.dispose([z, ours, theirs]);
  });
  test(`${backend}: its gradient agrees with finite differences`, () => {
    const z = tf.mul(randomNormal(rng(3).fork('z'), [6, 5]), 2);
    const y = tf.tensor1d([0, 4, 2, 2, 1, 3], 'int32');
    expect(finiteDifferenceError((zz) => crossEntropy(checked(zz, ['B', 'K']), checked(y, ['B']), { labelSmoothing: 0.1 }), [z])).toBeLessThan(2e-3);
    tf.dispose([z, y]);
  });
  test(`${backend}: a label that is not a class is a DataError, and leaks nothing`, () => {
    const z = tf.zeros([2, 3]);
    for (const bad of [3, -1]) {
      const y = tf.tensor1d([0, bad], 'int32');
      const before = tf.memory().numTensors;
      expect(() => crossEntropy(checked(z, ['B', 3]), checked(y, ['B']))).toThrow(new DataError(`crossEntropy: label ${bad} of sample 1 is not a class of the 3 logits (0 to 2)`));
      expect(() => tf.grad((zz: tf.Tensor) => crossEntropy(checked(zz, ['B', 3]), checked(y, ['B'])))(z)).toThrow(DataError);
      expect(tf.memory().numTensors).toBe(before);
      y.dispose();
    }
    z.dispose();
  });
});
