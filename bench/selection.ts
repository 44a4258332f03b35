// Selection benchmarks.
//  1. Per-neuron top-1 and top-8 over a parameter tree shaped like ViT-B/16
//     (86M entries, synthetic scores): selection must scale to real models.
//  2. GPS selection on the ViT backbone over 800 training images (SupCon
//     gradients over one pass + per-neuron top-1), against one fine-tuning
//     epoch over the same images (forward, backward, update), side by side;
//     and FPS selection (one forward pass, |w|·mean|input|, per-neuron top-1)
//     over the same images. Peak tensor memory of each selection from
//     tf.profile, counted above what was allocated before it (the weights).
//  3. GPS against FPS on a real pre-trained network: nsfwjs's MobileNetV2
//     (Keras, imported) at --side × --side on --images digits resized to RGB,
//     both in batches of 8 images (GPS's SupCon sees 16 views a batch).
//
//   npm run bench:selection [-- --rounds 3 --side 64 --images 64]
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, leafSize, paramSpec, paths, rng, tree, type Params, type Tensor } from '../src/index.js';
import { batches } from '../src/data/index.js';
import { buildTask } from '../src/node/index.js';
import { BACKBONES, crossEntropy, replaceHead } from '../src/models/index.js';
import { feedforward, fps, fromScores, gps, gradient, neuron, select, selectionEnv, type Selector, type SelectionEnv } from '../src/selection/index.js';
import { importLayersModel, resizeDataSet, subset } from '../src/index.js';
import { loadNsfwMobileNetV2 } from '../test/nsfw.js';
import { machine, median, writeResults } from './lib.js';

const { values: opts } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, side: { type: 'string', default: '64' }, images: { type: 'string', default: '64' } } });
const rounds = Number(opts.rounds);
const side = Number(opts.side);
const nImages = Number(opts.images);

/** Selection time (s) and peak tensor bytes above what was allocated before it, one fresh environment per call. */
async function measure(selector: Selector, env: () => SelectionEnv): Promise<{ seconds: number; peakBytes: number }> {
  const e = env();
  const before = tf.memory().numBytes;
  const t0 = performance.now();
  // tf.profile returns the engine's one profile record, which the next tf.profile overwrites: read it now.
  const peak = (await tf.profile(() => void select(selector, e))).peakBytes;
  return { seconds: (performance.now() - t0) / 1000, peakBytes: peak - before };
}
const MiB = 2 ** 20;
await initBackend('wasm');

// --- 1. top-k at ViT-B/16 scale --------------------------------------------------
const d = 768;
const entries: [string, { shape: number[]; role: 'kernel' | 'bias' | 'norm' | 'embedding' | 'token' | 'head'; neuronAxis: number }][] = [
  ['patch.kernel', { shape: [16 * 16 * 3, d], role: 'kernel', neuronAxis: 1 }],
  ['pos', { shape: [1, 197, d], role: 'embedding', neuronAxis: 2 }],
  ['head.kernel', { shape: [d, 1000], role: 'head', neuronAxis: 1 }],
];
for (let b = 0; b < 12; b++) {
  entries.push([`blocks.${b}.attn.qkv.kernel`, { shape: [d, 3 * d], role: 'kernel', neuronAxis: 1 }]);
  entries.push([`blocks.${b}.attn.proj.kernel`, { shape: [d, d], role: 'kernel', neuronAxis: 1 }]);
  entries.push([`blocks.${b}.mlp.fc1.kernel`, { shape: [d, 4 * d], role: 'kernel', neuronAxis: 1 }]);
  entries.push([`blocks.${b}.mlp.fc2.kernel`, { shape: [4 * d, d], role: 'kernel', neuronAxis: 1 }]);
}
const bigSpec = paramSpec(entries);
const total = paths(bigSpec).reduce((s, p) => s + leafSize(bigSpec[p]!), 0);
const r = rng(0);
const scores = tree(paths(bigSpec).map((p) => [p, Float32Array.from({ length: leafSize(bigSpec[p]!) }, () => r.uniform())]));
const bigEnv = selectionEnv({ spec: bigSpec, params: {} as Params });
const criterion = fromScores(scores, 'synthetic');
const topk: Record<string, number> = {};
for (const k of [1, 8]) {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    select(neuron(k, criterion), bigEnv);
    times.push((performance.now() - t0) / 1000);
  }
  topk[`top${k}`] = median(times);
}

// --- 2. GPS selection vs one fine-tuning epoch on ViT -------------------------------
const task = buildTask('digits', { testSize: 1 });
const model = BACKBONES.vit().withClasses(10);
const base = model.init(0);
const params = replaceHead(model, base, 1);
const selectTimes: number[] = [];
const fpsTimes: number[] = [];
const epochTimes: number[] = [];
const vitPeak = { gps: 0, fps: 0 };
for (let i = 0; i < rounds; i++) {
  const g = await measure(gps({ k: 1 }), () => selectionEnv({ model, params, data: task.train, seed: i }));
  selectTimes.push(g.seconds);
  const f = await measure(fps({ k: 1 }), () => selectionEnv({ model, params, data: task.train, seed: i }));
  fpsTimes.push(f.seconds);
  vitPeak.gps = Math.max(vitPeak.gps, g.peakBytes);
  vitPeak.fps = Math.max(vitPeak.fps, f.peakBytes);
  const vars = Object.fromEntries(Object.entries(params).map(([p, t]) => [p, tf.variable(t)])) as Params;
  const t1 = performance.now();
  for (const { x, y } of batches(task.train, 32, { rng: rng(i) })) {
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => crossEntropy(model.apply(vars, x).logits as Tensor<readonly ['B', number]>, y) as tf.Scalar);
      for (const v of Object.values(vars) as tf.Variable[]) v.assign(tf.sub(v, tf.mul(grads[v.name]!, 1e-3)));
    });
  }
  (Object.values(vars)[0] as tf.Variable).dataSync();
  epochTimes.push((performance.now() - t1) / 1000);
  Object.values(vars).forEach((v) => v.dispose());
}
const ratio = median(selectTimes) / median(epochTimes);

// --- 3. GPS vs FPS on MobileNetV2 -------------------------------------------------
const keras = await loadNsfwMobileNetV2(side);
const imported = importLayersModel<readonly [number, number, 3]>(keras, { input: [side, side, 3] });
keras.dispose();
const mModel = imported.model.withClasses(10);
const mParams = replaceHead(mModel, imported.params, 0);
const mData = resizeDataSet(subset(buildTask('digits', { trainSize: nImages, valSize: 1, testSize: 1 }).train, [...Array(nImages).keys()]), [side, side, 3], 'bilinear');
const mEnv = (seed: number) => () => selectionEnv({ model: mModel, params: mParams, data: mData, seed });
const mTimes = { gps: [] as number[], fps: [] as number[] };
const mPeak = { gps: 0, fps: 0 };
for (let i = 0; i < rounds; i++) {
  const g = await measure(gps({ kernels: neuron(1, gradient({ batchSize: 8 })) }), mEnv(i));
  const f = await measure(gps({ kernels: neuron(1, feedforward({ batchSize: 8 })) }), mEnv(i));
  mTimes.gps.push(g.seconds);
  mTimes.fps.push(f.seconds);
  mPeak.gps = Math.max(mPeak.gps, g.peakBytes);
  mPeak.fps = Math.max(mPeak.fps, f.peakBytes);
}
const mobilenet = { side, images: nImages, batch: 8, gpsSeconds: median(mTimes.gps), fpsSeconds: median(mTimes.fps), gpsPeakBytes: mPeak.gps, fpsPeakBytes: mPeak.fps };
const vitFps = { fpsSeconds: median(fpsTimes), gpsPeakBytes: vitPeak.gps, fpsPeakBytes: vitPeak.fps };

const result = { machine: machine(), rounds, vitB16: { entries: total, seconds: topk }, gpsSelection: { images: task.train.n, selectSeconds: median(selectTimes), epochSeconds: median(epochTimes), ratio }, fpsSelection: vitFps, mobilenet };
const mib = (b: number) => (b / MiB).toFixed(1);
const md = [
  '# Selection cost',
  '',
  `Command: \`npm run bench:selection -- --rounds ${rounds} --side ${side} --images ${nImages}\` (${result.machine['date'] as string}, ${result.machine['cpu'] as string}). Medians of ${rounds} rounds.`,
  '',
  `Per-neuron top-k over a tree shaped like ViT-B/16 (${total.toLocaleString('en-US')} entries, synthetic scores):`,
  '',
  '| k | seconds |',
  '| ---: | ---: |',
  ...Object.entries(topk).map(([k, s]) => `| ${k.slice(3)} | ${s.toFixed(3)} |`),
  '',
  `GPS selection on the ViT backbone over ${task.train.n} images (SupCon gradients over one pass with two views each, then per-neuron top-1): ${median(selectTimes).toFixed(2)} s; one fine-tuning epoch over the same images (batch 32): ${median(epochTimes).toFixed(2)} s; ratio **${ratio.toFixed(2)}×**.`,
  '',
  'GPS against FPS (one forward pass, |w| · mean |input|, then per-neuron top-1), each selection in a fresh environment; peak tensor memory from `tf.profile`, above what was allocated before the selection (the weights):',
  '',
  '| network | images | batch | GPS s | FPS s | GPS ÷ FPS time | GPS peak MiB | FPS peak MiB | GPS ÷ FPS peak |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  `| ViT backbone | ${task.train.n} | 32 | ${median(selectTimes).toFixed(2)} | ${vitFps.fpsSeconds.toFixed(2)} | ${(median(selectTimes) / vitFps.fpsSeconds).toFixed(1)}× | ${mib(vitFps.gpsPeakBytes)} | ${mib(vitFps.fpsPeakBytes)} | ${(vitFps.gpsPeakBytes / vitFps.fpsPeakBytes).toFixed(1)}× |`,
  `| MobileNetV2 (nsfwjs, ${side}×${side}) | ${nImages} | 8 | ${mobilenet.gpsSeconds.toFixed(2)} | ${mobilenet.fpsSeconds.toFixed(2)} | ${(mobilenet.gpsSeconds / mobilenet.fpsSeconds).toFixed(1)}× | ${mib(mobilenet.gpsPeakBytes)} | ${mib(mobilenet.fpsPeakBytes)} | ${(mobilenet.gpsPeakBytes / mobilenet.fpsPeakBytes).toFixed(1)}× |`,
  '',
].join('\n');
console.log(md);
writeResults('selection', result, md);
