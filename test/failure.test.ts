// What a user sees when something is wrong: named errors at the entry
// points before any state exists, a non-finite loss stopped or skipped, and
// no tensor left behind on any error path (errors thrown by the user's own
// callbacks propagate unchanged).
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  ConfigError,
  crc32,
  DataError,
  FormatError,
  leafSize,
  mapTree,
  MaskError,
  NonFiniteError,
  paths,
  SpecError,
  type Params,
} from '../src/index.js';
import { subset, type ImageSet } from '../src/data/index.js';
import { buildTask } from '../src/node/index.js';
import { mlp } from '../src/models/index.js';
import { loadCheckpoint, saveCheckpoint } from '../src/formats/index.js';
import { gps, maskOf, select, selectionEnv, countMask, type Mask } from '../src/selection/index.js';
import { adamw, clipByGlobalNorm, constant, evaluate, fineTune, momentum, scaleByAdam, scaleByLearningRate, sgd, warmupCosine, type GradientTransformation } from '../src/optim/index.js';
import { applyDelta, extractDelta, loadDelta, saveDelta, type Delta } from '../src/formats/index.js';

const model = mlp({ input: [28, 28, 1], hidden: [8], classes: 4 });
const params = model.init(0);
const task = buildTask('rotation', { trainSize: 48, valSize: 32, testSize: 10 });
const train: ImageSet = subset(task.train, [...Array(32).keys()]);
const val: ImageSet = subset(task.val, [...Array(16).keys()]);
const head = maskOf(model.spec, (l) => l.role === 'head');
const base = { model, params, mask: head, train, epochs: 1, batchSize: 16, progressBar: false } as const;

/** Runs `f`, which must throw, and returns the error; checks no tensor was left behind. */
function failsClean(f: () => unknown): unknown {
  const before = tf.memory().numTensors;
  let error: unknown;
  try {
    f();
  } catch (e) {
    error = e;
  }
  expect(error, 'expected an error').toBeDefined();
  expect(tf.memory().numTensors - before).toBe(0);
  return error;
}

const withPixel = (set: ImageSet, i: number, v: number): ImageSet => {
  const images = Float32Array.from(set.images);
  images[i] = v;
  return { ...set, images };
};

describe('data is checked at every entry point', () => {
  const bad: [string, ImageSet, RegExp][] = [
    ['a NaN pixel', withPixel(train, 7 * 784 + 3, NaN), /value 3 of sample 7 is NaN/],
    ['an infinite pixel', withPixel(train, 5, Infinity), /value 5 of sample 0 is Infinity/],
    ['an empty set', { images: new Float32Array(0), labels: new Int32Array(0), n: 0, shape: [28, 28, 1] }, /at least one sample/],
    ['images of the wrong size', { ...train, images: train.images.subarray(0, 31 * 784 + 100) }, /expected 32 samples of shape \[28, 28, 1\]/],
    ['fewer labels than images', { ...train, labels: train.labels.subarray(1) }, /expected 32 labels, got 31/],
    ['a label out of range', { ...train, labels: train.labels.map((c, i) => (i === 2 ? 4 : c)) }, /label 4 at index 2 is outside \[0, 4\)/],
    ['a negative label', { ...train, labels: train.labels.map((c, i) => (i === 0 ? -1 : c)) }, /label -1 at index 0/],
  ];
  test.each(bad)('fineTune refuses %s before any step', (_, set, message) => {
    let stepped = false;
    const e = failsClean(() => fineTune({ ...base, train: set, onStep: () => (stepped = true) }));
    expect(e).toBeInstanceOf(DataError);
    expect((e as Error).message).toMatch(message);
    expect(stepped).toBe(false);
    expect(() => fineTune({ ...base, val: set })).toThrow(DataError);
  });
  test.each(bad)('evaluate and selection refuse %s', (_, set, message) => {
    expect(() => evaluate(model, params, set)).toThrow(message);
    expect(() => evaluate(model, params, set)).toThrow(DataError);
    expect(() => selectionEnv({ model, params, data: set })).toThrow(DataError);
    // An environment built by hand is checked where the data is used.
    const env = { ...selectionEnv({ model, params }), data: set };
    expect(failsClean(() => select(gps({ k: 1 }), env))).toBeInstanceOf(DataError);
  });
});

describe('hyper-parameters are checked when the optimizer or loop is built', () => {
  test.each([NaN, Infinity, -1e-3, 0])('fineTune learningRate %s', (lr) => {
    expect(failsClean(() => fineTune({ ...base, learningRate: lr }))).toBeInstanceOf(ConfigError);
  });
  test('optimizer options', () => {
    expect(() => adamw(NaN)).toThrow(ConfigError);
    expect(() => adamw(-1e-3)).toThrow('learningRate must be a finite number > 0');
    expect(() => adamw(1e-3, { weightDecay: NaN })).toThrow('weightDecay must be a finite number ≥ 0, got NaN');
    expect(() => adamw(1e-3, { weightDecay: -1 })).toThrow(ConfigError);
    expect(() => scaleByAdam({ b1: 1 })).toThrow('scaleByAdam: b1 must be in [0, 1), got 1');
    expect(() => scaleByAdam({ b2: -0.1 })).toThrow(ConfigError);
    expect(() => scaleByAdam({ eps: 0 })).toThrow('scaleByAdam: eps must be a finite number > 0, got 0');
    expect(() => momentum(0.1, 1)).toThrow('trace: decay must be in [0, 1), got 1');
    expect(() => clipByGlobalNorm(NaN)).toThrow(ConfigError);
    expect(() => sgd(Infinity)).toThrow(ConfigError);
    expect(() => constant(NaN)).toThrow(ConfigError);
    expect(() => warmupCosine({ init: 0, peak: NaN, warmupSteps: 1, totalSteps: 10 })).toThrow('warmupCosine: peak must be a finite number, got NaN');
    expect(() => warmupCosine({ init: 0, peak: 1, warmupSteps: 11, totalSteps: 10 })).toThrow(ConfigError);
    expect(() => fineTune({ ...base, labelSmoothing: 1 })).toThrow(ConfigError);
    expect(() => fineTune({ ...base, epochs: 0 })).toThrow(ConfigError);
  });
  test('a schedule that goes non-finite is stopped at that step, leaving nothing behind', () => {
    const tx = scaleByLearningRate((step) => (step < 1 ? 1e-3 : NaN));
    const e = failsClean(() => fineTune({ ...base, optimizer: tx }));
    expect(e).toEqual(new ConfigError('learningRate: the schedule gave NaN at step 1; a learning rate must be finite and ≥ 0'));
  });
});

describe('masks', () => {
  test('bytes other than 0 and 1 are refused', () => {
    expect(() => maskOf(model.spec, (l, p) => (p === 'head.bias' ? Uint8Array.from([2, 0, 255, 1]) : false))).toThrow(
      new MaskError("maskOf: leaf 'head.bias': byte 0 is 2; mask bytes must be 0 (frozen) or 1 (trainable)"),
    );
    // A mask built by hand is checked where it is used.
    const forged: Mask = { spec: model.spec, bits: mapTree(head.bits, (b, p) => (p === 'head.bias' ? Uint8Array.from([1, 2, 0, 0]) : b)) };
    expect(failsClean(() => fineTune({ ...base, mask: forged }))).toBeInstanceOf(MaskError);
    const short: Mask = { spec: model.spec, bits: mapTree(head.bits, (b, p) => (p === 'head.bias' ? new Uint8Array(3) : b)) };
    expect(() => fineTune({ ...base, mask: short })).toThrow("fineTune: leaf 'head.bias': needs 4 entries, got 3");
    expect(() => countMask(maskOf(model.spec, () => true))).not.toThrow();
  });
  test('property: one bad byte anywhere, in a view at any byte offset, is found and named (the check reads four bytes at a time)', () => {
    const n = leafSize(model.spec['head.kernel']!);
    fc.assert(
      fc.property(fc.nat(n - 1), fc.integer({ min: 2, max: 255 }), fc.nat(7), fc.boolean(), (at, value, offset, ones) => {
        const bits = new Uint8Array(n + offset).subarray(offset);
        if (ones) bits.fill(1);
        bits[at] = value;
        expect(() => maskOf(model.spec, (l, p) => (p === 'head.kernel' ? bits : false))).toThrow(
          new MaskError(`maskOf: leaf 'head.kernel': byte ${at} is ${value}; mask bytes must be 0 (frozen) or 1 (trainable)`),
        );
        bits[at] = ones ? 1 : 0;
        expect(() => maskOf(model.spec, (l, p) => (p === 'head.kernel' ? bits : false))).not.toThrow();
      }),
    );
  });
});

/** Plain SGD whose `bad`-th call (0-based) gives a NaN update; counted outside the state, which a skipped step does not advance. */
function nanAt(bad: number): GradientTransformation {
  let calls = 0;
  return {
    init: () => ({}),
    update: (g, s) => {
      const factor = calls++ === bad ? NaN : -0.01;
      return [mapTree(g, (x) => tf.mul(x, factor)), s];
    },
  };
}

describe('a non-finite loss or update never becomes a silent NaN model', () => {
  test("'error' (the default) stops, naming the epoch and step, and leaves nothing behind", () => {
    // The NaN update of step 2 (0-based 1) makes the loss of step 3 NaN.
    const e = failsClean(() => fineTune({ ...base, epochs: 2, optimizer: nanAt(1) })) as NonFiniteError;
    expect(e).toBeInstanceOf(NonFiniteError);
    expect([e.epoch, e.step]).toEqual([2, 1]);
    expect(e.message).toMatch(/^fineTune: the loss is NaN at step 1 of epoch 2 \(step 3 overall\); that update was not applied/);
  });
  test("'error' catches a NaN update on the very last step too", () => {
    const e = failsClean(() => fineTune({ ...base, optimizer: nanAt(1) }));
    expect(e).toBeInstanceOf(NonFiniteError);
    expect((e as Error).message).toMatch(/parameters of epoch 1 are not finite/);
  });
  test("'skip' drops the bad update (as optax's apply_if_finite) and goes on; the result is finite", () => {
    const before = tf.memory().numTensors;
    const r = fineTune({ ...base, epochs: 2, optimizer: nanAt(1), nonFinite: 'skip' });
    expect(r.history.map((h) => h.skipped ?? 0)).toEqual([1, 0]);
    for (const p of paths(r.params)) expect(Array.from(r.params[p]!.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose(paths(r.params).filter((p) => r.params[p] !== params[p]).map((p) => r.params[p]!));
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('no tensor is left behind on any error path', () => {
  class Mine extends Error {}
  test.each(['onStep', 'onEpoch'] as const)('fineTune aborted by a throwing %s: the same error, nothing leaked', (where) => {
    for (const keepBest of [false, true]) {
      const mine = new Mine('stop');
      const e = failsClean(() => fineTune({ ...base, val, keepBest, epochs: 2, [where]: () => { throw mine; } }));
      expect(e).toBe(mine);
    }
  });
  test('selection aborted by a throwing onProgress: the same error, nothing leaked', () => {
    const mine = new Mine('stop');
    const env = selectionEnv({ model, params, data: train, onProgress: () => { throw mine; } });
    expect(failsClean(() => select(gps({ k: 1 }), env))).toBe(mine);
    expect(failsClean(() => fineTune({ ...base, mask: gps({ k: 1 }), onStep: () => { throw mine; } }))).toBe(mine);
  });
  test('failed loadCheckpoint, with and without a spec', () => {
    const bytes = saveCheckpoint(model.spec, params);
    const other = mlp({ input: [28, 28, 1], hidden: [9], classes: 4 });
    expect(failsClean(() => loadCheckpoint(bytes, other.spec))).toBeInstanceOf(SpecError);
    for (const cut of [bytes.length - 4, 30]) expect(failsClean(() => loadCheckpoint(bytes.slice(0, cut)))).toBeInstanceOf(FormatError);
    const flipped = bytes.slice();
    flipped[flipped.length - 1]! ^= 4;
    expect(failsClean(() => loadCheckpoint(flipped))).toBeInstanceOf(FormatError);
  });
  test('failed delta application changes and leaks nothing', () => {
    const tuned: Params = mapTree(params, (t) => tf.add(t, 1));
    const d = extractDelta(model.spec, params, tuned, head);
    const l = d.leaves['head.bias']!;
    const bad = (indices: number[], values = indices.map(() => 1)): Delta => ({ ...d, leaves: { ...d.leaves, 'head.bias': { indices: Int32Array.from(indices), values: Float32Array.from(values) } } });
    expect(failsClean(() => applyDelta(model.spec, params, bad([0, 9])))).toBeInstanceOf(FormatError);
    expect(failsClean(() => applyDelta(model.spec, params, bad([2, 1])))).toBeInstanceOf(FormatError);
    const other = model.init(1);
    expect(failsClean(() => applyDelta(model.spec, other, d))).toBeInstanceOf(SpecError);
    expect(l.indices.length).toBe(4);
  });
});

describe('deltas are checked on save and on load', () => {
  const tuned: Params = mapTree(params, (t) => tf.add(t, 1));
  const d = extractDelta(model.spec, params, tuned, head);
  const withLeaf = (path: string, indices: number[], values: number[]): Delta => ({ ...d, leaves: { ...d.leaves, [path]: { indices: Int32Array.from(indices), values: Float32Array.from(values) } } });
  test.each([
    ['duplicate indices', withLeaf('head.bias', [1, 1], [1, 2]), /indices must be strictly increasing, but index 1 at position 1 follows 1/],
    ['descending indices', withLeaf('head.bias', [2, 0], [1, 2]), /strictly increasing/],
    ['a negative index', withLeaf('head.bias', [-1], [1]), /strictly increasing, but index -1/],
    ['a NaN value', withLeaf('head.bias', [0], [NaN]), /value NaN at index 0 is not finite/],
    ['an infinite value', withLeaf('head.bias', [0], [Infinity]), /value Infinity at index 0 is not finite/],
    ['a constructor leaf', withLeaf('constructor', [0], [1]), /property of every JavaScript object/],
    ['a malformed leaf path', withLeaf('a..b', [0], [1]), /must be dot-separated names/],
  ])('saveDelta refuses %s', (_, delta, message) => {
    expect(() => saveDelta(delta)).toThrow(message);
    expect(() => saveDelta(delta)).toThrow(FormatError);
  });
  test('loadDelta refuses a file whose counts do not cover the payload, and null or incomplete headers, with a FormatError', () => {
    const bytes = saveDelta(d);
    const view = new DataView(bytes.buffer);
    const len = view.getUint32(12, true);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(20, 20 + len))) as Record<string, unknown>;
    const repack = (h: unknown) => {
      const json = new TextEncoder().encode(JSON.stringify(h));
      const out = new Uint8Array(20 + json.length + bytes.length - 20 - len);
      out.set(bytes.subarray(0, 20));
      const v = new DataView(out.buffer);
      v.setUint32(12, json.length, true);
      v.setUint32(16, crc32(json), true);
      out.set(json, 20);
      out.set(bytes.subarray(20 + len), 20 + json.length);
      return out;
    };
    const leaves = header['leaves'] as { count: number }[];
    expect(() => loadDelta(repack({ ...header, leaves: [{ ...leaves[0], count: leaves[0]!.count - 1 }, ...leaves.slice(1)] }))).toThrow(/the leaves hold \d+ entries \(\d+ bytes\) but the payload is \d+ bytes/);
    expect(() => loadDelta(repack(null))).toThrow('delta file: malformed header: expected a JSON object, got null');
    const { specHash: _, ...noHash } = header;
    expect(() => loadDelta(repack(noHash))).toThrow("delta file: malformed header: 'specHash' should be an unsigned 32-bit hash, got nothing (the field is missing)");
    expect(() => loadDelta(repack({ ...header, leaves: [{ path: '__proto__', count: 0, crc32: 0 }] }))).toThrow(FormatError);
    expect(() => loadDelta(repack({ ...header, leaves: 'x' }))).toThrow("'leaves' should be a list of leaves");
    expect(() => loadDelta(repack({ ...header, format: 3 }))).toThrow(/format 3 is not supported \(this build reads formats 1, 2\); a newer sparsetune wrote it/);
  });
});
