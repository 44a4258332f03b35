import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import { checked, randomNormal, rng, ShapeError } from '../src/index.js';
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
