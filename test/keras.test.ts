// Keras / tfjs LayersModel import: per supported layer, the imported
// forward pass equals `predict`, its gradients equal tfjs's own on the cpu
// backend, and the way back to a LayersModel is bit-identical.
import * as tfl from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import {
  importLayersModel,
  KerasImportError,
  randomNormal,
  rng,
  saveLayersModel,
  SUPPORTED_LAYERS,
  toLayersModel,
  tree,
  writeLayersModelWeights,
  type ImportedModel,
  type Params,
  type Tensor,
} from '../src/index.js';
import { finiteDifferenceError } from './gradcheck.js';

const L = tfl.layers;
const r = rng(13);
let draws = 0;
const rand = (shape: number[], scale = 1) => tf.mul(randomNormal(r.fork(draws++), shape), scale);
type Sym = tfl.SymbolicTensor;

/** A functional model: an image input, the layers under test, then Flatten and a 3-way Dense head. */
function functional(shape: number[], body: (x: Sym) => Sym): tfl.LayersModel {
  const input = tfl.input({ shape });
  const h = body(input);
  const flat = h.shape.length > 2 ? (L.flatten().apply(h) as Sym) : h;
  return tfl.model({ inputs: input, outputs: L.dense({ units: 3 }).apply(flat) as Sym });
}
const on = (layer: tfl.layers.Layer, x: Sym | Sym[]) => layer.apply(x) as Sym;
const img = [6, 6, 2];

// tfjs's own gradient of this layer fails (its fused batchNorm saves the absent scale),
// so it is checked against finite differences instead.
const NO_SCALE = 'BatchNormalization without scale';

const cases: [string, () => tfl.LayersModel][] = [
  ['Dense (sequential, tanh, head with softmax)', () => tfl.sequential({ layers: [L.dense({ inputShape: [5], units: 4, activation: 'tanh' }), L.dense({ units: 3, activation: 'softmax' })] })],
  ['Dense without bias on a sequence [T, D]', () => functional([4, 5], (x) => on(L.dense({ units: 3, useBias: false, activation: 'relu' }), x))],
  ['Conv2D 3×3 same', () => functional(img, (x) => on(L.conv2d({ filters: 3, kernelSize: 3, padding: 'same', activation: 'relu' }), x))],
  ['Conv2D 3×3 valid stride 2', () => functional([7, 6, 2], (x) => on(L.conv2d({ filters: 3, kernelSize: 3, strides: 2 }), x))],
  ['Conv2D 1×1 (a dense product)', () => functional(img, (x) => on(L.conv2d({ filters: 4, kernelSize: 1, useBias: false }), x))],
  ['Conv2D 2×3 same stride [2, 1]', () => functional(img, (x) => on(L.conv2d({ filters: 2, kernelSize: [2, 3], strides: [2, 1], padding: 'same' }), x))],
  ['DepthwiseConv2D 3×3 same', () => functional(img, (x) => on(L.depthwiseConv2d({ kernelSize: 3, padding: 'same', activation: 'relu6' }), x))],
  ['DepthwiseConv2D multiplier 2, stride 2, no bias', () => functional([7, 7, 2], (x) => on(L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, strides: 2, useBias: false }), x))],
  ['SeparableConv2D', () => functional(img, (x) => on(L.separableConv2d({ filters: 3, kernelSize: 3, depthMultiplier: 2, padding: 'same', activation: 'sigmoid' }), x))],
  ['BatchNormalization', () => functional(img, (x) => on(L.batchNormalization({ epsilon: 1e-3 }), x))],
  [NO_SCALE, () => functional(img, (x) => on(L.batchNormalization({ scale: false }), x))],
  ['LayerNormalization', () => functional([4, 5], (x) => on(L.layerNormalization({ epsilon: 1e-5 }), x))],
  ...(['relu', 'relu6', 'sigmoid', 'tanh', 'softmax', 'softplus', 'softsign', 'swish', 'hardSigmoid', 'gelu', 'linear'] as const).map(
    (a) => [`Activation ${a}`, () => functional([5], (x) => on(L.activation({ activation: a }), on(L.dense({ units: 4 }), x)))] as (typeof cases)[number],
  ),
  ['ReLU with max_value (ReLU6)', () => functional(img, (x) => on(L.reLU({ maxValue: 0.5 }), x))],
  ['ReLU', () => functional(img, (x) => on(L.reLU({}), x))],
  // tfjs's Softmax layer defaults to axis 1, the last one only for vectors.
  ['Softmax', () => functional([5], (x) => on(L.softmax({}), on(L.dense({ units: 4 }), x)))],
  ['Add (residual)', () => functional(img, (x) => on(L.add(), [x, on(L.conv2d({ filters: 2, kernelSize: 3, padding: 'same' }), x)]))],
  ['Multiply', () => functional(img, (x) => on(L.multiply(), [x, on(L.conv2d({ filters: 2, kernelSize: 1, activation: 'sigmoid' }), x)]))],
  ['Concatenate (branches)', () => functional(img, (x) => on(L.concatenate(), [on(L.conv2d({ filters: 2, kernelSize: 3, padding: 'same' }), x), on(L.depthwiseConv2d({ kernelSize: 1 }), x)]))],
  ['MaxPooling2D', () => functional(img, (x) => on(L.maxPooling2d({ poolSize: 2 }), x))],
  ['MaxPooling2D 3×3 stride 2 same', () => functional([7, 7, 2], (x) => on(L.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }), x))],
  ['AveragePooling2D', () => functional(img, (x) => on(L.averagePooling2d({ poolSize: 2 }), x))],
  ['AveragePooling2D 3×3 stride 2 same', () => functional([7, 7, 2], (x) => on(L.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' }), x))],
  ['GlobalAveragePooling2D', () => functional(img, (x) => on(L.globalAveragePooling2d({}), x))],
  ['GlobalMaxPooling2D', () => functional(img, (x) => on(L.globalMaxPooling2d({}), x))],
  ['ZeroPadding2D', () => functional(img, (x) => on(L.conv2d({ filters: 2, kernelSize: 3, strides: 2 }), on(L.zeroPadding2d({ padding: [[0, 1], [1, 2]] }), x)))],
  ['Flatten', () => functional(img, (x) => on(L.flatten(), x))],
  ['Reshape', () => functional(img, (x) => on(L.reshape({ targetShape: [36, 2] }), x))],
  ['Dropout (inference)', () => functional(img, (x) => on(L.dropout({ rate: 0.5 }), x))],
  ['Rescaling', () => functional(img, (x) => on(L.rescaling({ scale: 1 / 127.5, offset: -1 }), x))],
  [
    'a layer called twice (shared weights)',
    () =>
      functional(img, (x) => {
        const shared = L.conv2d({ filters: 2, kernelSize: 3, padding: 'same', activation: 'tanh' });
        return on(L.add(), [on(shared, x), on(shared, on(L.conv2d({ filters: 2, kernelSize: 1 }), x))]);
      }),
  ],
  [
    'a MobileNetV2-style block',
    () =>
      functional([8, 8, 3], (x) => {
        const stem = on(L.reLU({ maxValue: 6 }), on(L.batchNormalization({}), on(L.conv2d({ filters: 4, kernelSize: 3, strides: 2, useBias: false }), on(L.zeroPadding2d({ padding: [[0, 1], [0, 1]] }), x))));
        const e = on(L.reLU({ maxValue: 6 }), on(L.batchNormalization({}), on(L.conv2d({ filters: 8, kernelSize: 1, useBias: false }), stem)));
        const d = on(L.reLU({ maxValue: 6 }), on(L.batchNormalization({}), on(L.depthwiseConv2d({ kernelSize: 3, padding: 'same', useBias: false }), e)));
        const p = on(L.batchNormalization({}), on(L.conv2d({ filters: 4, kernelSize: 1, useBias: false }), d));
        return on(L.globalAveragePooling2d({}), on(L.add(), [stem, p]));
      }),
  ],
];

/** Random BatchNormalization statistics and affine terms, so the layer under test does something. */
function randomiseBatchNorm(m: tfl.LayersModel): void {
  for (const layer of m.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    layer.setWeights(layer.weights.map((w) => (w.name.endsWith('variance') ? tf.add(tf.abs(rand(w.shape as number[])), 0.5) : rand(w.shape as number[], 0.5))));
  }
}

function inputFor(m: tfl.LayersModel, batch = 3): tf.Tensor {
  return rand([batch, ...(m.inputs[0]!.shape.slice(1) as number[])]);
}

/** max |a − b| over max(|b|, 1). */
function err(a: tf.Tensor, b: tf.Tensor): number {
  const x = a.dataSync();
  const y = b.dataSync();
  expect(a.shape).toEqual(b.shape);
  let num = 0;
  let den = 1;
  for (let k = 0; k < x.length; k++) {
    num = Math.max(num, Math.abs(x[k]! - y[k]!));
    den = Math.max(den, Math.abs(y[k]!));
  }
  return num / den;
}

/** tfjs's own gradients of sum(predict(x) · R) w.r.t. every trainable weight, on the cpu backend, by layer and weight name. */
async function cpuGradients(m: tfl.LayersModel, x: tf.Tensor, weight: tf.Tensor): Promise<Map<string, tf.Tensor>> {
  const previous = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    const vars = m.trainableWeights.map((w) => w.read() as tf.Variable);
    const xc = tf.tensor(x.dataSync(), x.shape);
    const wc = tf.tensor(weight.dataSync(), weight.shape);
    const { grads } = tf.variableGrads(() => tf.sum(tf.mul(m.apply(xc, { training: false }) as tf.Tensor, wc)), vars);
    return new Map(vars.map((v, i) => [m.trainableWeights[i]!.name, tf.tensor(grads[v.name]!.dataSync(), grads[v.name]!.shape)]));
  } finally {
    await tf.setBackend(previous);
  }
}

function sameBits(a: Params, b: Params): void {
  expect(Object.keys(a)).toEqual(Object.keys(b));
  for (const p of Object.keys(a)) {
    expect(a[p]!.shape, p).toEqual(b[p]!.shape);
    expect(Buffer.from(a[p]!.dataSync().buffer).equals(Buffer.from(b[p]!.dataSync().buffer)), p).toBe(true);
  }
}

describe.each(cases)('%s', (_name, make) => {
  const keras = make();
  randomiseBatchNorm(keras);
  const { model, params } = importLayersModel(keras);
  const x = inputFor(keras);

  test('forward equals LayersModel.predict', () => {
    const ours = model.predict(params, x as Tensor<readonly [number, ...number[]]>);
    expect(err(ours, keras.predict(x) as tf.Tensor)).toBeLessThan(1e-5);
    // apply's features and logits are the head's input and pre-activation output.
    const { features, logits } = model.apply(params, x as Tensor<readonly [number, ...number[]]>);
    expect(features.shape).toEqual([3, model.features]);
    expect(logits.shape).toEqual([3, model.classes]);
  });

  test('gradients equal tfjs gradients on cpu', async () => {
    const y = model.predict(params, x as Tensor<readonly [number, ...number[]]>);
    const w = rand(y.shape);
    const paths = Object.keys(params);
    const f = (...ts: tf.Tensor[]) => model.predict(tree(paths.map((p, i) => [p, ts[i]!])), x as Tensor<readonly [number, ...number[]]>);
    if (_name === NO_SCALE) {
      expect(finiteDifferenceError(f, paths.map((p) => params[p]!))).toBeLessThan(1e-3);
      return;
    }
    const ours = tf.grads((...ts: tf.Tensor[]) => tf.sum(tf.mul(f(...ts), w)) as tf.Scalar)(paths.map((p) => params[p]!));
    const keras_ = model.kerasWeights(tree(paths.map((p, i) => [p, ours[i]!])));
    const ref = await cpuGradients(keras, x, w);
    expect(ref.size).toBe(paths.length);
    for (const layer of keras.layers) {
      for (const v of layer.trainableWeights) {
        const mine = keras_.get(layer.name)!.get(v.name.split('/').pop()!)!;
        expect(err(mine, ref.get(v.name)!), v.name).toBeLessThan(1e-4);
      }
    }
  });

  test('round trip to a LayersModel and back is bit-identical', async () => {
    const back = await toLayersModel(model, params);
    const again = importLayersModel(back);
    sameBits(again.params, params);
    sameBits(again.model.buffers, model.buffers);
    expect(err(back.predict(x) as tf.Tensor, keras.predict(x) as tf.Tensor)).toBe(0);
    back.dispose();
  });
});

describe('the importer', () => {
  const keras = cases.at(-1)![1]();
  randomiseBatchNorm(keras);
  const { model, params } = importLayersModel(keras);

  test('gives every weight a role and a neuron axis; moving statistics are buffers', () => {
    const roles = Object.fromEntries(Object.entries(model.spec).map(([p, l]) => [p, `${l.role}:${l.neuronAxis}:[${l.shape.join(',')}]`]));
    expect(roles['head.kernel']).toBe('head:1:[4,3]');
    expect(roles['head.bias']).toBe('head:0:[3]');
    const depthwise = Object.entries(model.spec).find(([p]) => p.endsWith('.depthwise_kernel'))!;
    // [3, 3, 8, 1] in Keras; each of the 8 output channels is a neuron with a 3×3 fan-in.
    expect(depthwise[1]).toMatchObject({ shape: [3, 3, 8], role: 'kernel', neuronAxis: 2 });
    expect(Object.values(model.spec).filter((l) => l.role === 'norm').length).toBe(8);
    expect(Object.keys(model.buffers).every((p) => /moving_(mean|variance)$/.test(p))).toBe(true);
    expect(Object.keys(model.buffers).length).toBe(8);
    // Paths carry the layer's index, so tree order is depth order.
    expect(Object.keys(model.spec).filter((p) => p !== 'head.kernel' && p !== 'head.bias')[0]).toMatch(/^layers\.2\.conv2d_/);
  });

  test('Dropout drops in training mode only, reproducibly from the rng', () => {
    const m = functional([16], (x) => on(L.dropout({ rate: 0.5 }), x));
    const { model: dm, params: dp } = importLayersModel(m);
    const x = tf.add(tf.abs(rand([2, 16])), 0.1) as Tensor<readonly [number, 16]>;
    const ref = dm.predict(dp, x);
    const a = dm.predict(dp, x, { training: true, rng: rng(1) });
    expect(err(a, ref)).toBeGreaterThan(1e-3);
    expect(err(dm.predict(dp, x, { training: true, rng: rng(1) }), a)).toBe(0);
    expect(() => dm.predict(dp, x, { training: true })).toThrow(/rng/);
  });

  test('lists every unknown layer by class and name before building anything', () => {
    const input = tfl.input({ shape: [4, 3] });
    const a = on(L.lstm({ units: 2, name: 'my_lstm' }), input);
    const b = on(L.dense({ units: 2 }), on(L.repeatVector({ n: 2, name: 'rep' }), a));
    const m = tfl.model({ inputs: input, outputs: on(L.dense({ units: 2 }), on(L.flatten(), b)) });
    expect(() => importLayersModel(m)).toThrow(KerasImportError);
    expect(() => importLayersModel(m)).toThrow(/LSTM 'my_lstm', RepeatVector 'rep'/);
    expect(SUPPORTED_LAYERS).toContain('Rescaling');
  });

  test('unsupported configs and heads are named errors', () => {
    const dil = functional(img, (x) => on(L.conv2d({ filters: 2, kernelSize: 3, dilationRate: 2, name: 'dilated' }), x));
    expect(() => importLayersModel(dil)).toThrow(/Conv2D 'dilated': dilation_rate/);
    const onSeq = functional([4, 5], (x) => on(L.dense({ units: 3, name: 'seq_head' }), x));
    expect(() => importLayersModel(onSeq, { head: 'seq_head' })).toThrow(/one vector per sample/);
    expect(() => importLayersModel(onSeq, { head: 'nope' })).toThrow(/not a Dense layer/);
  });

  test('options.head picks another Dense layer; what follows it runs in predict', () => {
    const input = tfl.input({ shape: [5] });
    const h = on(L.dense({ units: 4, name: 'classifier' }), input);
    const m = tfl.model({ inputs: input, outputs: on(L.dense({ units: 2, name: 'calibration' }), on(L.activation({ activation: 'tanh' }), h)) });
    const imp = importLayersModel(m, { head: 'classifier' });
    expect(imp.model.classes).toBe(4);
    expect(imp.params['head.kernel']!.shape).toEqual([5, 4]);
    expect(Object.values(imp.model.spec).filter((l) => l.role === 'head').length).toBe(2);
    const x = rand([2, 5]);
    expect(err(imp.model.predict(imp.params, x as Tensor<readonly [number, 5]>), m.predict(x) as tf.Tensor)).toBeLessThan(1e-5);
    expect(err(imp.model.apply(imp.params, x as Tensor<readonly [number, 5]>).logits, m.getLayer('classifier').apply(x) as tf.Tensor)).toBeLessThan(1e-5);
  });

  test('withClasses resizes the head, and export builds a LayersModel with that head', async () => {
    const task = model.withClasses(5);
    const taskParams = tree([...Object.entries(params).filter(([p]) => !p.startsWith('head.')), ...Object.entries(task.initHead(1))]);
    const keras5 = await toLayersModel(task, taskParams);
    const x = inputFor(keras);
    expect((keras5.predict(x) as tf.Tensor).shape).toEqual([3, 5]);
    expect(err(keras5.predict(x) as tf.Tensor, task.predict(taskParams, x as Tensor<readonly [number, ...number[]]>))).toBeLessThan(1e-5);
    keras5.dispose();
  });

  test('tuned params written back into the original LayersModel, and saved for stock tf.loadLayersModel', async () => {
    const tuned = tree(Object.entries(params).map(([p, t]) => [p, tf.add(t, rand(t.shape, 0.1))]));
    const x = inputFor(keras);
    const expected = model.predict(tuned, x as Tensor<readonly [number, ...number[]]>);
    let artifacts: tf.io.ModelArtifacts | undefined;
    await saveLayersModel(model, tuned, tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
    const served = await tfl.loadLayersModel(tf.io.fromMemory(artifacts!));
    expect(err(served.predict(x) as tf.Tensor, expected)).toBeLessThan(1e-5);
    writeLayersModelWeights(keras, model, tuned);
    expect(err(keras.predict(x) as tf.Tensor, expected)).toBeLessThan(1e-5);
    sameBits(importLayersModel(served).params, tuned);
  });
});

// Checked at compile time: the shape parameters flow into apply and predict, and a batch
// of another sample shape is a compile error.
export function typed(m: ImportedModel<readonly [6, 6, 2], 72, 3>, p: Params, x: Tensor<readonly [4, 6, 6, 2]>, other: Tensor<readonly [4, 16, 16, 3]>): Tensor<[4, 3]> {
  // @ts-expect-error a [16, 16, 3] batch does not fit a [6, 6, 2] model
  m.predict(p, other);
  // @ts-expect-error the same for apply
  m.apply(p, other);
  return m.apply(p, x).logits;
}
