// Run-time shape checks: every op names itself, the argument, the declared
// dims with their bound values, and the actual shape.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import {
  add,
  batchMatmul,
  biasAdd,
  checked,
  concat,
  conv2d,
  layerNorm,
  linear,
  matmul,
  oneHot,
  patchify,
  reshape,
  ShapeError,
  slice,
  split,
  splitHeads,
  sum,
  transpose,
  type Tensor,
} from '../src/index.js';

// Untyped views, to reach the run-time checks past the compiler.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const u = (t: tf.Tensor): any => t;

describe('checked', () => {
  test('returns the same tensor, typed', () => {
    const t = tf.zeros([8, 28, 28, 1]);
    const c: Tensor<readonly ['B', 28, 28, 1]> = checked(t, ['B', 28, 28, 1]);
    expect(c).toBe(t);
  });
  test('rejects a wrong rank or literal dim with a readable message', () => {
    expect(() => checked(tf.zeros([8, 28, 28]), ['B', 28, 28, 1])).toThrow(
      new ShapeError('checked: argument t: expected [B, 28, 28, 1], got [8, 28, 28]'),
    );
    expect(() => checked(tf.zeros([8, 27, 28, 1]), ['B', 28, 28, 1], 'images')).toThrow(
      'checked: argument images: expected [B, 28, 28, 1], got [8, 27, 28, 1]',
    );
  });
  test('binds a symbolic dim once per call', () => {
    expect(() => checked(tf.zeros([3, 3]), ['N', 'N'])).not.toThrow();
    expect(() => checked(tf.zeros([3, 4]), ['N', 'N'])).toThrow('checked: argument t: expected [N, N], got [3, 4]');
  });
});

describe('op errors', () => {
  const x = tf.zeros([4, 784]);
  test('matmul names the argument and the bound K', () => {
    expect(() => matmul(u(x), u(tf.zeros([785, 10])))).toThrow(new ShapeError('matmul: argument w: expected [K=784, N], got [785, 10]'));
    expect(() => matmul(u(tf.zeros([784])), u(tf.zeros([784, 10])))).toThrow('matmul: argument x: expected [M, K], got [784]');
  });
  const cases: [string, () => unknown, string][] = [
    ['batchMatmul rank', () => batchMatmul(u(tf.zeros([2, 3, 4])), u(tf.zeros([3, 4]))), 'batchMatmul: arguments x and w must have the same rank >= 2, got [2,3,4] and [3,4]'],
    ['batchMatmul leading', () => batchMatmul(u(tf.zeros([2, 3, 4])), u(tf.zeros([3, 4, 5]))), 'batchMatmul: argument w: expected [L0=2, K=4, N], got [3, 4, 5]'],
    ['linear', () => linear(u(tf.zeros([2, 5, 64])), u(tf.zeros([65, 3]))), 'linear: argument w: expected [K=64, N], got [65, 3]'],
    ['biasAdd', () => biasAdd(u(tf.zeros([4, 10])), u(tf.zeros([11]))), 'biasAdd: argument b: expected [N=10], got [11]'],
    ['add', () => add(u(tf.zeros([4, 10])), u(tf.zeros([11]))), "add: argument b: expected a shape that broadcasts onto a's [4, 10] (a trailing part of it, 1s allowed), got [11]"],
    ['conv2d channels', () => conv2d(u(tf.zeros([2, 8, 8, 1])), u(tf.zeros([3, 3, 3, 4]))), 'conv2d: argument filter: expected [KH, KW, C=1, O], got [3, 3, 3, 4]'],
    ['conv2d valid too big', () => conv2d(u(tf.zeros([2, 2, 8, 1])), u(tf.zeros([3, 3, 1, 4])), 'valid'), "conv2d: argument filter: a 3×3 'valid' window does not fit the 2×8 input"],
    ['layerNorm', () => layerNorm(u(tf.zeros([2, 64])), u(tf.zeros([64])), u(tf.zeros([32]))), 'layerNorm: argument beta: expected [D=64], got [32]'],
    ['reshape', () => reshape(u(tf.zeros([28, 28])), [785]), 'reshape: argument shape: [785] holds 785 elements, x [28, 28] holds 784'],
    ['reshape dims', () => reshape(u(tf.zeros([2, 784])), ['B', 784]), 'reshape: argument dims: no value for symbolic dim B'],
    ['splitHeads', () => splitHeads(u(tf.zeros([2, 17, 64])), 5 as never), 'splitHeads: argument heads: 5 heads do not divide width D=64'],
    ['transpose', () => transpose(u(tf.zeros([2, 3])), [0, 0]), 'transpose: argument perm: [0, 0] is not a permutation of the 2 axes of [2, 3]'],
    ['concat', () => concat([u(tf.zeros([2, 3])), u(tf.zeros([3, 3]))], 1), 'concat: argument xs[1]: expected [2, *], got [3, 3]'],
    ['slice', () => slice(u(tf.zeros([2, 3])), 1, 2, 2), 'slice: argument begin/size: [2, 4) is outside axis 1 of length 3 in [2, 3]'],
    ['split', () => split(u(tf.zeros([2, 3])), 1, 2), 'split: argument n: axis 1 of length 3 in [2, 3] cannot split into 2 equal parts'],
    ['sum axis', () => sum(u(tf.zeros([2, 3])), 2), 'sum: argument axis: 2 is out of range for rank 2'],
    ['patchify', () => patchify(u(tf.zeros([1, 28, 28, 1])), 5), 'patchify: argument patch: 5 does not divide the 28×28 image'],
    ['oneHot', () => oneHot(u(tf.zeros([2, 2], 'int32')), 3), 'oneHot: argument labels: expected [B], got [2, 2]'],
  ];
  test.each(cases)('%s', (_name, f, message) => {
    expect(f).toThrow(new ShapeError(message));
  });
});
