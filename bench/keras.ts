// A real Keras model: nsfwjs's MobileNetV2 (Keras 2.2.4, a dev dependency), built
// for `side × side` inputs and imported with importLayersModel, on MNIST digits
// resized to RGB. Measured in one process: GPS selection (SupCon gradient scores
// over the selection images, then top-1 per neuron), and one training step —
// forward, backward, masked AdamW update with sparse optimizer state, as fineTune
// runs it — for full fine-tuning, GPS and linear probing, timed in interleaved
// rounds; tensor memory from tf.memory() and tf.profile's peakBytes.
//
//   npm run bench:keras [-- --side 96 --batch 8 --rounds 5 --select 32]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import {
  adamw,
  checked,
  countMask,
  crossEntropy,
  disposeReplaced,
  full,
  gps,
  gradient,
  importLayersModel,
  initBackend,
  linearProbe,
  applyUpdates,
  trainOnly,
  trainableLeaves,
  neuron,
  replaceHead,
  resizeDataSet,
  select,
  selectionEnv,
  subset,
  type Mask,
  type Params,
} from '../src/index.js';
import { digits } from '../src/node/index.js';
import { loadNsfwMobileNetV2 } from '../test/nsfw.js';
import { machine, median, sideBySide, writeResults } from './lib.js';

const { values: opts } = parseArgs({
  options: {
    side: { type: 'string', default: '96' },
    batch: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '5' },
    select: { type: 'string', default: '32' },
  },
});
const [side, batch, rounds, nSelect] = [opts.side, opts.batch, opts.rounds, opts.select].map(Number) as [number, number, number, number];
await initBackend('wasm');
// The machine may be shared: its load before and after goes into the results.
const loadBefore = loadavg()[0]!;
const MiB = 2 ** 20;

const keras = await loadNsfwMobileNetV2(side);
const { model: backbone, params: pretrained } = importLayersModel<readonly [number, number, 3]>(keras, { input: [side, side, 3] });
const task = digits({ trainSize: Math.max(nSelect, batch), valSize: 0, testSize: 1 });
const train = resizeDataSet(task.train, [side, side, 3], 'bilinear');
const x = checked(tf.tensor4d(train.images.subarray(0, batch * side * side * 3), [batch, side, side, 3]), ['B', side, side, 3]);
const y = checked(tf.tensor1d(train.labels.subarray(0, batch), 'int32'), ['B']);
const gap = tf.tidy(() => tf.max(tf.abs(tf.sub(backbone.predict(pretrained, x), keras.predict(x) as tf.Tensor))).dataSync()[0]!);
keras.dispose();
const model = backbone.withClasses(10);
const base = replaceHead(model, pretrained, 0);
const weightBytes = Object.values(base).reduce((s, t) => s + t.size * 4, 0) + Object.values(model.buffers).reduce((s, t) => s + t.size * 4, 0);

// GPS selection, once (it is one pass over the selection images); batches of 8 images, 16 views.
const env = selectionEnv({ model, params: base, data: subset(train, [...Array(nSelect).keys()]) });
let gpsMask: Mask | undefined;
const t0 = performance.now();
// tf.profile returns the engine's one profile record, which the next tf.profile overwrites: read it now.
const selectPeakBytes = (
  await tf.profile(() => {
    gpsMask = select(gps({ kernels: neuron(1, gradient({ batchSize: 8 })) }), env);
  })
).peakBytes;
const selectSeconds = (performance.now() - t0) / 1000;

/** A method's training state and one step of it, as fineTune's loop takes one. */
function trainer(mask: Mask) {
  const tx = trainOnly(adamw(1e-3), mask);
  const trainable = trainableLeaves(mask);
  const frozen = Object.fromEntries(Object.keys(base).filter((p) => !trainable.includes(p)).map((p) => [p, base[p]!]));
  let current: Params = Object.fromEntries(trainable.map((p) => [p, base[p]!]));
  const before = tf.memory().numBytes;
  let state = tf.tidy(() => tx.init(current));
  const stateBytes = tf.memory().numBytes - before;
  const step = () => {
    const out = tf.tidy(() => {
      const f = (...ts: tf.Tensor[]) => crossEntropy(model.apply({ ...frozen, ...Object.fromEntries(trainable.map((p, i) => [p, ts[i]!])) }, x).logits, y) as tf.Scalar;
      const { value, grads } = tf.valueAndGrads(f)(trainable.map((p) => current[p]!));
      const [updates, nextState] = tx.update(Object.fromEntries(trainable.map((p, i) => [p, grads[i]!])), state, current);
      return { value, next: applyUpdates(current, updates), nextState };
    });
    // Reading the loss waits for the step, as fineTune's loop does.
    out.value.dataSync();
    out.value.dispose();
    for (const p of trainable) if (current[p] !== base[p] && current[p] !== out.next[p]) current[p]!.dispose();
    disposeReplaced(state, out.nextState);
    [current, state] = [out.next, out.nextState];
  };
  return { step, stateBytes, mask };
}
const methods = { full: trainer(select(full(), env)), gps: trainer(gpsMask!), 'linear probe': trainer(select(linearProbe(), env)) };
const times = sideBySide(Object.fromEntries(Object.entries(methods).map(([k, m]) => [k, m.step])), rounds, 1);
const rows = [];
for (const [name, m] of Object.entries(methods)) {
  const resident = tf.memory().numBytes;
  const { peakBytes } = await tf.profile(m.step);
  const { trainable, total, percent } = countMask(m.mask);
  const t = times[name]!;
  rows.push({
    method: name,
    trainable,
    total,
    percent,
    msPerStep: median(t),
    msMin: Math.min(...t),
    msMax: Math.max(...t),
    stateMiB: m.stateBytes / MiB,
    stepPeakAboveResidentMiB: (peakBytes - resident) / MiB,
  });
}
const loadAfter = loadavg()[0]!;
const result = {
  machine: { ...machine(), loadAverage1m: { before: loadBefore, after: loadAfter } } as Record<string, unknown>,
  command: `npm run bench:keras -- --side ${side} --batch ${batch} --rounds ${rounds} --select ${nSelect}`,
  model: 'nsfwjs 4.4.0 MobileNetV2 (Keras 2.2.4), 10-way head',
  input: [side, side, 3],
  batch,
  rounds,
  importedVsKerasMaxAbs: gap,
  weightsMiB: weightBytes / MiB,
  selection: { images: nSelect, views: 2 * nSelect, batchSize: 8, seconds: selectSeconds, peakMiB: selectPeakBytes / MiB, trainable: countMask(gpsMask!).trainable },
  rows,
};
const f1 = (v: number) => v.toFixed(1);
const md = [
  `# A real Keras model: nsfwjs's MobileNetV2 at ${side}×${side}×3, time and memory per step`,
  '',
  `Command: \`${result.command}\` (${result.machine['date'] as string}, ${result.machine['cpu'] as string}, ${result.machine['cores'] as number} cores, ${result.machine['backend'] as string}, Node ${result.machine['node'] as string}, 1-minute load average ${loadBefore.toFixed(1)} before and ${loadAfter.toFixed(1)} after).`,
  `${result.model}, built for ${side}×${side}×3 and imported with \`importLayersModel\` (max |imported − keras.predict| ${gap.toExponential(1)}), on MNIST digits resized to RGB with \`resizeDataSet\`.`,
  `A step is forward, backward and a masked AdamW update (sparse optimizer state), batch ${batch}, as \`fineTune\` takes it; medians of ${rounds} interleaved rounds after one warm-up each.`,
  `Memory: weights and BatchNorm statistics ${f1(result.weightsMiB)} MiB; "optimizer state" is what the method's AdamW state adds; "step peak" is \`tf.profile\`'s peakBytes during one step minus the tensor memory held before it (activations kept for the backward pass, gradients, updates).`,
  '',
  '| method | trained entries | ms/step (median) | min–max ms | optimizer state MiB | step peak MiB |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.method} | ${r.trainable.toLocaleString('en-US')} (${r.percent.toFixed(2)}%) | ${r.msPerStep.toFixed(0)} | ${r.msMin.toFixed(0)}–${r.msMax.toFixed(0)} | ${f1(r.stateMiB)} | ${f1(r.stepPeakAboveResidentMiB)} |`),
  '',
  `GPS selection (SupCon gradient scores over ${nSelect} images, ${2 * nSelect} views in batches of 8 images, then top-1 per neuron): ${selectSeconds.toFixed(1)} s, peak tensor memory ${f1(result.selection.peakMiB)} MiB (\`tf.profile\`'s peakBytes, weights included).`,
  '',
].join('\n');
console.log(md);
writeResults('keras-mobilenet', result, md);
