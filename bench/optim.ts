// Optimizer benchmarks on the ViT backbone (wasm), side by side in one run:
//  1. a masked AdamW step (GPS mask) ÷ an unmasked AdamW step;
//  2. optimizer-state bytes with sparse state and a 1% selection ÷ dense Adam state;
//  3. the size of a GPS delta file ÷ the full checkpoint;
//  4. tf.memory().numTensors before and after 1,000 masked steps.
//
//   npm run bench:optim [-- --rounds 20 --steps 1000]
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, paths, rng, type Params, type Tensor } from '../src/index.js';
import { subset, toTensors } from '../src/data/index.js';
import { buildTask } from '../src/node/index.js';
import { BACKBONES, crossEntropy, replaceHead } from '../src/models/index.js';
import { saveCheckpoint } from '../src/formats/index.js';
import { countMask, fraction, gps, net, random, select, selectionEnv } from '../src/selection/index.js';
import { adamw, applyUpdates, disposeReplaced, fineTune, trainOnly, trainableLeaves, type GradientTransformation, type OptState } from '../src/optim/index.js';
import { extractDelta, saveDelta } from '../src/formats/index.js';
import { machine, median, sideBySide, writeResults } from './lib.js';

const { values: opts } = parseArgs({ options: { rounds: { type: 'string', default: '20' }, steps: { type: 'string', default: '1000' } } });
const rounds = Number(opts.rounds);
const longSteps = Number(opts.steps);
await initBackend('wasm');
const task = buildTask('digits', { testSize: 1 });
const model = BACKBONES.vit().withClasses(10);
const params = replaceHead(model, model.init(0), 1);
const env = selectionEnv({ model, params, data: task.train, seed: 0 });
const gpsMask = select(gps({ k: 1 }), env);
const { x, y } = toTensors(subset(task.train, rng(0).shuffle([...Array(task.train.n).keys()]).slice(0, 32)));

/** A training step over `leaves`, closing over its own parameters and state. */
function stepper(tx: GradientTransformation, leaves: readonly string[], apply: (p: Params, u: Params) => Params): () => void {
  const frozen = Object.fromEntries(paths(params).filter((p) => !leaves.includes(p)).map((p) => [p, params[p]!]));
  let current: Params = Object.fromEntries(leaves.map((p) => [p, tf.clone(params[p]!)]));
  let state: OptState = tf.tidy(() => tx.init(current));
  return () => {
    const out = tf.tidy(() => {
      const loss = (...ts: tf.Tensor[]) => crossEntropy(model.apply({ ...frozen, ...Object.fromEntries(leaves.map((p, i) => [p, ts[i]!])) }, x as Tensor<readonly ['B', 28, 28, 1]>).logits, y as Tensor<readonly ['B']>) as tf.Scalar;
      const grads = tf.grads(loss)(leaves.map((p) => current[p]!));
      const [u, next] = tx.update(Object.fromEntries(leaves.map((p, i) => [p, grads[i]!])), state, current);
      return { p: apply(current, u), next };
    });
    Object.values(current).forEach((t) => t.dispose());
    disposeReplaced(state, out.next);
    current = out.p;
    state = out.next;
    Object.values(current)[0]!.dataSync();
  };
}

// 1. Masked vs unmasked AdamW. Both differentiate every leaf the GPS mask touches
// (the masked step would skip frozen leaves, which would flatter it).
const leaves = trainableLeaves(gpsMask);
const times = sideBySide(
  {
    masked: stepper(trainOnly(adamw(1e-3), gpsMask), leaves, (p, u) => applyUpdates(p, u)),
    unmasked: stepper(adamw(1e-3), leaves, (p, u) => applyUpdates(p, u)),
  },
  rounds,
);
const overhead = median(times.masked!) / median(times.unmasked!);

// 2. State memory with a 1% selection.
const onePercent = select(net(fraction(0.01), random()), env);
const stateBytes = (s: OptState): number => (s instanceof tf.Tensor ? s.size * 4 : s && typeof s === 'object' ? Object.values(s).reduce((n: number, v) => n + stateBytes(v as OptState), 0) : 0);
const sparse = tf.tidy(() => trainOnly(adamw(1e-3), onePercent).init(Object.fromEntries(trainableLeaves(onePercent).map((p) => [p, params[p]!]))).inner);
const dense = tf.tidy(() => adamw(1e-3).init(params));
const memory = { sparseBytes: stateBytes(sparse), denseBytes: stateBytes(dense), ratio: stateBytes(sparse) / stateBytes(dense), selected: countMask(onePercent).trainable };
tf.dispose([sparse, dense] as unknown as tf.Tensor[]);

// 3. Delta size after a short GPS fine-tune, and 4. tensors across many masked steps.
const tuned = fineTune({ model, params, mask: gpsMask, train: task.train, epochs: 1, progressBar: false });
const deltaBytes = saveDelta(extractDelta(model.spec, params, tuned.params, gpsMask)).length;
const checkpointBytes = saveCheckpoint(model.spec, params).length;
const long = stepper(trainOnly(adamw(1e-3), gpsMask), leaves, (p, u) => applyUpdates(p, u));
long();
const before = tf.memory().numTensors;
const t0 = performance.now();
for (let i = 0; i < longSteps; i++) long();
const leak = { steps: longSteps, before, after: tf.memory().numTensors, seconds: (performance.now() - t0) / 1000 };

const result = {
  machine: machine(),
  rounds,
  gpsTrainable: countMask(gpsMask).trainable,
  maskedStep: { maskedMs: median(times.masked!), unmaskedMs: median(times.unmasked!), ratio: overhead },
  memory,
  delta: { deltaBytes, checkpointBytes, ratio: deltaBytes / checkpointBytes },
  leak,
};
const md = [
  '# Masked optimisation on the ViT backbone (wasm)',
  '',
  `Command: \`npm run bench:optim -- --rounds ${rounds} --steps ${longSteps}\` (${result.machine['date'] as string}, ${result.machine['cpu'] as string}). Batch 32; GPS mask (k = 1) with ${result.gpsTrainable.toLocaleString('en-US')} trainable entries.`,
  '',
  '| measure | value |',
  '| --- | ---: |',
  `| masked AdamW step (sparse state) | ${result.maskedStep.maskedMs.toFixed(1)} ms |`,
  `| unmasked AdamW step, same leaves | ${result.maskedStep.unmaskedMs.toFixed(1)} ms |`,
  `| masked ÷ unmasked | **${overhead.toFixed(3)}** |`,
  `| Adam state, 1% selection (${memory.selected.toLocaleString('en-US')} entries), sparse | ${memory.sparseBytes.toLocaleString('en-US')} B |`,
  `| Adam state, dense | ${memory.denseBytes.toLocaleString('en-US')} B |`,
  `| sparse ÷ dense | **${(100 * memory.ratio).toFixed(2)}%** |`,
  `| GPS delta file | ${deltaBytes.toLocaleString('en-US')} B |`,
  `| full checkpoint | ${checkpointBytes.toLocaleString('en-US')} B |`,
  `| delta ÷ checkpoint | **${(100 * result.delta.ratio).toFixed(2)}%** |`,
  `| tensors before / after ${longSteps} masked steps | ${leak.before} / ${leak.after} |`,
  '',
].join('\n');
console.log(md);
writeResults('optim', result, md);
