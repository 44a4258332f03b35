// A real pre-trained network from an npm package: nsfwjs's MobileNetV2 (Keras 2, 224×224×3).
// Import it, check it against stock tfjs, select with GPS, tune a few masked steps, keep the
// delta, and serve the tuned network with stock tf.loadLayersModel.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  adam,
  applyMaskedUpdates,
  checked,
  countMask,
  crossEntropy,
  deviceMask,
  disposeReplaced,
  extractDelta,
  fromScores,
  gps,
  importLayersModel,
  initBackend,
  masked,
  neuron,
  replaceHead,
  saveDelta,
  select,
  selectionEnv,
  supConLoss,
  tree,
  type Params,
} from 'sparsetune';
import { directoryHandler, saveLayersModelToDir } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';
const dir = mkdtempSync(join(tmpdir(), 'sparsetune-mobilenet-'));

// nsfwjs ships model.json and its weight shard as CommonJS modules (JSON, base64); only these
// data files are used, not nsfwjs's code.
const require = createRequire(import.meta.url);
const files = join(dirname(require.resolve('nsfwjs')), '..', 'models', 'mobilenet_v2');
const json = require(join(files, 'model.min.js')) as tf.io.ModelJSON;
const shard = Buffer.from(require(join(files, 'group1-shard1of1.min.js')) as string, 'base64');
const keras = await tf.loadLayersModel(
  tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest.flatMap((g) => g.weights), weightData: new Uint8Array(shard).buffer }),
);

// 1. Import: 162 layers, 162 leaves, the BatchNorm statistics as buffers; predictions as tfjs.
const { model: backbone, params: pretrained } = importLayersModel<readonly [224, 224, 3], 128, 5>(keras);
console.log(`leaves ${Object.keys(backbone.spec).length}, buffers ${Object.keys(backbone.buffers).length}, features ${backbone.features}, classes ${backbone.classes}`);

// A toy two-class task at the network's input size, dark noise (0) and bright stripes (1)
// alternating, in batches of 2: wasm's 4 GiB memory holds a MobileNetV2 gradient at 224×224
// for a handful of images only (about 1.2 GiB peak for 2).
const n = quick ? 2 : 8;
const batch = 2;
const stripes = tf.tile(tf.reshape(tf.cast(tf.greater(tf.mod(tf.range(0, 224), 16), 7), 'float32'), [1, 1, 224, 1]), [n / 2, 224, 1, 3]);
const dark = tf.mul(tf.randomUniform([n / 2, 224, 224, 3], 0, 1, 'float32', 1), 0.3);
const bright = tf.add(tf.mul(stripes, 0.5), tf.mul(tf.randomUniform([n / 2, 224, 224, 3], 0, 1, 'float32', 2), 0.5));
const images = tf.reshape(tf.stack([dark, bright], 1), [n, 224, 224, 3]);
const labels = tf.tensor1d([...Array(n).keys()].map((i) => i % 2), 'int32');
const batchAt = (b: number) => ({
  x: checked(tf.slice(images, [b * batch, 0, 0, 0], [batch, 224, 224, 3]), [batch, 224, 224, 3]),
  y: checked(tf.slice(labels, [b * batch], [batch]), [batch]),
});
const { x } = batchAt(0);
const gap = tf.max(tf.abs(tf.sub(backbone.predict(pretrained, x), keras.predict(x) as tf.Tensor))).dataSync()[0]!;
console.log(`max |imported − keras.predict|: ${gap.toExponential(1)}`);

// 2. A 2-way head; GPS: per neuron of every kernel, the top-1 connection by |Σ ∇W| over the
//    batches of SupCon on two views (the images and their mirror images); biases and head whole.
const model = backbone.withClasses(2);
const base = replaceHead(model, pretrained, 0);
const body = Object.keys(base).filter((p) => !p.startsWith('head.'));
const sums = body.map((p) => tf.zerosLike(base[p]!));
for (let b = 0; b < n / batch; b++) {
  tf.tidy(() => {
    const { x, y } = batchAt(b);
    const views = checked(tf.concat([x, tf.reverse(x, 2)]), [2 * batch, 224, 224, 3]);
    const loss = (...ts: tf.Tensor[]) => supConLoss(model.apply(tree([...Object.entries(base).filter(([p]) => p.startsWith('head.')), ...body.map((p, i) => [p, ts[i]!] as const)]), views).features, y) as tf.Scalar;
    tf.grads(loss)(body.map((p) => base[p]!)).forEach((g, i) => {
      const next = tf.keep(tf.add(sums[i]!, g));
      sums[i]!.dispose();
      sums[i] = next;
    });
  });
}
// SupCon never reaches the head: zero scores there (it is trained whole anyway).
const scores = tree(Object.keys(base).map((p) => [p, body.includes(p) ? new Float32Array(tf.abs(sums[body.indexOf(p)]!).dataSync()) : new Float32Array(base[p]!.size)]));
const mask = select(gps({ kernels: neuron(1, fromScores(scores)) }), selectionEnv({ spec: model.spec, params: base }));
const { trainable, total } = countMask(mask);
console.log(`GPS trains ${trainable} of ${total} entries (${((100 * trainable) / total).toFixed(2)}%)`);

// 3. Masked Adam steps on cross-entropy, each one tidy-scoped; time and peak memory per step.
const dm = deviceMask(mask);
const tx = masked(adam(1e-3), dm);
const frozen = Object.entries(base).filter(([p]) => !dm.trainable.includes(p));
let params: Params = base;
let state = tf.tidy(() => tx.init(params));
for (let step = 0; step < (quick ? 1 : 8); step++) {
  const { x, y } = batchAt(step % (n / batch));
  const t0 = performance.now();
  const info = await tf.profile(() => {
    const out = tf.tidy(() => {
      const f = (...ts: tf.Tensor[]) => crossEntropy(model.apply(tree([...frozen, ...dm.trainable.map((p, i) => [p, ts[i]!] as const)]), x).logits, y) as tf.Scalar;
      const { value, grads } = tf.valueAndGrads(f)(dm.trainable.map((p) => params[p]!));
      const [updates, nextState] = tx.update(tree(dm.trainable.map((p, i) => [p, grads[i]!])), state, params);
      return { value, next: applyMaskedUpdates(params, updates, dm), nextState };
    });
    // Free what this step replaced (never the base weights: the delta is taken against them).
    for (const p of dm.trainable) if (params[p] !== base[p]) params[p]!.dispose();
    disposeReplaced(state, out.nextState);
    [params, state] = [out.next, out.nextState];
    console.log(`step ${step}: loss ${out.value.dataSync()[0]!.toFixed(4)}`);
    out.value.dispose();
  });
  console.log(`  ${(performance.now() - t0).toFixed(0)} ms, peak ${(info.peakBytes / 2 ** 20).toFixed(0)} MiB (batch ${batch}, ${tf.getBackend()})`);
  tf.dispose([x, y]);
}

// 4. The delta (8 bytes per selected entry) and the tuned network back in tfjs's format.
const delta = saveDelta(extractDelta(model.spec, base, params, mask));
writeFileSync(join(dir, 'task.delta'), delta);
await saveLayersModelToDir(model, params, join(dir, 'tuned'));
const served = await tf.loadLayersModel(directoryHandler(join(dir, 'tuned')));
const diff = tf.max(tf.abs(tf.sub(served.predict(x) as tf.Tensor, model.predict(params, x)))).dataSync()[0]!;
console.log(`delta ${delta.length} bytes; served by tf.loadLayersModel, max |served − sparsetune| ${diff.toExponential(1)}`);
dm.dispose();
