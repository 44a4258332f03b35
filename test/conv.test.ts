// Strided and depthwise convolution: their forward-op gradients against
// tfjs's own gradients on the cpu backend and against finite differences,
// on wasm (which has no depthwise backprop kernel) and on cpu.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import { depthwiseConv2d, randomNormal, rng, ShapeError, stridedConv2d, type ConvOptions, type Tensor } from '../src/index.js';
import { cpuReferenceGrads, describeOnBackends, finiteDifferenceError, grads, relErr } from './gradcheck.js';

const r = rng(3);
let draws = 0;
const rand = (shape: number[]) => randomNormal(r.fork(draws++), shape);
type T4 = Tensor<[number, number, number, number]>;

// [name, input shape, filter shape, options]: odd sizes so 'same' pads unevenly and
// strided windows leave rows unread.
const geometries: [string, number[], number[], ConvOptions][] = [
  ['3x3 s1 same', [2, 5, 6, 3], [3, 3, 3, 2], { strides: 1, padding: 'same' }],
  ['3x3 s1 valid', [2, 5, 6, 3], [3, 3, 3, 1], { strides: 1, padding: 'valid' }],
  ['3x3 s2 same', [2, 7, 6, 3], [3, 3, 3, 2], { strides: 2, padding: 'same' }],
  ['3x3 s2 valid', [2, 8, 7, 3], [3, 3, 3, 1], { strides: 2, padding: 'valid' }],
  ['2x2 s2 valid', [1, 6, 6, 2], [2, 2, 2, 3], { strides: 2, padding: 'valid' }],
  ['1x3 s[2,1] same', [2, 5, 5, 2], [1, 3, 2, 2], { strides: [2, 1], padding: 'same' }],
  ['4x2 s3 same', [1, 7, 8, 2], [4, 2, 2, 1], { strides: 3, padding: 'same' }],
];

describeOnBackends((backend) => {

  describe('depthwiseConv2d', () => {
    test.each(geometries)('%s', async (_name, xs, fs, options) => {
      const inputs = [rand(xs), rand(fs)];
      const ours = (x: tf.Tensor, f: tf.Tensor) => depthwiseConv2d(x as T4, f as T4, options);
      const s = options.strides ?? 1;
      const reference = (x: tf.Tensor, f: tf.Tensor) => tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, typeof s === 'number' ? s : [s[0], s[1]], options.padding ?? 'valid');
      expect(relErr([ours(inputs[0]!, inputs[1]!)], [reference(inputs[0]!, inputs[1]!)])).toBeLessThan(1e-5);
      expect(relErr(grads(ours, inputs), await cpuReferenceGrads(reference, inputs))).toBeLessThan(1e-4);
      expect(finiteDifferenceError(ours, inputs)).toBeLessThan(1e-3);
    });
  });

  describe('stridedConv2d', () => {
    test.each(geometries)('%s', async (_name, xs, fs, options) => {
      const cin = xs[3]!;
      const inputs = [rand(xs), rand([fs[0]!, fs[1]!, cin, 3])];
      const ours = (x: tf.Tensor, f: tf.Tensor) => stridedConv2d(x as T4, f as T4, options);
      const s = options.strides ?? 1;
      const reference = (x: tf.Tensor, f: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, typeof s === 'number' ? s : [s[0], s[1]], options.padding ?? 'valid');
      expect(relErr([ours(inputs[0]!, inputs[1]!)], [reference(inputs[0]!, inputs[1]!)])).toBeLessThan(1e-5);
      expect(relErr(grads(ours, inputs), await cpuReferenceGrads(reference, inputs))).toBeLessThan(1e-4);
      expect(finiteDifferenceError(ours, inputs)).toBeLessThan(1e-3);
    });
  });
});

test('a window larger than the padded input is a named error', () => {
  expect(() => depthwiseConv2d(tf.zeros([1, 2, 2, 1]) as T4, tf.zeros([3, 3, 1, 1]) as T4)).toThrow(ShapeError);
  expect(() => stridedConv2d(tf.zeros([1, 2, 2, 1]) as T4, tf.zeros([3, 3, 1, 1]) as T4, { strides: 0 })).toThrow(/strides/);
});
