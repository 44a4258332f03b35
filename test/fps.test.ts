// FPS: the forward-only criterion |w| · mean |input|, checked against
// references computed here with plain loops, on every kind of kernel the
// models have (dense, stride-1 'same' conv, strided / 'valid' conv,
// depthwise, the fused q/k/v and the patch embedding), without a backward pass.
import * as tfl from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test, vi } from 'vitest';
import { ConfigError, dataSet, importLayersModel, paths, SpecError, type Params } from '../src/index.js';
import { buildTask } from '../src/node/index.js';
import { subset } from '../src/data/index.js';
import { cnn, defineModel, layers, mlp, vit } from '../src/models/index.js';
import { byRole, feedforward, fps, gps, neuron, only, scoresOf, select, selectionEnv } from '../src/selection/index.js';

const host = (t: tf.Tensor) => Array.from(t.dataSync());

/** Σ over images and output positions of |x| read by window offset (u, v), channel c, padding as zeros; divided by the reads. */
function windowMeans(x: number[], [b, h, w, c]: [number, number, number, number], [kh, kw]: [number, number], [sh, sw]: [number, number], padding: 'same' | 'valid'): number[] {
  const outH = padding === 'same' ? Math.ceil(h / sh) : Math.floor((h - kh) / sh) + 1;
  const outW = padding === 'same' ? Math.ceil(w / sw) : Math.floor((w - kw) / sw) + 1;
  const top = padding === 'same' ? Math.floor(Math.max((outH - 1) * sh + kh - h, 0) / 2) : 0;
  const left = padding === 'same' ? Math.floor(Math.max((outW - 1) * sw + kw - w, 0) / 2) : 0;
  const out: number[] = [];
  for (let u = 0; u < kh; u++)
    for (let v = 0; v < kw; v++)
      for (let ch = 0; ch < c; ch++) {
        let s = 0;
        for (let i = 0; i < b; i++)
          for (let oy = 0; oy < outH; oy++)
            for (let ox = 0; ox < outW; ox++) {
              const y = oy * sh + u - top;
              const xx = ox * sw + v - left;
              if (y >= 0 && y < h && xx >= 0 && xx < w) s += Math.abs(x[((i * h + y) * w + xx) * c + ch]!);
            }
        out.push(s / (b * outH * outW));
      }
  return out;
}

describe('feedforward criterion', () => {
  test('an MLP: score(i, j) = |W_ij| · mean over images of |input_i|, computed by hand', () => {
    const model = mlp({ input: [3], hidden: [4], classes: 2 });
    const params = model.init(1);
    const images = Float32Array.from([0.5, -1, 2, -0.25, 0, 1, 3, 1.5, -2]);
    const data = dataSet({ images, labels: [0, 1, 0], shape: [3] });
    // Batches of 2 over 3 images: the mean must still be over all 3.
    const s = scoresOf(selectionEnv({ model, params, data }), feedforward({ batchSize: 2 }));
    const [w1, b1, w2, b2] = ['layers.0.kernel', 'layers.0.bias', 'head.kernel', 'head.bias'].map((p) => host(params[p]!)) as [number[], number[], number[], number[]];
    const x = [...Array(3).keys()].map((i) => Array.from(images.subarray(3 * i, 3 * i + 3)));
    const hidden = x.map((row) => [...Array(4).keys()].map((j) => Math.max(0, b1[j]! + row.reduce((a, v, i) => a + v * w1[i * 4 + j]!, 0))));
    const meanAbs = (rows: number[][], i: number) => rows.reduce((a, r) => a + Math.abs(r[i]!), 0) / rows.length;
    expect(Array.from(s['layers.0.kernel']!)).toEqual(w1.map((w, k) => expect.closeTo(Math.abs(w) * meanAbs(x, Math.floor(k / 4)), 5)));
    expect(Array.from(s['head.kernel']!)).toEqual(w2.map((w, k) => expect.closeTo(Math.abs(w) * meanAbs(hidden, Math.floor(k / 2)), 5)));
    // A bias multiplies the constant 1.
    expect(Array.from(s['head.bias']!)).toEqual(b2.map((b) => expect.closeTo(Math.abs(b), 6)));
  });

  test("a CNN's stride-1 'same' conv: each window offset reads its own mean |input|, padding counting as zero", () => {
    const model = cnn({ input: [5, 5, 2], channels: [3], features: 4, classes: 2 });
    const params = model.init(2);
    const images = Float32Array.from({ length: 2 * 5 * 5 * 2 }, (_, i) => Math.sin(i * 1.7) * 2);
    const data = dataSet({ images, labels: [0, 1], shape: [5, 5, 2] });
    const s = scoresOf(selectionEnv({ model, params, data }), feedforward());
    const means = windowMeans(Array.from(images), [2, 5, 5, 2], [3, 3], [1, 1], 'same');
    const w = host(params['convs.0.kernel']!);
    expect(Array.from(s['convs.0.kernel']!)).toEqual(w.map((v, k) => expect.closeTo(Math.abs(v) * means[Math.floor(k / 3)]!, 5)));
    // A corner offset reads padding on one row and column out of five: it is not the plain channel mean.
    expect(means[0]).not.toBeCloseTo(means[4 * 2]!, 3);
  });

  test('an imported Keras graph: strided and valid convolutions, depthwise, pointwise and dense kernels, against the layers’ own activations', async () => {
    const input = tfl.input({ shape: [7, 7, 2] });
    const c1 = tfl.layers.conv2d({ filters: 3, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', name: 'c1' }).apply(input) as tfl.SymbolicTensor;
    const dw = tfl.layers.depthwiseConv2d({ kernelSize: 2, depthMultiplier: 2, padding: 'valid', name: 'dw' }).apply(c1) as tfl.SymbolicTensor;
    const pw = tfl.layers.conv2d({ filters: 4, kernelSize: 1, name: 'pw' }).apply(dw) as tfl.SymbolicTensor;
    const gap = tfl.layers.globalAveragePooling2d({}).apply(pw) as tfl.SymbolicTensor;
    const out = tfl.layers.dense({ units: 2, activation: 'softmax', name: 'fc' }).apply(gap) as tfl.SymbolicTensor;
    const keras = tfl.model({ inputs: input, outputs: out });
    const { model, params } = importLayersModel(keras);
    const images = Float32Array.from({ length: 3 * 7 * 7 * 2 }, (_, i) => Math.cos(i * 0.9) * 1.5);
    const data = dataSet({ images, labels: [0, 1, 1], shape: [7, 7, 2] });
    const s = scoresOf(selectionEnv({ model, params, data }), feedforward());
    // Every layer's input, from stock tfjs.
    const x = tf.tensor4d(images, [3, 7, 7, 2]);
    const acts = tfl.model({ inputs: input, outputs: [c1, dw, gap] }).predict(x) as tf.Tensor[];
    const [a1, a2, a3] = acts.map(host) as [number[], number[], number[]];
    const c1Means = windowMeans(Array.from(images), [3, 7, 7, 2], [3, 3], [2, 2], 'same');
    const dwMeans = windowMeans(a1, [3, 4, 4, 3], [2, 2], [1, 1], 'valid');
    const pwMeans = [...Array(6).keys()].map((ch) => a2.filter((_, i) => i % 6 === ch).reduce((a, v) => a + Math.abs(v), 0) / (3 * 3 * 3));
    const fcMeans = [...Array(4).keys()].map((ch) => a3.filter((_, i) => i % 4 === ch).reduce((a, v) => a + Math.abs(v), 0) / 3);
    const check = (path: string, means: number[], perEntry: number) =>
      expect(Array.from(s[path]!)).toEqual(host(params[path]!).map((v, k) => expect.closeTo(Math.abs(v) * means[Math.floor(k / perEntry)]!, 4)));
    // Leaves are named layers.<index>.<layer>.<weight>.
    const leafOf = (layer: string) => paths(model.spec).find((p) => p.includes(`.${layer}.`) && !p.endsWith('.bias'))!;
    check(leafOf('c1'), c1Means, 3);
    // Depthwise leaf [2, 2, 3·2]: entry (u, v, c·2 + m) reads channel c.
    check(leafOf('dw'), dwMeans, 2);
    check(leafOf('pw'), pwMeans, 4);
    check('head.kernel', fcMeans, 2);
    tf.dispose([x, ...acts]);
    model.dispose();
    keras.dispose();
  });

  test('the ViT: every kernel (patch embedding, fused q/k/v, projections, MLP, head) is tapped; no gradient is taken; no tensor is left', () => {
    const model = vit({ input: [28, 28, 1], patch: 7, width: 8, depth: 2, heads: 2, classes: 4 });
    const params = model.init(0);
    const data = subset(buildTask('rotation', { testSize: 1 }).train, [...Array(20).keys()]);
    const seen = new Set<string>();
    const x = tf.tensor4d(data.images.subarray(0, 2 * 784), [2, 28, 28, 1]);
    tf.tidy(() => {
      model.apply(params, x as never, { tap: ({ path }) => seen.add(path) });
    });
    x.dispose();
    expect([...seen].sort()).toEqual(paths(model.spec).filter((p) => model.spec[p]!.role === 'kernel' || model.spec[p]!.role === 'head').filter((p) => p.endsWith('kernel')).sort());
    const gradients = vi.spyOn(tf.engine(), 'gradients');
    const before = tf.memory().numTensors;
    const mask = select(fps({ k: 2 }), selectionEnv({ model, params, data, seed: 0 }));
    expect(gradients).not.toHaveBeenCalled();
    gradients.mockRestore();
    expect(tf.memory().numTensors).toBe(before);
    // GPS's shape: k per neuron in every kernel, biases and head whole, norms frozen.
    const reference = select(gps({ k: 2, kernels: only(byRole('kernel'), neuron(2, feedforward())) }), selectionEnv({ model, params, data, seed: 0 }));
    expect(mask.bits).toEqual(reference.bits);
    expect(mask.bits['blocks.0.mlp.fc1.kernel']!.reduce((a, b) => a + b, 0)).toBe(2 * 32);
    expect(mask.bits['blocks.0.norm1.scale']!.every((b) => b === 0)).toBe(true);
    expect(mask.bits['head.kernel']!.every((b) => b === 1)).toBe(true);
  });

  test('errors: no model or data, a kernel the forward pass never reports, bad options — and no tensor left behind', () => {
    const model = mlp({ input: [3], hidden: [2], classes: 2 });
    const params = model.init(0);
    const data = dataSet({ images: new Float32Array(6).fill(1), labels: [0, 1], shape: [3] });
    expect(() => scoresOf(selectionEnv({ spec: model.spec, params }), feedforward())).toThrow(SpecError);
    // A model of one's own whose forward does not call the tap.
    const silent = defineModel({ name: 'silent', config: {}, input: [3] as const, features: 2, backbone: layers.denseLeaves('fc', 3, 2), forward: (p, x) => layers.dense(p, 'fc', x as never) }, 2);
    const before = tf.memory().numTensors;
    expect(() => scoresOf(selectionEnv({ model: silent, params: silent.init(0), data }), feedforward())).toThrow("never tapped kernel 'fc.kernel'");
    // A throwing progress callback: the accumulators still go.
    const throwing = selectionEnv({ model, params, data, onProgress: () => { throw new Error('stop'); } });
    expect(() => scoresOf(throwing, feedforward({ batchSize: 1 }))).toThrow('stop');
    expect(tf.memory().numTensors).toBe(before + 4 /* silent.init's four leaves, its head's included */);
    expect(() => feedforward({ batchSize: 0 })).toThrow(ConfigError);
    expect(() => feedforward({ samples: 1.5 })).toThrow(ConfigError);
    void (params as Params);
  });
});
