import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import { crc32, rng } from '../src/index.js';
import { batches, splitIndices, twoViews, type ImageSet } from '../src/data/index.js';
import {
  buildTask,
  count,
  fashionPartition,
  loadFashionMnist,
  loadMnist,
  location,
  mnistPartition,
  TASKS,
} from '../src/node/index.js';

const PIXELS = 784;
const fingerprint = (s: ImageSet) => crc32(new Uint8Array(s.images.buffer, s.images.byteOffset, s.images.byteLength)) ^ crc32(new Uint8Array(s.labels.buffer));
const histogram = (labels: Int32Array, k: number) => labels.reduce((h, c) => (h[c]!++, h), new Array<number>(k).fill(0));

describe('datasets', () => {
  test('mnist: 10,000 digits in [0, 1], every class', () => {
    const m = loadMnist();
    expect(m.n).toBe(10000);
    expect(m.images.length).toBe(10000 * PIXELS);
    expect(Math.min(...m.images.subarray(0, 100000))).toBeGreaterThanOrEqual(0);
    expect(Math.max(...m.images.subarray(0, 100000))).toBeLessThanOrEqual(1);
    expect(histogram(m.labels, 10).every((c) => c > 800)).toBe(true);
  });
  test('fashion-mnist: 70,000 images in [0, 1]', () => {
    const f = loadFashionMnist();
    expect(f.n).toBe(70000);
    expect(f.images.length).toBe(70000 * PIXELS);
    expect(Math.max(...f.images.subarray(0, 100000))).toBeLessThanOrEqual(1);
    expect(histogram(f.labels, 10).every((c) => c >= 7000)).toBe(true);
  });
  test('splits are disjoint, cover what they ask for, and depend only on the seed', () => {
    const parts = splitIndices(100, [10, 20, 30], 4);
    const all = parts.flatMap((p) => Array.from(p));
    expect(parts.map((p) => p.length)).toEqual([10, 20, 30]);
    expect(new Set(all).size).toBe(60);
    expect(splitIndices(100, [10, 20, 30], 4)).toEqual(parts);
    expect(splitIndices(100, [10, 20, 30], 5)).not.toEqual(parts);
    expect(() => splitIndices(10, [6, 6], 0)).toThrow('splitIndices: sizes [6, 6] must be non-negative integers summing to at most 10');
  });
  test('the upstream and downstream partitions have the documented sizes', () => {
    const f = fashionPartition();
    expect([f.train.n, f.val.n, f.test.n, f.downstream.n]).toEqual([45000, 5000, 10000, 10000]);
    const m = mnistPartition();
    expect([m.train.n, m.test.n]).toEqual([7000, 3000]);
  });
});

describe('tasks', () => {
  const expected: Record<string, [string, number]> = {
    digits: ['natural', 10],
    'fashion-coarse': ['natural', 4],
    'digits-inverted': ['specialized', 10],
    'digits-noisy': ['specialized', 10],
    rotation: ['structured', 4],
    location: ['structured', 16],
    count: ['structured', 4],
  };
  test('there are exactly the seven tasks of the protocol', () => expect(Object.keys(TASKS)).toEqual(Object.keys(expected)));

  test.each(Object.keys(expected))('%s: sizes, group, labels, pixel range, determinism', (name) => {
    const t = buildTask(name, { seed: 1 });
    const [group, classes] = expected[name]!;
    expect([t.name, t.group, t.classes]).toEqual([name, group, classes]);
    expect([t.train.n, t.val.n, t.test.n]).toEqual([800, 200, 1000]);
    for (const s of [t.train, t.val, t.test]) {
      expect(s.images.length).toBe(s.n * PIXELS);
      expect(s.labels.every((c) => c >= 0 && c < classes)).toBe(true);
      expect(s.images.every((v) => v >= 0 && v <= 1)).toBe(true);
    }
    // Every class shows up in training.
    expect(histogram(t.train.labels, classes).every((c) => c > 0)).toBe(true);
    const again = buildTask(name, { seed: 1 });
    expect(fingerprint(again.train)).toBe(fingerprint(t.train));
    expect(fingerprint(again.test)).toBe(fingerprint(t.test));
    expect(fingerprint(buildTask(name, { seed: 2 }).train)).not.toBe(fingerprint(t.train));
  });

  test('task sizes are options', () => {
    const t = buildTask('digits', { trainSize: 10, valSize: 5, testSize: 7 });
    expect([t.train.n, t.val.n, t.test.n]).toEqual([10, 5, 7]);
    expect(() => buildTask('digits', { testSize: 5000 })).toThrow('task: asked for 5000 images from a pool of 3000');
    expect(() => buildTask('nope')).toThrow("unknown task 'nope'; known: digits, fashion-coarse");
  });

  test('inverted digits have bright backgrounds; digits dark ones', () => {
    const mean = (s: ImageSet) => s.images.reduce((a, v) => a + v, 0) / s.images.length;
    expect(mean(buildTask('digits', { testSize: 10 }).train)).toBeLessThan(0.2);
    expect(mean(buildTask('digits-inverted', { testSize: 10 }).train)).toBeGreaterThan(0.8);
  });

  test('location: all ink lies in the labelled 7×7 cell', () => {
    const t = location({ testSize: 10 });
    for (let i = 0; i < 100; i++) {
      const cell = t.train.labels[i]!;
      const [r0, c0] = [Math.floor(cell / 4) * 7, (cell % 4) * 7];
      for (let k = 0; k < PIXELS; k++) {
        const [y, x] = [Math.floor(k / 28), k % 28];
        const inside = y >= r0 && y < r0 + 7 && x >= c0 && x < c0 + 7;
        if (!inside) expect(t.train.images[i * PIXELS + k]).toBe(0);
      }
    }
  });

  test('count: the number of inked 3×3-grid cells is the label + 1', () => {
    const t = count({ testSize: 10 });
    for (let i = 0; i < 100; i++) {
      let inked = 0;
      for (let cell = 0; cell < 9; cell++) {
        // The core of a cell (rows and columns 2…8 of its 9) holds only its own digit.
        let ink = 0;
        for (let y = 2; y < 9; y++) for (let x = 2; x < 9; x++) ink += t.train.images[i * PIXELS + (Math.floor(cell / 3) * 9 + y) * 28 + (cell % 3) * 9 + x]!;
        if (ink > 0.5) inked++;
      }
      expect(inked).toBe(t.train.labels[i]! + 1);
    }
  });
});

describe('augmentation', () => {
  const set = buildTask('digits', { trainSize: 16, valSize: 0, testSize: 1 }).train;
  test('two views per image, first views then second, labels repeated', () => {
    const v = twoViews(set, rng(0));
    expect(v.n).toBe(32);
    expect(Array.from(v.labels.subarray(16))).toEqual(Array.from(set.labels));
    expect(Array.from(v.labels.subarray(0, 16))).toEqual(Array.from(set.labels));
    expect(v.images.every((x) => x >= 0 && x <= 1)).toBe(true);
    // The two views of an image differ from each other and from the original.
    const a = v.images.subarray(0, PIXELS);
    const b = v.images.subarray(16 * PIXELS, 17 * PIXELS);
    expect(a.some((x, k) => x !== b[k])).toBe(true);
    expect(a.some((x, k) => x !== set.images[k])).toBe(true);
  });
  test('the same stream gives the same views', () => {
    expect(fingerprint(twoViews(set, rng(5)))).toBe(fingerprint(twoViews(set, rng(5))));
    expect(fingerprint(twoViews(set, rng(5)))).not.toBe(fingerprint(twoViews(set, rng(6))));
  });
});

describe('batches', () => {
  const set = buildTask('rotation', { trainSize: 50, valSize: 0, testSize: 1 }).train;
  test('cover every image once, in a seeded order, with the right tensors', () => {
    const seen: number[] = [];
    const sizes: number[] = [];
    for (const { x, y, indices } of batches(set, 16, { rng: rng(1) })) {
      expect(x.shape.slice(1)).toEqual([28, 28, 1]);
      expect(y.dtype).toBe('int32');
      expect(Array.from(y.dataSync())).toEqual(Array.from(indices, (i) => set.labels[i]));
      sizes.push(x.shape[0]!);
      seen.push(...indices);
    }
    expect(sizes).toEqual([16, 16, 16, 2]);
    expect([...seen].sort((a, b) => a - b)).toEqual([...Array(50).keys()]);
    const again = [...batches(set, 16, { rng: rng(1) })].map((b) => Array.from(b.indices));
    expect(again.flat()).toEqual(seen);
    expect([...batches(set, 16, { dropLast: true })].length).toBe(3);
    expect(() => [...batches(set, 0)]).toThrow('batches: batchSize must be a positive integer, got 0');
  });
  test('dispose their tensors, also when the loop breaks early', () => {
    const before = tf.memory().numTensors;
    for (const _ of batches(set, 8)) void _;
    expect(tf.memory().numTensors).toBe(before);
    for (const { x } of batches(set, 8)) {
      expect(x.isDisposed).toBe(false);
      break;
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
