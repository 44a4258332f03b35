// Your own TensorFlow.js / Keras model: import it, select with GPS, fine-tune, and export back.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  checked,
  countMask,
  evaluate,
  fineTune,
  gps,
  importLayersModel,
  initBackend,
  replaceHead,
  select,
  selectionEnv,
  subset,
} from 'sparsetune';
import { rotation } from 'sparsetune/node';
import { directoryHandler, importLayersModelFromDir, saveLayersModelToDir } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';
const dir = mkdtempSync(join(tmpdir(), 'sparsetune-keras-'));

// 1. A Keras-style network built with tf.model: strided and depthwise convolutions,
//    BatchNormalization, a residual Add, pooling and a Dense head. Stands in for yours.
const input = tf.input({ shape: [28, 28, 1] });
const stem = tf.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', useBias: false }).apply(input) as tf.SymbolicTensor;
const norm = tf.layers.reLU({ maxValue: 6 }).apply(tf.layers.batchNormalization({}).apply(stem)) as tf.SymbolicTensor;
const dw = tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', activation: 'relu' }).apply(norm) as tf.SymbolicTensor;
const residual = tf.layers.add().apply([norm, tf.layers.conv2d({ filters: 8, kernelSize: 1 }).apply(dw) as tf.SymbolicTensor]) as tf.SymbolicTensor;
const pooled = tf.layers.globalAveragePooling2d({}).apply(residual) as tf.SymbolicTensor;
const features = tf.layers.dense({ units: 32, activation: 'relu' }).apply(pooled) as tf.SymbolicTensor;
const keras = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 10, activation: 'softmax' }).apply(features) as tf.SymbolicTensor });

// 2. Import it in memory — or, saved as model.json + weight shards, from its directory.
const inMemory = importLayersModel<readonly [28, 28, 1]>(keras);
await keras.save(directoryHandler(join(dir, 'pretrained')));
const { model: backbone, params: pretrained } = await importLayersModelFromDir<readonly [28, 28, 1]>(join(dir, 'pretrained'));
console.log('same spec either way:', JSON.stringify(inMemory.model.spec) === JSON.stringify(backbone.spec));
for (const [path, leaf] of Object.entries(backbone.spec)) console.log(`  ${path} [${leaf.shape}] ${leaf.role}, neuron axis ${leaf.neuronAxis}`);
const probe = checked(tf.randomUniform([2, 28, 28, 1]), [2, 28, 28, 1]);
const same = tf.max(tf.abs(tf.sub(backbone.predict(pretrained, probe), keras.predict(probe) as tf.Tensor))).dataSync()[0]!;
console.log('max |imported − keras.predict|:', same.toExponential(1));

// 3. A new 4-way head for the task; GPS selects; fineTune trains the selected entries.
const task = rotation({ testSize: quick ? 100 : 1000 });
const train = quick ? subset(task.train, [...Array(64).keys()]) : task.train;
const model = backbone.withClasses(task.classes);
const base = replaceHead(model, pretrained, 0);
const mask = select(gps({ k: 1 }), selectionEnv({ model, params: base, data: train }));
console.log(`GPS trains ${countMask(mask).trainable} of ${countMask(mask).total} entries`);
const result = fineTune({ model, params: base, mask, train, epochs: quick ? 1 : 10, learningRate: 3e-3 });
console.log(`test accuracy ${(100 * evaluate(model, result.params, task.test)).toFixed(1)}%`);

// 4. Back to TensorFlow.js: stock tf.loadLayersModel serves the tuned network.
await saveLayersModelToDir(model, result.params, join(dir, 'tuned'));
const served = await tf.loadLayersModel(directoryHandler(join(dir, 'tuned')));
const diff = tf.max(tf.abs(tf.sub(served.predict(probe) as tf.Tensor, model.predict(result.params, probe)))).dataSync()[0]!;
console.log('served output:', (served.predict(probe) as tf.Tensor).shape, '| max |served − sparsetune|:', diff.toExponential(1));
