import * as tf from '@tensorflow/tfjs-core';
import { expect, test } from 'vitest';
import { randomNormal, randomUniform, rng } from '../src/index.js';

test('the same seed gives the same stream; forks are independent of draw order', () => {
  const a = rng(5);
  const b = rng(5);
  expect([a.uniform(), a.normal(), a.int(10)]).toEqual([b.uniform(), b.normal(), b.int(10)]);
  const fresh = rng(5).fork('init').uniform();
  expect(a.fork('init').uniform()).toBe(fresh); // a has advanced; its fork has not moved
  expect(rng(5).fork('init').uniform()).not.toBe(rng(5).fork('shuffle').uniform());
  expect(rng(5).uniform()).not.toBe(rng(6).uniform());
});

test('uniform, normal and int have the right ranges and moments', () => {
  const r = rng(1);
  const n = 20000;
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    const u = r.uniform();
    expect(u >= 0 && u < 1).toBe(true);
    const z = r.normal();
    s += z;
    s2 += z * z;
  }
  expect(Math.abs(s / n)).toBeLessThan(0.03);
  expect(Math.abs(s2 / n - 1)).toBeLessThan(0.05);
  const counts = [0, 0, 0];
  for (let i = 0; i < 3000; i++) counts[r.int(3)]!++;
  counts.forEach((c) => expect(c).toBeGreaterThan(900));
  expect(() => r.int(0)).toThrow('Rng.int: n must be a positive integer, got 0');
  expect(() => rng(1.5)).toThrow('rng: seed must be a safe integer, got 1.5');
});

test('shuffle is a permutation and leaves its input alone', () => {
  const xs = [...Array(50).keys()];
  const s = rng(3).shuffle(xs);
  expect([...s].sort((a, b) => a - b)).toEqual(xs);
  expect(s).not.toEqual(xs);
  expect(xs[0]).toBe(0);
});

test('random tensors are the same on every backend', async () => {
  const onWasm = randomNormal(rng(9), [3, 4], 0.5).dataSync();
  const previous = tf.getBackend();
  await tf.setBackend('cpu');
  const onCpu = randomNormal(rng(9), [3, 4], 0.5).dataSync();
  await tf.setBackend(previous);
  expect(Array.from(onCpu)).toEqual(Array.from(onWasm));
  const u = randomUniform(rng(9), [100], -2, 2).dataSync();
  expect(u.every((v) => v >= -2 && v < 2)).toBe(true);
});
