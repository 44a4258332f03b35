// Saved tfjs models in a directory: load and import, save tuned weights back,
// and serve them with stock tf.loadLayersModel.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { expect, test } from 'vitest';
import { randomNormal, rng, tree, type Tensor } from '../src/index.js';
import { directoryHandler, importLayersModelFromDir, saveLayersModelToDir } from '../src/node/index.js';

const L = tfl.layers;
const r = rng(21);
const rand = (label: string, shape: number[]) => randomNormal(r.fork(label), shape);
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!;

function small(): tfl.LayersModel {
  const input = tfl.input({ shape: [5, 5, 2] });
  const c = L.conv2d({ filters: 3, kernelSize: 3, padding: 'same', activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
  const b = L.batchNormalization({}).apply(c) as tfl.SymbolicTensor;
  const p = L.globalAveragePooling2d({}).apply(b) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: L.dense({ units: 4, activation: 'softmax' }).apply(p) as tfl.SymbolicTensor });
}

test('a saved model (several shards) imports, and tuned weights saved to a directory serve with stock tfjs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sparsetune-keras-'));
  const keras = small();
  await keras.save(directoryHandler(join(dir, 'base')));
  // Split the weights in two shards, as the converter writes larger models.
  const base = join(dir, 'base');
  const json = JSON.parse(readFileSync(join(base, 'model.json'), 'utf8'));
  const bin = readFileSync(join(base, readdirSync(base).find((f) => f.endsWith('.bin'))!));
  writeFileSync(join(base, 'group1-shard1of2.bin'), bin.subarray(0, 40));
  writeFileSync(join(base, 'group1-shard2of2.bin'), bin.subarray(40));
  json.weightsManifest[0].paths = ['group1-shard1of2.bin', 'group1-shard2of2.bin'];
  writeFileSync(join(base, 'model.json'), JSON.stringify(json));

  const { model, params } = await importLayersModelFromDir(base);
  const x = rand('x', [2, 5, 5, 2]) as Tensor<readonly [number, ...number[]]>;
  expect(maxDiff(model.predict(params, x), keras.predict(x) as tf.Tensor)).toBeLessThan(1e-5);

  const tuned = tree(Object.entries(params).map(([p, t]) => [p, tf.add(t, rand(p, t.shape).mul(0.1))]));
  await saveLayersModelToDir(model, tuned, join(dir, 'tuned'));
  const saved = () => readdirSync(join(dir, 'tuned')).sort();
  expect(saved()).toEqual(['model.json', expect.stringMatching(/^weights\.[0-9a-f]{8}\.bin$/)]);
  const served = await tfl.loadLayersModel(directoryHandler(join(dir, 'tuned')));
  expect(maxDiff(served.predict(x) as tf.Tensor, model.predict(tuned, x))).toBeLessThan(1e-5);
  // Saving again with other weights replaces the pair: one model.json, the weights it names, nothing stale.
  const first = saved()[1];
  const tuned2 = tree(Object.entries(tuned).map(([p, t]) => [p, tf.add(t, 1)]));
  await saveLayersModelToDir(model, tuned2, join(dir, 'tuned'));
  expect(saved()).toHaveLength(2);
  expect(saved()[1]).not.toBe(first);
  expect(JSON.parse(readFileSync(join(dir, 'tuned', 'model.json'), 'utf8')).weightsManifest[0].paths).toEqual([`./${saved()[1]}`]);
  const served2 = await tfl.loadLayersModel(directoryHandler(join(dir, 'tuned')));
  expect(maxDiff(served2.predict(x) as tf.Tensor, model.predict(tuned2, x))).toBeLessThan(1e-5);
});

test('the root entry’s Keras code stays browser-safe: no node: imports, no process', () => {
  const root = new URL('../src/keras/', import.meta.url);
  for (const f of readdirSync(root)) {
    const src = readFileSync(new URL(f, root), 'utf8');
    expect(src, f).not.toMatch(/from 'node:|\bprocess\./);
  }
});
