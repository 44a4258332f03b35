// A real pre-trained network from an npm package, nsfwjs's MobileNetV2 (Keras 2, built for
// 224×224×3), on a real small task the way you would: imported at 96×96×3, a 10-way head for
// MNIST digits (grey 28×28, resized and repeated into RGB), GPS and fineTune from the library,
// accuracy before and after, the delta saved, and the tuned network served by stock tfjs.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  checked,
  countMask,
  evaluate,
  extractDelta,
  fineTune,
  gps,
  gradient,
  importLayersModel,
  initBackend,
  neuron,
  replaceHead,
  resizeDataSet,
  saveDelta,
  select,
  selectionEnv,
} from 'sparsetune';
import { digits, directoryHandler, saveLayersModelToDir } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';
const dir = mkdtempSync(join(tmpdir(), 'sparsetune-mobilenet-'));
const side = 96;

// 1. nsfwjs ships model.json and its weight shard as CommonJS modules (JSON, base64); only
//    these data files are used, not nsfwjs's code. The graph is built for 96×96 as Keras
//    builds MobileNetV2 for another input_shape: the input layer resized, and the final 7×7
//    average pool (a global average at 224) sized to the 3×3 map 96×96 leaves. The weights
//    do not depend on the input size. Stock tfjs loads this graph: it is the reference.
const require = createRequire(import.meta.url);
const files = join(dirname(require.resolve('nsfwjs')), '..', 'models', 'mobilenet_v2');
const json = require(join(files, 'model.min.js')) as tf.io.ModelJSON;
const shard = Buffer.from(require(join(files, 'group1-shard1of1.min.js')) as string, 'base64');
const topology = structuredClone(json.modelTopology) as { model_config: { config: { layers: { class_name: string; config: Record<string, unknown> }[] } } };
for (const { class_name, config } of topology.model_config.config.layers) {
  if (class_name === 'InputLayer') config['batch_input_shape'] = [null, side, side, 3];
  if (class_name === 'AveragePooling2D') config['pool_size'] = config['strides'] = [side / 32, side / 32];
}
const keras = await tf.loadLayersModel(
  tf.io.fromMemory({ modelTopology: topology, weightSpecs: json.weightsManifest.flatMap((g) => g.weights), weightData: new Uint8Array(shard).buffer }),
);
const { model: backbone, params: pretrained } = importLayersModel<readonly [96, 96, 3], 128, 5>(keras, { input: [side, side, 3] });
console.log(`leaves ${Object.keys(backbone.spec).length}, buffers ${Object.keys(backbone.buffers).length}, features ${backbone.features}, classes ${backbone.classes}`);

// 2. The task: MNIST digits, a few dozen training images, bilinearly enlarged to 96×96 (the
//    better resampling when enlarging) with the grey channel repeated into R, G and B.
const task = digits({ trainSize: quick ? 16 : 48, valSize: 0, testSize: quick ? 40 : 200 });
const train = resizeDataSet(task.train, [side, side, 3], 'bilinear');
const test = resizeDataSet(task.test, [side, side, 3], 'bilinear');
const probe = checked(tf.tensor4d(test.images.subarray(0, 4 * side * side * 3), [4, side, side, 3]), [4, side, side, 3]);
const gap = tf.max(tf.abs(tf.sub(backbone.predict(pretrained, probe), keras.predict(probe) as tf.Tensor))).dataSync()[0]!;
console.log(`max |imported − keras.predict| at ${side}×${side}: ${gap.toExponential(1)}`);

// 3. A fresh 10-way head; GPS: per neuron of every kernel, the top-1 connection by |Σ ∇W| of
//    SupCon on two augmented views. Batches of 8 (16 views): wasm has 4 GiB of memory, and a
//    MobileNetV2 gradient at 96×96 takes about 0.9 GiB per 8 images.
const model = backbone.withClasses(task.classes);
const base = replaceHead(model, pretrained, 0);
const mask = select(gps({ kernels: neuron(1, gradient({ batchSize: 8 })) }), selectionEnv({ model, params: base, data: train }));
const { trainable, total, percent } = countMask(mask);
console.log(`GPS trains ${trainable} of ${total} entries (${percent.toFixed(2)}%)`);

// 4. fineTune trains the selected entries alone (masked AdamW, the default), batches of 8.
console.log(`test accuracy before: ${(100 * evaluate(model, base, test, 8)).toFixed(1)}% (fresh head)`);
const { params: tuned, history } = fineTune({ model, params: base, mask, train, epochs: quick ? 1 : 5, batchSize: 8, learningRate: 3e-3, progressBar: false });
console.log(`losses by epoch ${history.map((h) => h.loss.toFixed(3)).join(', ')}`);
console.log(`test accuracy after:  ${(100 * evaluate(model, tuned, test, 8)).toFixed(1)}% (${train.n} training images)`);

// 5. The delta (an index and a value per selected entry) and the tuned network back in tfjs's
//    own format, served by stock tf.loadLayersModel.
const delta = saveDelta(extractDelta(model.spec, base, tuned, mask));
writeFileSync(join(dir, 'digits.delta'), delta);
await saveLayersModelToDir(model, tuned, join(dir, 'tuned'));
const served = await tf.loadLayersModel(directoryHandler(join(dir, 'tuned')));
const diff = tf.max(tf.abs(tf.sub(served.predict(probe) as tf.Tensor, model.predict(tuned, probe)))).dataSync()[0]!;
console.log(`delta ${delta.length} bytes; served by tf.loadLayersModel, max |served − sparsetune| ${diff.toExponential(1)}`);
