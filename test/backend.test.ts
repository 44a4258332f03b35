import * as tf from '@tensorflow/tfjs-core';
import { afterAll, expect, test } from 'vitest';
import { BackendError, initBackend } from '../src/index.js';
import { NATIVE_MISSING } from '../src/core/backend.js';

afterAll(async () => {
  await initBackend('wasm');
});

test('wasm is the default and cpu is available', async () => {
  expect(await initBackend()).toBe('wasm');
  expect(await initBackend('cpu')).toBe('cpu');
  expect(tf.getBackend()).toBe('cpu');
});

test('gradients are registered in Node for plain tfjs ops too', () => {
  const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.exp(x), 2)))(tf.zeros([3]));
  expect(Array.from(g.dataSync())).toEqual([2, 2, 2]);
});

test("'tensorflow' without a native package says what to install and what it needs", async () => {
  await expect(initBackend('tensorflow', ['sparsetune-no-such-package'])).rejects.toThrow(new BackendError(NATIVE_MISSING));
  expect(NATIVE_MISSING).toContain('@tensorflow/tfjs-node-gpu');
  expect(NATIVE_MISSING).toContain('CUDA 11.2 and cuDNN 8.1');
});

test('an unknown backend name is an error', async () => {
  // @ts-expect-error not a backend name
  await expect(initBackend('webgpu')).rejects.toThrow("initBackend: unknown backend 'webgpu'; expected 'wasm', 'cpu' or 'tensorflow'");
});
