// What re-selection during training costs: fineTune on the shipped ViT over
// 800 digits images, two epochs at batch 32 (50 steps), the same run with and
// without `reselect` (every 10 steps: 4 re-selections), for GPS (each
// re-selection is a SupCon gradient pass over the training set) and FPS (a
// forward pass), side by side in interleaved rounds in one process.
//
//   npm run bench:reselect [-- --rounds 3 --every 10]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, paths, type Params } from '../src/index.js';
import { buildTask } from '../src/node/index.js';
import { BACKBONES, replaceHead } from '../src/models/index.js';
import { fps, gps, type Selector } from '../src/selection/index.js';
import { fineTune } from '../src/optim/index.js';
import { machine, median, writeResults } from './lib.js';

const { values: opts } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, every: { type: 'string', default: '10' } } });
const rounds = Number(opts.rounds);
const every = Number(opts.every);
await initBackend('wasm');
const task = buildTask('digits', { testSize: 1 });
const model = BACKBONES.vit().withClasses(10);
const base = model.init(0);
const params = replaceHead(model, base, 1);
const epochs = 2;
const batchSize = 32;

const runs: Record<string, () => Selector> = { gps: () => gps({ k: 1 }), fps: () => fps({ k: 1 }) };
const times: Record<string, number[]> = {};
const counts: Record<string, number> = {};
const loadBefore = loadavg();
const before = tf.memory().numTensors;
for (let i = 0; i < rounds; i++) {
  for (const [name, selector] of Object.entries(runs)) {
    for (const reselect of [false, true]) {
      const key = `${name}${reselect ? '+reselect' : ''}`;
      const t0 = performance.now();
      const r = fineTune({ model, params, mask: selector(), train: task.train, epochs, batchSize, seed: i, progressBar: false, ...(reselect ? { reselect: { every } } : {}) });
      (times[key] ??= []).push((performance.now() - t0) / 1000);
      counts[key] = r.reselections.length;
      tf.dispose(paths(r.params).filter((p) => r.params[p] !== params[p]).map((p) => (r.params as Params)[p]!));
    }
  }
}
const leaked = tf.memory().numTensors - before;
const loadAfter = loadavg();
const steps = epochs * Math.ceil(task.train.n / batchSize);
const rows = Object.keys(runs).map((name) => {
  const plain = median(times[name]!);
  const re = median(times[`${name}+reselect`]!);
  return { criterion: name, seconds: plain, reselectSeconds: re, reselections: counts[`${name}+reselect`]!, ratio: re / plain, perReselection: (re - plain) / counts[`${name}+reselect`]! };
});
const result = { machine: machine(), loadavg: { before: loadBefore, after: loadAfter }, rounds, every, epochs, batchSize, steps, images: task.train.n, rows, leakedTensors: leaked };
const md = [
  '# Re-selection during training: its cost',
  '',
  `Command: \`npm run bench:reselect -- --rounds ${rounds} --every ${every}\` (${result.machine['date'] as string}, ${result.machine['cpu'] as string}, load average ${loadBefore.map((x) => x.toFixed(1)).join(' ')} before and ${loadAfter.map((x) => x.toFixed(1)).join(' ')} after). fineTune on the shipped ViT, ${task.train.n} digits images, ${epochs} epochs at batch ${batchSize} (${steps} steps), with and without \`reselect: { every: ${every} }\`; medians of ${rounds} interleaved rounds (each run includes its first selection).`,
  '',
  '| criterion | fineTune s | with re-selection s | re-selections | ratio | s per re-selection |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.criterion} | ${r.seconds.toFixed(1)} | ${r.reselectSeconds.toFixed(1)} | ${r.reselections} | ${r.ratio.toFixed(2)}× | ${r.perReselection.toFixed(2)} |`),
  '',
  `Tensors leaked over every run: ${leaked}.`,
  '',
].join('\n');
console.log(md);
writeResults('reselect', result, md);
