// Any per-sample shape end to end, your own data, image folders, pluggable losses.
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';
import { describe, expect, test } from 'vitest';
import {
  addLora,
  batches,
  cnn,
  crossEntropy,
  dataSet,
  evaluate,
  evaluateLoss,
  fineTune,
  gps,
  gradient,
  loraMask,
  magnitude,
  meanSquaredError,
  mlp,
  neuron,
  resizeDataSet,
  resizeImage,
  rng,
  scoresOf,
  select,
  selectionEnv,
  sensitivity,
  ConfigError,
  DataError,
  ShapeError,
  SparsetuneError,
  splitDataSet,
  summarize,
  twoViews,
  vit,
  type DataSet,
  type Tensor,
} from '../src/index.js';
import { loadImageFolder } from '../src/node/index.js';

/** `n` seeded samples of `shape` in [0, 1] with `classes` classes whose mean differs. */
function synthetic<const S extends readonly number[]>(shape: S, n: number, classes: number, seed = 0): DataSet<S> {
  const r = rng(seed);
  const per = shape.reduce((p, d) => p * d, 1);
  const images = new Float32Array(n * per);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % classes;
    for (let k = 0; k < per; k++) images[i * per + k] = Math.min(1, Math.max(0, 0.2 + (0.6 * labels[i]!) / classes + 0.1 * r.normal()));
  }
  return dataSet({ images, labels, shape, classes });
}

const quiet = { progressBar: false } as const;

describe('any sample shape, end to end', () => {
  test('a ViT on 16×16×3 images: GPS selection, fine-tuning, evaluation', () => {
    const model = vit({ input: [16, 16, 3], patch: 4, width: 16, depth: 1, heads: 2, classes: 3 });
    const params = model.init(0);
    const data = synthetic([16, 16, 3], 24, 3);
    const mask = select(gps({ k: 1 }), selectionEnv({ model, params, data }));
    const out = fineTune({ model, params, mask, train: data, val: data, epochs: 2, batchSize: 8, ...quiet });
    expect(out.history).toHaveLength(2);
    expect(out.history[1]!.valAccuracy).toBeGreaterThanOrEqual(0);
    expect(Number.isFinite(out.history[1]!.loss)).toBe(true);
    expect(evaluate(model, out.params, data)).toBe(out.history[1]!.valAccuracy);
  });

  test('an MLP on feature vectors [20]: GPS (SupCon on dropout+noise views) and sensitivity, fine-tuning', () => {
    const model = mlp({ input: [20], hidden: [16, 8], classes: 2 });
    const params = model.init(1);
    const data = synthetic([20], 32, 2, 1);
    const env = selectionEnv({ model, params, data });
    const mask = select(gps({ k: 1 }), env);
    expect(Object.values(scoresOf(env, gradient())).every((s) => s.every(Number.isFinite))).toBe(true);
    expect(Object.values(scoresOf(env, sensitivity({ samples: 16 }))).some((s) => s.some((v) => v > 0))).toBe(true);
    const before = evaluate(model, params, data);
    const out = fineTune({ model, params, mask, train: data, epochs: 5, batchSize: 8, learningRate: 1e-2, ...quiet });
    expect(out.history[4]!.loss).toBeLessThan(out.history[0]!.loss);
    expect(evaluate(model, out.params, data)).toBeGreaterThanOrEqual(before);
  });

  test('a CNN on 12×10×2 images and LoRA on a ViT at 16×16×3 train', () => {
    const c = cnn({ input: [12, 10, 2], channels: [4], features: 6, classes: 2 });
    const data = synthetic([12, 10, 2], 8, 2);
    const out = fineTune({ model: c, params: c.init(0), mask: neuron(1, gradient({ loss: 'ce' })), train: data, epochs: 1, batchSize: 4, ...quiet });
    expect(out.history).toHaveLength(1);
    const model = vit({ input: [16, 16, 3], patch: 8, width: 8, depth: 1, heads: 2, classes: 3 });
    const lora = addLora(model, model.init(0), ['blocks.0.attn.qkv.kernel'], { rank: 2 });
    const rgb = synthetic([16, 16, 3], 6, 3);
    const plan = select(gps({ k: 1 }), selectionEnv({ model, params: lora.params, data: rgb, spec: model.spec }));
    const tuned = fineTune({ model: lora.model, params: lora.params, mask: loraMask(lora, plan), train: rgb, epochs: 1, batchSize: 3, ...quiet });
    expect(tuned.params['blocks.0.attn.qkv.kernel.lora_b']).toBeDefined();
  });

  test('data that do not fit the model: a ShapeError naming both shapes', () => {
    const model = vit({ input: [16, 16, 3], patch: 4, width: 8, depth: 1, heads: 2, classes: 3 });
    const params = model.init(0);
    const wrong = synthetic([28, 28, 1], 4, 3) as DataSet; // a shape known only at run time
    const message = 'samples of shape [28, 28, 1] do not fit the model\'s input [16, 16, 3]';
    expect(() => fineTune({ model, params, mask: gps({ k: 1 }), train: wrong, ...quiet })).toThrow(ShapeError);
    expect(() => fineTune({ model, params, mask: gps({ k: 1 }), train: wrong, ...quiet })).toThrow(message);
    expect(() => selectionEnv({ model, params, data: wrong })).toThrow(message);
    expect(() => evaluate(model, params, wrong)).toThrow(message);
    const vectors = synthetic([20], 4, 2) as DataSet;
    expect(() => fineTune({ model: mlp({ input: [21], hidden: [4], classes: 2 }), params: {}, mask: gps({ k: 1 }), train: vectors, ...quiet })).toThrow(
      'samples of shape [20] do not fit the model\'s input [21]',
    );
    // A set whose arrays disagree with its own shape is malformed data, refused before the fit is even asked.
    const lying = { ...synthetic([4], 3, 2), shape: [5] } as DataSet;
    expect(() => fineTune({ model: mlp({ input: [5], hidden: [4], classes: 2 }), params: {}, mask: gps({ k: 1 }), train: lying, ...quiet })).toThrow(DataError);
  });

  test('batches of any shape: [B, ...shape] samples, int32 classes or float32 [B, T] targets', () => {
    const data = synthetic([3, 2, 5], 7, 2);
    const shapes = [...batches(data, 3)].map((b) => [b.x.shape, b.y.shape, b.y.dtype]);
    expect(shapes).toEqual([
      [[3, 3, 2, 5], [3], 'int32'],
      [[3, 3, 2, 5], [3], 'int32'],
      [[1, 3, 2, 5], [1], 'int32'],
    ]);
    const reg = dataSet({ images: new Float32Array(8), labels: new Float32Array([1, 2, 3, 4, 5, 6]), shape: [4] });
    const got = [];
    for (const b of batches(reg, 2)) got.push({ shape: b.y.shape, dtype: b.y.dtype, values: Array.from(b.y.dataSync()) });
    expect(got[0]).toEqual({ shape: [2, 3], dtype: 'float32', values: [1, 2, 3, 4, 5, 6] });
  });

  test('augmentation: any image size and channel count; feature vectors get no spatial options; other ranks are refused', () => {
    const rgb = synthetic([9, 7, 3], 3, 3);
    const views = twoViews(rgb, rng(0));
    expect(views.n).toBe(6);
    expect(views.shape).toEqual([9, 7, 3]);
    expect(views.images.every((v) => v >= 0 && v <= 1)).toBe(true);
    expect(Array.from(twoViews(rgb, rng(0)).images)).toEqual(Array.from(views.images));
    const vec = synthetic([6], 2, 2);
    expect(twoViews(vec, rng(0), { featureDropout: 0, noise: 0 }).images).toEqual(Float32Array.from([...vec.images, ...vec.images]));
    expect(() => twoViews(vec, rng(0), { maxShift: 2 })).toThrow('maxShift apply to images [H, W, C], not to feature vectors of shape [6]');
    expect(() => twoViews(synthetic([4, 4], 2, 2), rng(0))).toThrow(ShapeError);
  });
});

describe('your own data', () => {
  test('dataSet validates counts, finiteness, integer labels and their range; copies its inputs', () => {
    const images = new Float32Array(12);
    expect(() => dataSet({ images, labels: [0, 1], shape: [5] })).toThrow('12 values are not a whole number of samples of shape [5]');
    expect(() => dataSet({ images, labels: [0, 1], shape: [4] })).toThrow('expected 3 labels (one per sample of shape [4]), got 2');
    expect(() => dataSet({ images: Float32Array.of(0, Number.NaN, 0, 0), labels: [0, 1], shape: [2] })).toThrow('images value NaN of sample 0 is not finite');
    expect(() => dataSet({ images, labels: [0, 1.5, 2], shape: [4] })).toThrow('label 1.5 at index 1 is not an integer class');
    expect(() => dataSet({ images, labels: [0, 3, 2], shape: [4], classes: 3 })).toThrow('label 3 at index 1 is outside [0, 3)');
    expect(() => dataSet({ images, labels: Float32Array.of(1, Infinity, 2), shape: [4] })).toThrow('regression target Infinity at index 1 is not finite');
    expect(() => dataSet({ images, labels: [0, 1, 2] })).toThrow('give shape');
    const set = dataSet({ images, labels: [2, 0, 2], shape: [2, 2, 1], classes: 3 });
    images[0] = 9;
    expect(set.images[0]).toBe(0);
    expect(summarize(set)).toMatchObject({ n: 3, shape: [2, 2, 1], classes: 3, counts: [1, 0, 2], text: '3 samples of shape [2, 2, 1], 3 classes: 0: 1, 1: 0, 2: 2' });
    expect(summarize(set, ['a', 'b', 'c']).text).toBe('3 samples of shape [2, 2, 1], 3 classes: a 1, b 0, c 2');
  });

  test('dataSet from tensors: the shape comes from the tensor, the dtype decides classes or targets', () => {
    const x = tf.ones([4, 3, 3, 2]);
    const set = dataSet({ images: x, labels: tf.tensor1d([0, 1, 1, 0], 'int32') });
    expect(set.shape).toEqual([3, 3, 2]);
    expect(set.labels).toBeInstanceOf(Int32Array);
    const reg = dataSet({ images: x, labels: tf.zeros([4, 2]) });
    expect(reg.labels).toBeInstanceOf(Float32Array);
    expect(summarize(reg).text).toBe('4 samples of shape [3, 3, 2], 2 regression targets each');
    expect(() => dataSet({ images: x, labels: [0, 1, 1, 0], shape: [9, 2] })).toThrow('a tensor of shape [4, 3, 3, 2] does not hold samples of shape [9, 2]');
    expect(() => dataSet({ images: x, labels: tf.zeros([3], 'int32') })).toThrow('a tensor of shape [3] for 4 samples (expected [4])');
    expect(() => dataSet({ images: x, labels: tf.zeros([4, 2], 'int32') })).toThrow('expected [4])');
    x.dispose();
  });

  test('splitDataSet: fractions or counts, disjoint, seeded', () => {
    const set = synthetic([2], 20, 2);
    const a = splitDataSet(set, { val: 0.25, test: 3, seed: 4 });
    expect([a.train.n, a.val.n, a.test.n]).toEqual([12, 5, 3]);
    expect(splitDataSet(set, { val: 0.25, test: 3, seed: 4 }).val.images).toEqual(a.val.images);
    expect(() => splitDataSet(set, { val: 15, test: 6 })).toThrow('take more than the 20 samples');
  });

  test('resizeImage: constants stay constant; area averages; bilinear keeps the same size exact', () => {
    const flat = new Float32Array(6 * 8 * 3).fill(0.25);
    for (const m of ['area', 'bilinear'] as const) expect(resizeImage(flat, [6, 8, 3], [4, 5], m).every((v) => Math.abs(v - 0.25) < 1e-6)).toBe(true);
    expect(Array.from(resizeImage(Float32Array.of(0, 1, 1, 0), [2, 2, 1], [1, 1], 'area'))).toEqual([0.5]);
    const img = Float32Array.from({ length: 12 }, (_, i) => i / 12);
    expect(resizeImage(img, [2, 3, 2], [2, 3], 'bilinear')).toEqual(img);
  });

  test('resizeDataSet: every image resized, grey repeated into each channel, labels copied; bad shapes named', () => {
    const grey = dataSet({ images: Float32Array.from({ length: 3 * 4 * 4 }, (_, i) => (i % 7) / 7), labels: [2, 0, 1], shape: [4, 4, 1] });
    const rgb = resizeDataSet(grey, [2, 2, 3]);
    const typed: DataSet<readonly [2, 2, 3]> = rgb;
    expect([typed.n, typed.shape]).toEqual([3, [2, 2, 3]]);
    expect(Array.from(rgb.labels)).toEqual([2, 0, 1]);
    expect(rgb.labels).not.toBe(grey.labels);
    for (let i = 0; i < 3; i++) {
      const one = resizeImage(grey.images.subarray(16 * i, 16 * (i + 1)), [4, 4, 1], [2, 2], 'area');
      for (let p = 0; p < 4; p++) for (let ch = 0; ch < 3; ch++) expect(rgb.images[12 * i + 3 * p + ch]).toBe(one[p]);
    }
    // Same channels: each image exactly as resizeImage makes it.
    const colour = dataSet({ images: Float32Array.from({ length: 2 * 3 * 3 * 2 }, (_, i) => i / 36), labels: [0, 1], shape: [3, 3, 2] });
    const big = resizeDataSet(colour, [5, 4, 2], 'bilinear');
    expect(big.images.subarray(40)).toEqual(resizeImage(colour.images.subarray(18), [3, 3, 2], [5, 4], 'bilinear'));
    expect(() => resizeDataSet(colour, [3, 3, 3])).toThrow(ShapeError);
    expect(() => resizeDataSet(synthetic([5], 2, 2), [2, 2, 1])).toThrow('are not [H, W, C] images');
  });

  test('loadImageFolder: classes sorted by folder name, PNG and JPEG, resized, reported', () => {
    const root = mkdtempSync(join(tmpdir(), 'sparsetune-folder-'));
    const write = (cls: string, file: string, w: number, h: number, rgb: [number, number, number]) => {
      mkdirSync(join(root, cls), { recursive: true });
      const data = Buffer.alloc(w * h * 4);
      for (let p = 0; p < w * h; p++) data.set([...rgb, 255], 4 * p);
      const bytes = file.toLowerCase().endsWith('.png') ? pngjs.PNG.sync.write(Object.assign(new pngjs.PNG({ width: w, height: h }), { data })) : jpeg.encode({ width: w, height: h, data }, 100).data;
      writeFileSync(join(root, cls, file), bytes);
    };
    write('zebra', 'b.png', 10, 6, [255, 0, 0]);
    write('zebra', 'a.jpg', 20, 20, [0, 0, 255]);
    write('ant', 'x.PNG', 4, 4, [0, 255, 0]);
    writeFileSync(join(root, 'ant', 'notes.txt'), 'not an image');
    const folder = loadImageFolder(root, { size: [8, 8] });
    expect(folder.classes).toEqual(['ant', 'zebra']);
    expect(folder.files).toEqual([join('ant', 'x.PNG'), join('zebra', 'a.jpg'), join('zebra', 'b.png')]);
    expect(Array.from(folder.set.labels)).toEqual([0, 1, 1]);
    expect(folder.set.shape).toEqual([8, 8, 3]);
    const px = (i: number) => Array.from(folder.set.images.subarray(i * 192, i * 192 + 3)).map((v) => Math.round(v * 255));
    expect(px(0)).toEqual([0, 255, 0]);
    expect(px(2)).toEqual([255, 0, 0]);
    expect(px(1)[2]).toBeGreaterThan(240); // JPEG is lossy
    expect(folder.summary.text).toBe('3 samples of shape [8, 8, 3], 2 classes: ant 1, zebra 2');
    const grey = loadImageFolder(root, { size: [2, 3], channels: 1, resize: 'bilinear' });
    expect(grey.set.shape).toEqual([2, 3, 1]);
    expect(grey.set.images[0]).toBeCloseTo(0.587, 5);
    mkdirSync(join(root, 'empty'));
    expect(() => loadImageFolder(root, { size: [8, 8] })).toThrow("class folder 'empty' holds no .png, .jpg or .jpeg file");
  });
});

describe('pluggable losses', () => {
  const model = mlp({ input: [4], hidden: [8], classes: 2 });
  const params = model.init(0);
  const mask = select(neuron(4, magnitude()), selectionEnv({ model, params }));
  const r = rng(5);
  const n = 32;
  const images = Float32Array.from({ length: n * 4 }, () => r.normal());
  // Regression targets: two linear functions of the inputs, n × 2.
  const targets = Float32Array.from({ length: n * 2 }, (_, k) => {
    const x = images.subarray(Math.floor(k / 2) * 4, Math.floor(k / 2) * 4 + 4);
    return k % 2 === 0 ? x[0]! - x[1]! : 0.5 * x[2]! + x[3]!;
  });
  const reg = dataSet({ images, labels: targets, shape: [4] });
  const cls = dataSet({ images, labels: Int32Array.from({ length: n }, (_, i) => (images[i * 4]! > 0 ? 1 : 0)), shape: [4], classes: 2 });

  test('regression with mean-squared error on float32 targets [n, T]: the loss falls, validation reports valLoss, keepBest uses it', () => {
    const before = evaluateLoss(model, params, reg, meanSquaredError);
    const out = fineTune({ model, params, mask, train: reg, val: reg, loss: meanSquaredError, epochs: 6, batchSize: 8, learningRate: 1e-2, keepBest: true, ...quiet });
    const losses = out.history.map((h) => h.valLoss!);
    expect(out.history.every((h) => h.valAccuracy === undefined)).toBe(true);
    expect(Math.min(...losses)).toBeLessThan(before);
    expect(out.epoch).toBe(losses.indexOf(Math.min(...losses)) + 1);
    expect(evaluateLoss(model, out.params, reg, meanSquaredError)).toBeCloseTo(Math.min(...losses), 4);
    expect(() => evaluate(model, params, reg)).toThrow('accuracy needs int32 class labels');
  });

  test('regression targets need a loss and as many targets as model outputs; selection losses need classes', () => {
    expect(() => fineTune({ model, params, mask, train: reg, ...quiet })).toThrow('give a loss for them');
    const three = mlp({ input: [4], hidden: [8], classes: 3 });
    expect(() => fineTune({ model: three, params: three.init(0), mask: gps({ k: 1 }), train: reg, loss: meanSquaredError, ...quiet })).toThrow(
      "2 regression targets per sample do not match the model's 3 outputs",
    );
    expect(() => select(gps({ k: 1 }), selectionEnv({ model, params, data: reg }))).toThrow('need int32 class labels');
  });

  test("a user's own loss is what trains; cross-entropy stays the default; labelSmoothing belongs to the default", () => {
    const seen: number[] = [];
    const ce = (logits: Tensor<readonly ['B', number]>, labels: tf.Tensor) => crossEntropy(logits, labels as Tensor<readonly ['B']>);
    const mine = fineTune({ model, params, mask, train: cls, epochs: 1, batchSize: 8, loss: ce, onStep: (p) => seen.push(p.loss), ...quiet });
    const dflt = fineTune({ model, params, mask, train: cls, epochs: 1, batchSize: 8, ...quiet });
    expect(mine.history[0]!.loss).toBe(dflt.history[0]!.loss);
    const first: number[] = [];
    fineTune({ model, params, mask, train: cls, epochs: 1, batchSize: 8, loss: (l, y) => tf.mul(ce(l, y), 2), onStep: (p) => first.push(p.loss), ...quiet });
    // Same parameters and batch at the first step: twice the loss.
    expect(first[0]).toBeCloseTo(2 * seen[0]!, 5);
    expect(() => fineTune({ model, params, mask, train: cls, loss: ce, labelSmoothing: 0.1, ...quiet })).toThrow('labelSmoothing applies to the default');
    expect(() => fineTune({ model, params, mask, train: cls, loss: (l) => tf.sum(l, 1), batchSize: 8, ...quiet })).toThrow('fineTune: the loss must return a scalar, got shape [8]');
  });
});

test('bad data and bad configs are named SparsetuneErrors, not bare RangeErrors', () => {
  const kinds: [() => unknown, typeof DataError | typeof ConfigError][] = [
    [() => dataSet({ images: new Float32Array(4 * 2), labels: [0, 1, 2, 5], shape: [2], classes: 3 }), DataError],
    [() => dataSet({ images: new Float32Array(2 * 2), labels: [0, 0.5], shape: [2] }), DataError],
    [() => dataSet({ images: Float32Array.from([0, NaN]), labels: [0], shape: [2] }), DataError],
    // A compile error too; from JavaScript, a named one at run time.
    // @ts-expect-error 3 heads do not divide width 10
    [() => vit({ input: [8, 8, 1], patch: 4, width: 10, depth: 1, heads: 3, classes: 2 }), ConfigError],
    [() => vit({ input: [10, 10, 1], patch: 4, width: 8, depth: 1, heads: 2, classes: 2 }), ConfigError],
    [() => mlp({ input: [3], hidden: [], classes: 2 }), ConfigError],
    [() => loadImageFolder(mkdtempSync(join(tmpdir(), 'sparsetune-empty-')), { size: [4, 4] }), DataError],
    [() => (loadImageFolder as (root: string) => unknown)(tmpdir()), ConfigError],
  ];
  for (const [f, kind] of kinds) {
    const e = (() => {
      try {
        f();
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(kind);
    expect(e).toBeInstanceOf(SparsetuneError);
  }
});
