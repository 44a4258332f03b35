// A real pre-trained network from outside: nsfwjs's MobileNetV2 (a Keras 2
// LayersModel, 224×224×3). Imported, it predicts what stock tfjs predicts;
// its gradients run on wasm (where stock tfjs has no conv/depthwise backprop
// kernels); built for 96×96, the library's own GPS selects from it on digits
// resized to RGB, fineTune tunes it, the delta is saved, and the tuned network
// goes back to a LayersModel.
import * as tfl from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  applyDelta,
  countMask,
  extractDelta,
  fineTune,
  gps,
  gradient,
  importLayersModel,
  loadDelta,
  neuron,
  randomUniform,
  replaceHead,
  resizeDataSet,
  rng,
  saveDelta,
  select,
  selectionEnv,
  toLayersModel,
  tree,
  type Imported,
  type Params,
  type Tensor,
} from '../src/index.js';
import { digits } from '../src/node/index.js';
import { loadNsfwMobileNetV2 } from './nsfw.js';

type Img = Tensor<readonly [number, 224, 224, 3]>;
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!;

/** A tiny two-class task: smooth dark images against bright striped ones, in [0, 1] as nsfwjs feeds them. */
function task(n: number, seed: number): { x: Img; y: tf.Tensor1D } {
  return tf.tidy(() => {
    const r = rng(seed);
    const half = n / 2;
    const dark = tf.mul(randomUniform(r.fork('dark'), [half, 224, 224, 3], 0, 1), 0.3);
    const stripes = tf.tile(tf.reshape(tf.mod(tf.range(0, 224), 16).greater(7).cast('float32'), [1, 1, 224, 1]), [half, 224, 1, 3]);
    const bright = tf.add(tf.mul(stripes, 0.5), tf.mul(randomUniform(r.fork('bright'), [half, 224, 224, 3], 0, 1), 0.5));
    return { x: tf.concat([dark, bright]) as unknown as Img, y: tf.tensor1d([...Array(n).keys()].map((i) => (i < half ? 0 : 1)), 'int32') };
  });
}

describe('nsfwjs MobileNetV2', () => {
  let keras: tfl.LayersModel;
  let imported: Imported<readonly [224, 224, 3], 128, 5>;
  beforeAll(async () => {
    keras = await loadNsfwMobileNetV2();
    imported = importLayersModel(keras);
  });

  test('imports every layer; predictions equal stock tfjs', () => {
    const { model, params } = imported;
    expect(model.input).toEqual([224, 224, 3]);
    expect([model.features, model.classes]).toEqual([128, 5]);
    expect(Object.keys(model.buffers).length).toBe(2 * 52);
    expect(Object.values(model.spec).filter((l) => l.role === 'kernel').length).toBe(35 + 17 + 2);
    const { x } = task(2, 1);
    expect(maxDiff(model.predict(params, x), keras.predict(x) as tf.Tensor)).toBeLessThan(1e-5);
  });

  test('its gradients equal tfjs cpu gradients on its first blocks (at 48×48, every weight trainable); stock tfjs cannot train it on wasm', async () => {
    // The first blocks of the real network — stem, two inverted residual blocks, the
    // residual Add — called on a smaller input, then a fresh 3-way head. The pre-trained
    // layers are shared with `keras`; tfjs's cpu reference costs ~20× less at 48×48.
    const input = tfl.input({ shape: [48, 48, 3] });
    const out = new Map<string, tfl.SymbolicTensor>([[keras.inputs[0]!.sourceLayer.name, input]]);
    for (const layer of keras.layers) {
      if (layer.getClassName() === 'InputLayer') continue;
      const inbound = layer.inboundNodes[0]!.inboundLayers.map((l) => out.get(l.name)!);
      out.set(layer.name, layer.apply(inbound.length === 1 ? inbound[0]! : inbound) as tfl.SymbolicTensor);
      if (layer.name === 'block_2_add') break;
    }
    const pooled = tfl.layers.globalAveragePooling2d({}).apply(out.get('block_2_add')!) as tfl.SymbolicTensor;
    const sub = tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 3 }).apply(pooled) as tfl.SymbolicTensor });
    const frozen = sub.layers.filter((l) => !l.trainable);
    for (const l of frozen) l.trainable = true;
    try {
      const { model, params } = importLayersModel(sub);
      const x = randomUniform(rng(5), [2, 48, 48, 3], 0, 1) as Tensor<readonly [number, 48, 48, 3]>;
      const w = randomUniform(rng(6), [2, 3], -1, 1);
      const ps = Object.keys(params);
      const ours = tf.grads((...ts: tf.Tensor[]) => tf.sum(tf.mul(model.predict(tree(ps.map((p, i) => [p, ts[i]!])), x), w)) as tf.Scalar)(ps.map((p) => params[p]!));
      const byLayer = model.kerasWeights(tree(ps.map((p, i) => [p, ours[i]!])));
      const vars = sub.trainableWeights.map((v) => v.read() as tf.Variable);
      expect(vars.length).toBe(ps.length);
      await tf.setBackend('cpu');
      try {
        const xc = tf.tensor(x.dataSync(), x.shape);
        const wc = tf.tensor(w.dataSync(), w.shape);
        const { grads } = tf.variableGrads(() => tf.sum(tf.mul(sub.apply(xc, { training: false }) as tf.Tensor, wc)), vars);
        for (const layer of sub.layers) {
          for (const v of layer.trainableWeights) {
            const mine = byLayer.get(layer.name)!.get(v.name.split('/').pop()!.replace(/_\d+$/, ''))!;
            const ref = grads[(v.read() as tf.Variable).name]!;
            const scale = Math.max(tf.max(tf.abs(ref)).dataSync()[0]!, 1e-12);
            expect(maxDiff(tf.tensor(mine.dataSync(), mine.shape), ref) / scale, v.name).toBeLessThan(1e-4);
          }
        }
      } finally {
        await tf.setBackend('wasm');
      }
      // Stock tfjs has no Conv2DBackpropFilter on wasm.
      expect(() => tf.variableGrads(() => tf.sum(sub.apply(x, { training: false }) as tf.Tensor), vars)).toThrow(/not registered for backend 'wasm'/);
    } finally {
      for (const l of frozen) l.trainable = false;
    }
  });

  test('at 96×96 on digits: GPS selects, fineTune tunes, the delta saves, and the tuned network goes back to tfjs', async () => {
    // The graph built for 96×96 (input resized, the final pool kept global), as the example and
    // bench/keras.ts use it; stock tfjs runs the same graph as the reference.
    const small = await loadNsfwMobileNetV2(96);
    const { model: backbone, params: pretrained } = importLayersModel<readonly [96, 96, 3], 128, 5>(small, { input: [96, 96, 3] });
    const train = resizeDataSet(digits({ trainSize: 8, valSize: 0, testSize: 1 }).train, [96, 96, 3], 'bilinear');
    const x = tf.tensor4d(train.images, [8, 96, 96, 3]) as unknown as Tensor<readonly [number, 96, 96, 3]>;
    expect(maxDiff(backbone.predict(pretrained, x), small.predict(x) as tf.Tensor)).toBeLessThan(1e-5);
    small.dispose();

    const model = backbone.withClasses(10);
    const base: Params = replaceHead(model, pretrained, 0);
    // The library's own GPS: SupCon on two augmented views, batches of 8 images (16 views).
    const mask = select(gps({ kernels: neuron(1, gradient({ batchSize: 8 })) }), selectionEnv({ model, params: base, data: train }));
    const report = countMask(mask);
    expect(report.trainable).toBeGreaterThan(0);
    expect(report.percent).toBeLessThan(5);
    const dw = 'layers.5.expanded_conv_depthwise.depthwise_kernel';
    // One connection per depthwise output channel: 32 of the 3·3·32 entries.
    expect(mask.bits[dw]!.reduce((s, b) => s + b, 0)).toBe(32);

    // Two masked AdamW steps on the same batch of 8 (one per epoch): the loss goes down.
    const { params: tuned, history } = fineTune({ model, params: base, mask, train, epochs: 2, batchSize: 8, learningRate: 1e-3, progressBar: false });
    expect(history[1]!.loss).toBeLessThan(history[0]!.loss);
    for (const p of Object.keys(base)) if (!mask.bits[p]!.some((b) => b === 1)) expect(tuned[p], p).toBe(base[p]);

    // The delta holds the selected entries alone and rebuilds the tuned weights.
    const bytes = saveDelta(extractDelta(model.spec, base, tuned, mask));
    // An index and a value per selected entry, plus a small header per leaf.
    expect(bytes.length).toBeLessThan(8 * report.trainable + 128 * Object.keys(model.spec).length);
    const rebuilt = applyDelta(model.spec, base, loadDelta(bytes));
    for (const p of Object.keys(tuned)) expect(maxDiff(rebuilt[p]!, tuned[p]!), p).toBe(0);

    // Back to tfjs: a LayersModel at 96×96 with a 10-way head that predicts what the tuned model does.
    const served = await toLayersModel(model, tuned);
    expect(served.inputs[0]!.shape).toEqual([null, 96, 96, 3]);
    expect(maxDiff(served.predict(x) as tf.Tensor, model.predict(tuned, x))).toBeLessThan(1e-5);
    served.dispose();
    model.dispose();
  });
});
