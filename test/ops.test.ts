import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import {
  add,
  avgPool2x2,
  batchMatmul,
  biasAdd,
  checked,
  concat,
  conv2d,
  div,
  gelu,
  l2Normalize,
  layerNorm,
  linear,
  logSoftmax,
  matmul,
  max,
  mean,
  mergeHeads,
  mul,
  oneHot,
  patchify,
  randomNormal,
  relu,
  reshape,
  rng,
  slice,
  softmax,
  split,
  splitHeads,
  sub,
  sum,
  transpose,
  type Tensor,
} from '../src/index.js';
import { cpuReferenceGrads, describeOnBackends, finiteDifferenceError, grads, relErr } from './gradcheck.js';

const r = rng(1);
let draws = 0;
const rand = (shape: number[]) => randomNormal(r.fork(draws++), shape);
const any = (t: tf.Tensor) => t as Tensor;
const arr = (t: tf.Tensor): any => t.arraySync();
const close = (a: tf.Tensor, b: tf.Tensor, tol = 1e-5) => expect(relErr([a], [b])).toBeLessThanOrEqual(tol);

// Every op runs on both backends the tests can reach; gradient checks run on each.
describeOnBackends((backend) => {

  describe('custom gradients match tfjs reference gradients on cpu and finite differences', () => {
    const cases: [string, () => tf.Tensor[], (...xs: tf.Tensor[]) => tf.Tensor, (...xs: tf.Tensor[]) => tf.Tensor][] = [
      ['matmul', () => [rand([5, 7]), rand([7, 3])], (x, w) => matmul(any(x) as Tensor<[number, number]>, any(w) as Tensor<[number, number]>), (x, w) => tf.matMul(x, w)],
      [
        'batchMatmul',
        () => [rand([2, 3, 4, 5]), rand([2, 3, 5, 6])],
        (x, w) => batchMatmul(any(x) as Tensor<[number, number, number, number]>, any(w) as Tensor<[number, number, number, number]>),
        (x, w) => tf.matMul(x, w),
      ],
      // The stock compositions are the references: ours are hand-written gradients of the same functions.
      ['gelu', () => [tf.mul(rand([4, 6]), 2)], (x) => gelu(any(x)), (x) => tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1))],
      [
        'layerNorm',
        () => [rand([3, 4, 8]), rand([8]), rand([8])],
        (x, g, b) => layerNorm(any(x) as Tensor<[number, number]>, any(g) as Tensor<[number]>, any(b) as Tensor<[number]>),
        (x, g, b) => {
          const c = tf.sub(x, tf.mean(x, -1, true));
          return tf.add(tf.mul(tf.mul(c, tf.rsqrt(tf.add(tf.mean(tf.square(c), -1, true), 1e-5))), g), b);
        },
      ],
      ['linear', () => [rand([2, 3, 4]), rand([4, 5])], (x, w) => linear(any(x) as Tensor<[number, number, number]>, any(w) as Tensor<[number, number]>), (x, w) => tf.reshape(tf.matMul(tf.reshape(x, [6, 4]), w), [2, 3, 5])],
      ...(['same', 'valid'] as const).flatMap((pad) =>
        [
          [3, 3],
          [2, 2],
          [1, 3],
          [4, 2],
        ].map(
          ([kh, kw]) =>
            [
              `conv2d ${kh}x${kw} ${pad}`,
              () => [rand([2, 6, 5, 3]), rand([kh!, kw!, 3, 4])],
              (x: tf.Tensor, f: tf.Tensor) => conv2d(any(x) as Tensor<[number, number, number, number]>, any(f) as Tensor<[number, number, number, number]>, pad),
              (x: tf.Tensor, f: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 1, pad),
            ] as (typeof cases)[number],
        ),
      ),
    ];
    test.each(cases)('%s', async (_name, make, ours, reference) => {
      const xs = make();
      const g = grads(ours, xs);
      const ref = await cpuReferenceGrads(reference, xs);
      expect(relErr(g, ref)).toBeLessThan(1e-3);
      expect(finiteDifferenceError(ours, xs)).toBeLessThan(1e-3);
      // The forward values agree with plain tfjs too.
      close(ours(...xs), reference(...xs), 1e-4);
    });
  });

  describe('composite ops: gradients match finite differences', () => {
    const cases: [string, () => tf.Tensor[], (...xs: tf.Tensor[]) => tf.Tensor][] = [
      ['gelu', () => [rand([4, 6])], (x) => gelu(any(x))],
      ['layerNorm', () => [rand([3, 4, 8]), rand([8]), rand([8])], (x, g, b) => layerNorm(any(x) as Tensor<[number, number]>, any(g) as Tensor<[number]>, any(b) as Tensor<[number]>)],
      ['l2Normalize', () => [rand([5, 6])], (x) => l2Normalize(any(x))],
      ['logSoftmax', () => [rand([5, 6])], (x) => logSoftmax(any(x))],
      ['softmax', () => [rand([5, 6])], (x) => softmax(any(x))],
      ['patchify', () => [rand([2, 4, 6, 2])], (x) => patchify(any(x) as Tensor<[number, number, number, number]>, 2)],
      ['avgPool2x2', () => [rand([2, 5, 4, 3])], (x) => avgPool2x2(any(x) as Tensor<[number, number, number, number]>)],
      ['splitHeads', () => [rand([2, 3, 8])], (x) => splitHeads(any(x) as Tensor<[number, number, number]>, 4)],
    ];
    test.each(cases)('%s', (_name, make, f) => {
      expect(finiteDifferenceError(f, make())).toBeLessThan(2e-3);
    });
  });
});

describe('forward values', () => {
  test('elementwise ops broadcast b onto a', () => {
    const a = checked(tf.tensor2d([[1, 2], [3, 4]]), [2, 2]);
    const row = checked(tf.tensor1d([10, 20]), [2]);
    expect(arr(add(a, row))).toEqual([[11, 22], [13, 24]]);
    expect(arr(sub(a, 1))).toEqual([[0, 1], [2, 3]]);
    expect(arr(mul(a, row))).toEqual([[10, 40], [30, 80]]);
    expect(arr(div(a, 2))).toEqual([[0.5, 1], [1.5, 2]]);
    expect(arr(biasAdd(a, row))).toEqual([[11, 22], [13, 24]]);
    expect(relu(checked(tf.tensor1d([-1, 2]), [2])).arraySync()).toEqual([0, 2]);
  });

  test('shape ops', () => {
    const x = checked(tf.reshape(tf.range(0, 24), [2, 3, 4]), [2, 3, 4]);
    expect(transpose(x, [2, 0, 1]).shape).toEqual([4, 2, 3]);
    expect(reshape(x, [6, 4]).shape).toEqual([6, 4]);
    expect(reshape(checked(tf.zeros([5, 3, 4]), ['B', 3, 4]), ['B', 12], { B: 5 }).shape).toEqual([5, 12]);
    expect(concat([x, x], 1).shape).toEqual([2, 6, 4]);
    expect(arr(slice(x, 2, 1, 2))[0]![0]).toEqual([1, 2]);
    expect(split(x, 2, 2).map((t) => t.shape)).toEqual([[2, 3, 2], [2, 3, 2]]);
    expect(sum(x, 0).shape).toEqual([3, 4]);
    expect(arr(mean(x, -1))[0]).toEqual([1.5, 5.5, 9.5]);
    expect(arr(max(x, 1))[1]).toEqual([20, 21, 22, 23]);
  });

  test('heads split and merge back', () => {
    const x = checked(rand([2, 5, 12]), [2, 5, 12]);
    const h = splitHeads(x, 3);
    expect(h.shape).toEqual([2, 3, 5, 4]);
    close(mergeHeads(h), x, 0);
  });

  test('patchify orders patches row-major and pixels (row, col, channel)', () => {
    const x = checked(tf.reshape(tf.range(0, 16), [1, 4, 4, 1]), [1, 4, 4, 1]);
    const p = arr(patchify(x, 2));
    expect(p[0]![0]).toEqual([0, 1, 4, 5]);
    expect(p[0]![1]).toEqual([2, 3, 6, 7]);
    expect(p[0]![2]).toEqual([8, 9, 12, 13]);
  });

  test('layerNorm normalises the last axis', () => {
    const x = checked(rand([3, 16]), [3, 16]);
    const y = layerNorm(x, checked(tf.ones([16]), [16]), checked(tf.zeros([16]), [16]));
    expect(arr(tf.mean(y, -1)).every((m: number) => Math.abs(m) < 1e-5)).toBe(true);
    expect(arr(tf.mean(tf.square(y), -1)).every((v: number) => Math.abs(v - 1) < 1e-3)).toBe(true);
  });

  test('l2Normalize gives unit rows and no NaN on a zero row', () => {
    const y = arr(l2Normalize(checked(tf.tensor2d([[3, 4], [0, 0]]), [2, 2])));
    expect(y[0]![0]).toBeCloseTo(0.6);
    expect(y[1]).toEqual([0, 0]);
  });

  test('logSoftmax is stable for large logits', () => {
    const y = arr(logSoftmax(checked(tf.tensor2d([[1000, 0]]), [1, 2])));
    expect(y[0]![0]).toBeCloseTo(0);
    expect(y[0]![1]).toBeCloseTo(-1000);
  });

  test('oneHot', () => {
    const y = oneHot(checked(tf.tensor1d([2, 0], 'int32'), ['B']), 3);
    expect(y.dtype).toBe('float32');
    expect(arr(y)).toEqual([[0, 0, 1], [1, 0, 0]]);
    expect(() => oneHot(checked(tf.tensor1d([1]), ['B']), 3)).toThrow('oneHot: argument labels: expected dtype int32, got float32');
  });

  test('conv2d same keeps spatial size, valid shrinks it', () => {
    const x = checked(rand([1, 6, 5, 2]), ['B', 6, 5, 2]);
    expect(conv2d(x, checked(rand([3, 3, 2, 4]), [3, 3, 2, 4])).shape).toEqual([1, 6, 5, 4]);
    expect(conv2d(x, checked(rand([3, 2, 2, 4]), [3, 2, 2, 4]), 'valid').shape).toEqual([1, 4, 4, 4]);
  });

  test('custom-gradient ops leak no tensors', () => {
    const x = rand([2, 6, 6, 3]);
    const f = rand([3, 3, 3, 4]);
    const w = rand([4, 5]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      tf.tidy(() => {
        const loss = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
          tf.sum(linear(any(tf.mean(conv2d(any(a) as Tensor<[number, number, number, number]>, any(b) as Tensor<[number, number, number, number]>), [1, 2])) as Tensor<[number, number]>, any(c) as Tensor<[number, number]>));
        tf.grads(loss)([x, f, w]);
      });
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
