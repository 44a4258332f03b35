// Data-parallel benchmark: samples per second of fine-tuning (full and a
// sparse GPS mask) and of GPS's selection pass on the shipped ViT, in this
// thread and over worker pools of 1 and 2 threads (workerPool,
// sparsetune/node), timed in interleaved rounds in one process, medians
// reported with the load average before and after (the 2-core machine is
// often shared: compare the columns of one run, not runs with each other).
// "2 workers, 2× batch" gives each worker the shard 1 worker computes alone.
//
//   npm run bench:workers [-- --rounds 5 --batch 64 --steps 6 --samples 512]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { fineTune, gps, gradient, initBackend, scoresOf, select, selectionEnv, type GradientEngine, type Mask } from '../src/index.js';
import { digits, loadBackbone, workerPool } from '../src/node/index.js';
import { machine, median, writeResults } from './lib.js';

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    batch: { type: 'string', default: '64' },
    steps: { type: 'string', default: '6' },
    samples: { type: 'string', default: '512' },
  },
});
const rounds = Number(opts.rounds);
const batch = Number(opts.batch);
const steps = Number(opts.steps);
const samples = Number(opts.samples);
await initBackend('wasm');
const load0 = loadavg();
const { model, params } = loadBackbone('vit');
// The digits task's training images (same 28×28×1 shape and head width as the backbone).
const task = digits({ trainSize: Math.max(samples, 2 * batch * steps), seed: 0 });
/** `steps` batches of `b` training images. */
const trainFor = (b: number) => ({ ...task.train, n: b * steps, images: task.train.images.subarray(0, b * steps * 784), labels: task.train.labels.subarray(0, b * steps) });
const selectData = { ...task.train, n: samples, images: task.train.images.subarray(0, samples * 784), labels: task.train.labels.subarray(0, samples) };
const full: Mask = { spec: model.spec, bits: Object.fromEntries(Object.entries(model.spec).map(([p, s]) => [p, new Uint8Array(s.shape.reduce((a, b) => a * b, 1)).fill(1)])) };
const gpsMask = select(gps({ k: 1 }), selectionEnv({ model, params, data: selectData, seed: 0 }));
const pools = { '1 worker': await workerPool({ workers: 1 }), '2 workers': await workerPool({ workers: 2 }) };
const contenders: Record<string, GradientEngine | undefined> = { 'this thread': undefined, ...pools, '2 workers, 2× batch': pools['2 workers'] };
// '2 workers, 2× batch' gives each worker the shard 1 worker gets: what the two cores
// give for the same work per thread, with nothing of the pool's own cost changed.
const batchOf = (c: string) => (c === '2 workers, 2× batch' ? 2 * batch : batch);

/** Median ms of the steps of one fineTune run (the first step, which warms caches, left out). */
function stepMs(mask: Mask, parallel: GradientEngine | undefined, b: number): number[] {
  const stamps: number[] = [];
  const r = fineTune({ model, params, mask, train: trainFor(b), epochs: 1, batchSize: b, learningRate: 1e-4, progressBar: false, onStep: () => stamps.push(performance.now()), ...(parallel ? { parallel } : {}) });
  tf.dispose(Object.values(r.params).filter((t) => !Object.values(params).includes(t)));
  return stamps.slice(1).map((t, i) => t - stamps[i]!);
}
/** ms of one GPS selection pass (gradient scores, SupCon on two views) over `samples` images in batches of `batch`. */
function selectMs(parallel: GradientEngine | undefined): number {
  const t0 = performance.now();
  scoresOf(selectionEnv({ model, params, data: selectData, seed: 0, ...(parallel ? { parallel } : {}) }), gradient({ batchSize: batch }));
  return performance.now() - t0;
}

const jobs = {
  'full fine-tuning': (e: GradientEngine | undefined, b: number) => stepMs(full, e, b),
  'GPS fine-tuning (sparse mask)': (e: GradientEngine | undefined, b: number) => stepMs(gpsMask, e, b),
  'GPS selection pass': (e: GradientEngine | undefined) => [selectMs(e)],
} as const;
const fineTuning = (j: string) => j !== 'GPS selection pass';
const times: Record<string, Record<string, number[]>> = Object.fromEntries(Object.keys(jobs).map((j) => [j, Object.fromEntries(Object.keys(contenders).filter((c) => fineTuning(j) || batchOf(c) === batch).map((c) => [c, [] as number[]]))]));
const before = tf.memory().numTensors;
const workerTensors = Object.values(pools).map((p) => p.tensors());
// One warm-up round, then interleaved rounds: every contender of every job in each round.
for (let round = 0; round <= rounds; round++) {
  for (const [j, run] of Object.entries(jobs)) {
    for (const [c, engine] of Object.entries(contenders)) {
      if (!fineTuning(j) && batchOf(c) !== batch) continue;
      const t = run(engine, batchOf(c));
      if (round > 0) times[j]![c]!.push(...t);
    }
  }
}
const leaked = tf.memory().numTensors - before;
const leakedInWorkers = Object.values(pools).map((p, i) => p.tensors().map((n, k) => n - workerTensors[i]![k]!));
await Promise.all(Object.values(pools).map((p) => p.terminate()));
const load1 = loadavg();

const rows = Object.entries(times).map(([job, byContender]) => {
  const perSample = job === 'GPS selection pass' ? samples : batch;
  const sps = Object.fromEntries(Object.entries(byContender).map(([c, t]) => [c, (perSample * batchOf(c) * 1000) / (batch * median(t))]));
  const double = sps['2 workers, 2× batch'];
  return { job, samplesPerSecond: sps, speedup2v1: sps['2 workers']! / sps['1 worker']!, speedup2vThread: sps['2 workers']! / sps['this thread']!, ...(double === undefined ? {} : { doubleBatch2v1: double / sps['1 worker']! }) };
});
const result = { machine: machine(), loadAverage: { before: load0, after: load1 }, batch, steps, samples, rounds, rows, leakedTensors: leaked, leakedInWorkers };
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
const md = [
  `# Worker threads: ViT samples per second, batch ${batch}, wasm`,
  '',
  `Command: \`npm run bench:workers -- --rounds ${rounds} --batch ${batch} --steps ${steps} --samples ${samples}\` (${result.machine['date'] as string}, ${result.machine['cpu'] as string}, ${result.machine['cores'] as number} cores).`,
  `Load average (1, 5, 15 min) before: ${fmt(load0)}; after: ${fmt(load1)}. On a shared machine compare the columns of one run only.`,
  `Medians over ${rounds} interleaved rounds (after one warm-up round) in one process: fine-tuning per step (${steps - 1} timed steps a run), the selection pass (SupCon gradients of two views, ${samples} images) per pass.`,
  '',
  '| job | this thread | 1 worker | 2 workers | 2 workers / 1 worker | 2 workers / this thread | 2 workers at 2× batch / 1 worker |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.job} | ${r.samplesPerSecond['this thread']!.toFixed(0)} | ${r.samplesPerSecond['1 worker']!.toFixed(0)} | ${r.samplesPerSecond['2 workers']!.toFixed(0)} | ${r.speedup2v1.toFixed(2)}× | ${r.speedup2vThread.toFixed(2)}× | ${r.doubleBatch2v1 === undefined ? '' : `${r.doubleBatch2v1.toFixed(2)}×`} |`),
  '',
  `The last column runs fine-tuning at batch ${2 * batch} over 2 workers, so each worker computes the ${batch}-sample shard 1 worker computes alone: what two threads doing the same work at once give on this machine, the pool's own per-step cost unchanged.`,
  '',
  `Samples per second. Tensors leaked over every timed run: ${leaked} in this thread, ${JSON.stringify(leakedInWorkers)} in the workers.`,
  '',
].join('\n');
console.log(md);
writeResults(`workers-wasm-b${batch}`, result, md);
