// Training-step benchmark: a 784-256-256-10 MLP (batch 64) written with
// sparsetune's typed ops and their custom gradients, against the same model
// in plain tfjs ops with tfjs's own gradients, on the same backend, timed in
// interleaved rounds in one process. Also measures plain matMul throughput,
// the backend's practical peak for this work.
//
//   npm run bench:step [-- --backend wasm --rounds 40]
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { biasAdd, checked, initBackend, linear, logSoftmax, randomNormal, relu, rng, type BackendName, type Tensor } from '../src/index.js';
import { machine, median, sideBySide, writeResults } from './lib.js';

const { values: opts } = parseArgs({
  options: { backend: { type: 'string', default: 'wasm' }, rounds: { type: 'string', default: '40' }, batch: { type: 'string', default: '64' } },
});
await initBackend(opts.backend as BackendName);
const rounds = Number(opts.rounds);
const batch = Number(opts.batch);
const sizes = [784, 256, 256, 10] as const;
const r = rng(0);

const layers = sizes.slice(1).map((out, i) => {
  const inp = sizes[i]!;
  return { w: tf.variable(randomNormal(r.fork(`w${i}`), [inp, out], Math.sqrt(2 / inp))), b: tf.variable(tf.zeros([out])) };
});
const vars = layers.flatMap((l) => [l.w, l.b]);
const x = randomNormal(r.fork('x'), [batch, 784]);
const labels = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), 'int32'), 10);

type Act = Tensor<readonly ['B', number]>;
type T2 = Tensor<readonly [number, number]>;
type T1 = Tensor<readonly [number]>;

function crossEntropy(logp: tf.Tensor): tf.Scalar {
  return tf.neg(tf.mean(tf.sum(tf.mul(labels, logp), -1))) as tf.Scalar;
}

const forward = {
  sparsetune: (): tf.Scalar => {
    let h: Act = checked(x, ['B', 784]);
    layers.forEach((l, i) => {
      const z = biasAdd(linear(h, l.w as unknown as T2), l.b as unknown as T1);
      h = i < layers.length - 1 ? relu(z) : z;
    });
    return crossEntropy(logSoftmax(h));
  },
  stock: (): tf.Scalar => {
    let h: tf.Tensor = x;
    layers.forEach((l, i) => {
      const z = tf.add(tf.matMul(h, l.w), l.b);
      h = i < layers.length - 1 ? tf.relu(z) : z;
    });
    return crossEntropy(tf.logSoftmax(h));
  },
};

const lr = 1e-3;
const step = (loss: () => tf.Scalar) => () => {
  tf.tidy(() => {
    const { grads } = tf.variableGrads(loss, vars);
    for (const v of vars) v.assign(tf.sub(v, tf.mul(grads[v.name]!, lr)));
  });
  vars[0]!.dataSync(); // wait for the backend
};

// Sanity: both compute the same gradients.
const g1 = tf.variableGrads(forward.sparsetune, vars).grads;
const g2 = tf.variableGrads(forward.stock, vars).grads;
const maxDiff = Math.max(...vars.map((v) => tf.max(tf.abs(tf.sub(g1[v.name]!, g2[v.name]!))).dataSync()[0]!));
if (!(maxDiff < 1e-4)) throw new Error(`gradients disagree by ${maxDiff}`);

const macs = sizes.slice(1).reduce((s, out, i) => s + sizes[i]! * out, 0) * batch;
const stepFlops = 3 * 2 * macs; // forward, input gradient and weight gradient: one matmul each
const before = tf.memory().numTensors;
const times = sideBySide({ sparsetune: step(forward.sparsetune), stock: step(forward.stock) }, rounds);
const leaked = tf.memory().numTensors - before;

// Practical peak: plain matMul of the largest layer's forward shape, and a square one.
const peak = (m: number, k: number, n: number) => {
  const a = randomNormal(r.fork(`a${m}`), [m, k]);
  const b = randomNormal(r.fork(`b${n}`), [k, n]);
  // (Not tf.tidy(() => c.dataSync()): tidy walks a returned typed array entry by entry.)
  const mm = () => {
    const c = tf.matMul(a, b);
    c.dataSync();
    c.dispose();
  };
  const t = sideBySide({ mm }, 20).mm!;
  return (2 * m * k * n) / (median(t) * 1e6);
};
const peakLayer = peak(batch, 784, 256);
const peakSquare = peak(512, 512, 512);

const rows = Object.entries(times).map(([name, t]) => {
  const ms = median(t);
  return { name, msPerStep: ms, gflops: stepFlops / (ms * 1e6) };
});
const ours = rows.find((x) => x.name === 'sparsetune')!;
const stock = rows.find((x) => x.name === 'stock')!;
const result = {
  machine: machine(),
  model: 'mlp 784-256-256-10',
  batch,
  rounds,
  stepFlops,
  rows,
  speedup: stock.msPerStep / ours.msPerStep,
  matmulGflops: { layerShape: peakLayer, square512: peakSquare },
  fractionOfPeak: ours.gflops / peakSquare,
  leakedTensors: leaked,
};
const md = [
  `# Training step, ${result.model}, batch ${batch}, ${result.machine.backend as string}`,
  '',
  `Command: \`npm run bench:step -- --backend ${opts.backend} --rounds ${rounds} --batch ${batch}\` (${result.machine.date as string}, ${result.machine.cpu as string}).`,
  'Medians of interleaved rounds in one process.',
  '',
  '| implementation | ms/step | effective GFLOP/s |',
  '| --- | ---: | ---: |',
  ...rows.map((x) => `| ${x.name} | ${x.msPerStep.toFixed(2)} | ${x.gflops.toFixed(1)} |`),
  '',
  `Speed-up over stock tfjs gradients: **${result.speedup.toFixed(2)}×**.`,
  `Plain matMul on this backend: ${peakLayer.toFixed(1)} GFLOP/s at [${batch}×784]·[784×256], ${peakSquare.toFixed(1)} GFLOP/s at 512³; the sparsetune step reaches ${(100 * result.fractionOfPeak).toFixed(0)}% of the latter.`,
  `Tensors leaked over ${rounds + 3} steps each: ${leaked}.`,
  '',
].join('\n');
console.log(md);
writeResults(`step-${opts.backend}`, result, md);
