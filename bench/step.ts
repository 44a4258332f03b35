// Training-step benchmark: each backbone (MLP, CNN, ViT) trained with
// sparsetune's custom gradients, against the same model with every matmul
// and convolution routed through plain tfjs ops and tfjs's own gradients
// (useStockGradients), on the same backend, timed in interleaved rounds in
// one process. Plain matMul throughput is measured too, as the backend's
// practical peak.
//
//   npm run bench:step [-- --backend wasm --rounds 20 --batch 32 --input 28,28,1]
//
// --input times the same architectures on samples of another shape (H,W,C),
// e.g. 32,32,3 with --patch 8 (the ViT's patch, default 7, must divide H
// and W); the default is the shipped backbones' 28×28×1.
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { checked, initBackend, randomNormal, rng, useStockGradients, type BackendName, type Params, type Tensor } from '../src/index.js';
import { BACKBONES, cnn, crossEntropy, mlp, vit, type BackboneName, type Model } from '../src/models/index.js';
import { machine, median, sideBySide, writeResults } from './lib.js';

const { values: opts } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    rounds: { type: 'string', default: '20' },
    batch: { type: 'string', default: '32' },
    input: { type: 'string', default: '28,28,1' },
    patch: { type: 'string' },
  },
});
const input = opts.input.split(',').map(Number) as [number, number, number];
if (input.length !== 3 || !input.every((d) => Number.isInteger(d) && d > 0)) throw new RangeError(`--input must be H,W,C, got ${opts.input}`);
const standard = input.join(',') === '28,28,1';
/** A backbone's architecture at the chosen input shape (the shipped one itself at 28×28×1). */
function build(name: BackboneName): Model<readonly number[], number, number> {
  if (standard && opts.patch === undefined) return BACKBONES[name]();
  const c = BACKBONES[name]().config as Record<string, unknown>;
  if (name === 'mlp') return mlp({ input, hidden: c['hidden'] as number[], classes: 10 });
  if (name === 'cnn') return cnn({ input, channels: c['channels'] as number[], features: c['features'] as number, classes: 10 });
  return vit({ input, patch: opts.patch === undefined ? (c['patch'] as number) : Number(opts.patch), width: c['width'] as number, depth: c['depth'] as number, heads: c['heads'] as number, classes: 10 }) as Model<readonly number[], number, number>;
}
await initBackend(opts.backend as BackendName);
const rounds = Number(opts.rounds);
const batch = Number(opts.batch);
const r = rng(0);
const x = checked(randomNormal(r.fork('x'), [batch, ...input]), ['B', ...input]);
const y = checked(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), 'int32'), ['B']);

/** Multiply-accumulates of one forward pass per sample, from the model's config. */
function forwardMacs(name: BackboneName, config: Record<string, unknown>): number {
  if (name === 'mlp') {
    const widths = [input[0] * input[1] * input[2], ...(config['hidden'] as number[]), 10];
    return widths.slice(1).reduce((s, w, i) => s + widths[i]! * w, 0);
  }
  if (name === 'cnn') {
    let [h, w, c] = input;
    let macs = 0;
    for (const out of config['channels'] as number[]) {
      macs += h * w * 9 * c * out;
      [h, w, c] = [Math.floor(h / 2), Math.floor(w / 2), out];
    }
    const f = config['features'] as number;
    return macs + h * w * c * f + f * 10;
  }
  const [d, depth, patch, hidden] = ['width', 'depth', 'patch', 'mlpHidden'].map((k) => config[k] as number) as [number, number, number, number];
  const t = (input[0] / patch) * (input[1] / patch) + 1;
  const perBlock = t * (d * 3 * d + d * d + 2 * d * hidden) + 2 * t * t * d;
  return (t - 1) * patch * patch * d + depth * perBlock + d * 10;
}

type Row = { model: string; implementation: string; msPerStep?: number; gflops?: number; error?: string };
const rows: Row[] = [];
let leaked = 0;
for (const name of Object.keys(BACKBONES) as BackboneName[]) {
  const model = build(name);
  const vars = Object.fromEntries(Object.entries(model.init(0)).map(([p, t]) => [p, tf.variable(t)])) as Params;
  const step = (stock: boolean) => () => {
    useStockGradients(stock);
    try {
      tf.tidy(() => {
        const { grads } = tf.variableGrads(() => crossEntropy(model.apply(vars, x).logits as Tensor<readonly ['B', number]>, y) as tf.Scalar);
        for (const v of Object.values(vars) as tf.Variable[]) v.assign(tf.sub(v, tf.mul(grads[v.name]!, 1e-3)));
      });
      (Object.values(vars)[0] as tf.Variable).dataSync();
    } finally {
      useStockGradients(false);
    }
  };
  const contenders: Record<string, () => void> = { sparsetune: step(false) };
  try {
    step(true)();
    contenders['stock tfjs'] = step(true);
  } catch (e) {
    rows.push({ model: name, implementation: 'stock tfjs', error: (e as Error).message.split('\n')[0]! });
  }
  const flops = 3 * 2 * forwardMacs(name, model.config) * batch;
  const before = tf.memory().numTensors;
  const times = sideBySide(contenders, rounds);
  leaked += tf.memory().numTensors - before;
  for (const [impl, t] of Object.entries(times)) rows.push({ model: name, implementation: impl, msPerStep: median(t), gflops: flops / (median(t) * 1e6) });
  Object.values(vars).forEach((v) => v.dispose());
}

// Practical peak of the backend: a square matMul.
const a = randomNormal(r.fork('a'), [512, 512]);
const b = randomNormal(r.fork('b'), [512, 512]);
// (Not tf.tidy(() => c.dataSync()): tidy walks a returned typed array entry by entry.)
const mm = () => {
  const c = tf.matMul(a, b);
  c.dataSync();
  c.dispose();
};
const peak = (2 * 512 ** 3) / (median(sideBySide({ mm }, 20).mm!) * 1e6);

const speedups = Object.fromEntries(
  (Object.keys(BACKBONES) as BackboneName[]).map((name) => {
    const ours = rows.find((x) => x.model === name && x.implementation === 'sparsetune')!;
    const stock = rows.find((x) => x.model === name && x.implementation === 'stock tfjs');
    return [name, stock?.msPerStep ? stock.msPerStep / ours.msPerStep! : null];
  }),
);
const result = { machine: machine(), batch, rounds, input, rows, speedups, matmulPeakGflops: peak, leakedTensors: leaked };
const md = [
  `# Training step, batch ${batch}${standard ? '' : `, input ${input.join('×')}`}, ${result.machine['backend'] as string}`,
  '',
  `Command: \`npm run bench:step -- --backend ${opts.backend} --rounds ${rounds} --batch ${batch}${standard ? '' : ` --input ${opts.input}`}${opts.patch === undefined ? '' : ` --patch ${opts.patch}`}\` (${result.machine['date'] as string}, ${result.machine['cpu'] as string}, ${result.machine['cores'] as number} cores).`,
  'Medians of interleaved rounds in one process. "stock tfjs" is the same model with every matmul and convolution on plain tfjs ops and their registered gradients.',
  '',
  '| model | implementation | ms/step | effective GFLOP/s | % of matMul peak | speed-up |',
  '| --- | --- | ---: | ---: | ---: | ---: |',
  ...rows.map((x) =>
    x.error
      ? `| ${x.model} | ${x.implementation} | fails: ${x.error} | | | |`
      : `| ${x.model} | ${x.implementation} | ${x.msPerStep!.toFixed(1)} | ${x.gflops!.toFixed(1)} | ${((100 * x.gflops!) / peak).toFixed(0)}% | ${x.implementation === 'sparsetune' && speedups[x.model] ? `${speedups[x.model]!.toFixed(2)}×` : ''} |`,
  ),
  '',
  `Plain 512×512×512 matMul on this backend: ${peak.toFixed(1)} GFLOP/s. Tensors leaked by all the timed steps: ${leaked}.`,
  '',
].join('\n');
console.log(md);
writeResults(`step-${opts.backend}-b${batch}${standard ? '' : `-${input.join('x')}`}`, result, md);
