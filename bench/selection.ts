// Selection benchmarks.
//  1. Per-neuron top-1 and top-8 over a parameter tree shaped like ViT-B/16
//     (86M entries, synthetic scores): selection must scale to real models.
//  2. GPS selection on the ViT backbone over 800 training images (SupCon
//     gradients over one pass + per-neuron top-1), against one fine-tuning
//     epoch over the same images (forward, backward, update), side by side.
//
//   npm run bench:selection [-- --rounds 3]
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, leafSize, paramSpec, paths, rng, tree, type Params, type Tensor } from '../src/index.js';
import { batches } from '../src/data/index.js';
import { buildTask } from '../src/node/index.js';
import { BACKBONES, crossEntropy, replaceHead } from '../src/models/index.js';
import { fromScores, gps, neuron, select, selectionEnv } from '../src/selection/index.js';
import { machine, median, writeResults } from './lib.js';

const { values: opts } = parseArgs({ options: { rounds: { type: 'string', default: '3' } } });
const rounds = Number(opts.rounds);
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
const epochTimes: number[] = [];
for (let i = 0; i < rounds; i++) {
  const t0 = performance.now();
  select(gps({ k: 1 }), selectionEnv({ model, params, data: task.train, seed: i }));
  selectTimes.push((performance.now() - t0) / 1000);
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

const result = { machine: machine(), rounds, vitB16: { entries: total, seconds: topk }, gpsSelection: { images: task.train.n, selectSeconds: median(selectTimes), epochSeconds: median(epochTimes), ratio } };
const md = [
  '# Selection cost',
  '',
  `Command: \`npm run bench:selection -- --rounds ${rounds}\` (${result.machine['date'] as string}, ${result.machine['cpu'] as string}). Medians of ${rounds} rounds.`,
  '',
  `Per-neuron top-k over a tree shaped like ViT-B/16 (${total.toLocaleString('en-US')} entries, synthetic scores):`,
  '',
  '| k | seconds |',
  '| ---: | ---: |',
  ...Object.entries(topk).map(([k, s]) => `| ${k.slice(3)} | ${s.toFixed(3)} |`),
  '',
  `GPS selection on the ViT backbone over ${task.train.n} images (SupCon gradients over one pass with two views each, then per-neuron top-1): ${median(selectTimes).toFixed(2)} s; one fine-tuning epoch over the same images (batch 32): ${median(epochTimes).toFixed(2)} s; ratio **${ratio.toFixed(2)}×**.`,
  '',
].join('\n');
console.log(md);
writeResults('selection', result, md);
