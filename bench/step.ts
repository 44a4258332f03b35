// Training-step benchmark, two parts, each timed in interleaved rounds in
// one process:
//
// - methods: per backbone (MLP, CNN, ViT), `fineTune` itself with full
//   fine-tuning, GPS (top-1 per neuron, biases and head whole), BitFit and
//   linear probing side by side: ms per step and samples per second, from
//   the second epoch of each run (linear probing's first epoch computes the
//   features it then reuses), and each method's epoch against full's.
// - gradients: each backbone trained with sparsetune's kernels against the
//   same model with every matmul and convolution routed through plain tfjs
//   ops and tfjs's own gradients (useStockGradients), on the same backend.
//
// Plain matMul throughput is measured too, as the backend's practical peak.
//
//   npm run bench:step [-- --backend wasm --rounds 20 --batch 32,64 --method-rounds 5 --input 28,28,1 --k 1]
//
// --k sets GPS's entries per neuron (default 1); the "gps, dense gradients"
// row is the same GPS run with sparse weight gradients off, the cost model's
// two sides (SPARSE_ENTRY_COST).
//
// --input times the same architectures on samples of another shape (H,W,C),
// e.g. 32,32,3 with --patch 8 (the ViT's patch, default 7, must divide H
// and W); the default is the shipped backbones' 28×28×1.
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { loadavg } from 'node:os';
import { checked, initBackend, randomNormal, rng, useStockGradients, type BackendName, type Params, type Tensor } from '../src/index.js';
import { subset } from '../src/data/index.js';
import { BACKBONES, cnn, crossEntropy, mlp, vit, type BackboneName, type Model } from '../src/models/index.js';
import { fineTune } from '../src/optim/index.js';
import { bitfit, gps, linearProbe, select, selectionEnv, type Mask } from '../src/selection/index.js';
import { machine, median, sideBySide, writeResults } from './lib.js';

const { values: opts } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    rounds: { type: 'string', default: '20' },
    batch: { type: 'string', default: '32,64' },
    'method-rounds': { type: 'string', default: '5' },
    models: { type: 'string', default: 'vit,cnn,mlp' },
    input: { type: 'string', default: '28,28,1' },
    patch: { type: 'string' },
    k: { type: 'string', default: '1' },
  },
});
const k = Number(opts.k);
if (!Number.isInteger(k) || k < 1) throw new RangeError(`--k must be a positive integer, got ${opts.k}`);
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
const batchSizes = opts.batch.split(',').map(Number);
const r = rng(0);
const loadBefore = loadavg();

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

type Row = { model: string; batch: number; implementation: string; msPerStep?: number; gflops?: number; error?: string };
const rows: Row[] = [];
let leaked = 0;
for (const batch of batchSizes) {
const x = checked(randomNormal(r.fork(`x${batch}`), [batch, ...input]), ['B', ...input]);
const y = checked(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), 'int32'), ['B']);
for (const name of opts.models.split(',') as BackboneName[]) {
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
    rows.push({ model: name, batch, implementation: 'stock tfjs', error: (e as Error).message.split('\n')[0]! });
  }
  const flops = 3 * 2 * forwardMacs(name, model.config) * batch;
  const before = tf.memory().numTensors;
  const times = sideBySide(contenders, rounds);
  leaked += tf.memory().numTensors - before;
  for (const [impl, t] of Object.entries(times)) rows.push({ model: name, batch, implementation: impl, msPerStep: median(t), gflops: flops / (median(t) * 1e6) });
  Object.values(vars).forEach((v) => v.dispose());
}
tf.dispose([x, y]);
}

// --- Methods side by side, through fineTune itself. Random images and labels:
// the cost of a step does not depend on what the pixels hold. Each run is
// two epochs of `stepsPerEpoch` steps; a step's time is the second epoch's
// over its steps (the first warms up, and for linear probing includes
// nothing but head steps after the features are computed once).
const methodRounds = Number(opts['method-rounds']);
const stepsPerEpoch = 4;
type MethodRow = { model: string; batch: number; method: string; workers: number; msPerStep: number; samplesPerSecond: number; epochRatio: number; firstEpochRatio: number; matmulPeakFraction?: number; sparseGradientLeaves: number; cachedFeatures: boolean };
const methodRows: MethodRow[] = [];
for (const batch of batchSizes) {
  const n = batch * stepsPerEpoch;
  const g = rng(1).fork(`data${batch}`);
  const data = { images: Float32Array.from({ length: n * input.reduce((p, d) => p * d, 1) }, () => g.uniform()), labels: Int32Array.from({ length: n }, (_, i) => i % 10), n, shape: input };
  for (const name of opts.models.split(',') as BackboneName[]) {
    const model = build(name);
    const params = model.init(0);
    const env = selectionEnv({ model, params, data: subset(data, [...Array(Math.min(n, 64)).keys()]), seed: 0 });
    const gpsMask = select(gps({ k }), env);
    const masks: Record<string, Mask | undefined> = { full: undefined, gps: gpsMask, 'gps, dense gradients': gpsMask, bitfit: select(bitfit(), env), linear: select(linearProbe(), env) };
    const all = masks['gps']!.spec;
    const fullMask: Mask = { spec: all, bits: Object.fromEntries(Object.entries(masks['gps']!.bits).map(([p, b]) => [p, new Uint8Array(b.length).fill(1)])) };
    masks['full'] = fullMask;
    const times: Record<string, { epoch: number[]; first: number[]; sparse: number; cached: boolean }> = {};
    const before = tf.memory().numTensors;
    const contenders = Object.fromEntries(
      Object.entries(masks).map(([method, mask]) => [
        method,
        () => {
          const t0 = performance.now();
          const res = fineTune({ model, params, mask: mask!, train: data, epochs: 2, batchSize: batch, progressBar: false, sparseGradients: method !== 'gps, dense gradients' });
          const total = (performance.now() - t0) / 1000;
          const t = (times[method] ??= { epoch: [], first: [], sparse: res.sparseGradientLeaves.length, cached: res.cachedFeatures });
          t.epoch.push(res.history[1]!.seconds - res.history[0]!.seconds);
          // Everything before the second epoch: features (when cached) and the first epoch.
          t.first.push(total - (res.history[1]!.seconds - res.history[0]!.seconds));
          tf.dispose(Object.keys(res.params).filter((p) => res.params[p] !== params[p]).map((p) => res.params[p]!));
        },
      ]),
    );
    sideBySide(contenders, methodRounds, 1);
    leaked += tf.memory().numTensors - before;
    const fullEpoch = median(times['full']!.epoch.slice(1));
    const flops = 3 * 2 * forwardMacs(name, model.config) * batch;
    for (const [method, t] of Object.entries(times)) {
      const epoch = median(t.epoch.slice(1));
      const ms = (1000 * epoch) / stepsPerEpoch;
      methodRows.push({
        model: name, batch, method, workers: 1, msPerStep: ms, samplesPerSecond: (1000 * batch) / ms, epochRatio: epoch / fullEpoch,
        firstEpochRatio: median(t.first.slice(1)) / fullEpoch, sparseGradientLeaves: t.sparse, cachedFeatures: t.cached,
        ...(method === 'full' ? { matmulPeakFraction: flops / (ms * 1e6) } : {}),
      });
    }
    tf.dispose(Object.values(params));
  }
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
for (const m of methodRows) if (m.matmulPeakFraction !== undefined) m.matmulPeakFraction /= peak;
const loadAfter = loadavg();

const key = (name: string, batch: number) => `${name}-b${batch}`;
const speedups = Object.fromEntries(
  batchSizes.flatMap((batch) =>
    (opts.models.split(',') as BackboneName[]).map((name) => {
      const ours = rows.find((x) => x.model === name && x.batch === batch && x.implementation === 'sparsetune')!;
      const stock = rows.find((x) => x.model === name && x.batch === batch && x.implementation === 'stock tfjs');
      return [key(name, batch), stock?.msPerStep ? stock.msPerStep / ours.msPerStep! : null];
    }),
  ),
);
const of = (m: MethodRow, method: string) => methodRows.find((x) => x.model === m.model && x.batch === m.batch && x.method === method)!;
const goals = methodRows
  .filter((m) => m.method === 'full')
  .map((m) => ({
    model: m.model,
    batch: m.batch,
    gpsOverBitfit: of(m, 'gps').msPerStep / of(m, 'bitfit').msPerStep,
    gpsOverFull: of(m, 'gps').msPerStep / m.msPerStep,
    bitfitOverFull: of(m, 'bitfit').msPerStep / m.msPerStep,
    linearEpochOverFull: of(m, 'linear').epochRatio,
    matmulPeakFraction: m.matmulPeakFraction!,
  }));
const result = { machine: machine(), loadavg: { before: loadBefore, after: loadAfter }, batchSizes, rounds, methodRounds, stepsPerEpoch, input, gpsK: k, methods: methodRows, goals, rows, speedups, matmulPeakGflops: peak, leakedTensors: leaked };
const pct = (v: number) => `${(100 * v).toFixed(0)}%`;
const command = `npm run bench:step -- --backend ${opts.backend} --rounds ${rounds} --batch ${opts.batch} --method-rounds ${methodRounds}${k === 1 ? '' : ` --k ${k}`}${opts.models === 'vit,cnn,mlp' ? '' : ` --models ${opts.models}`}${standard ? '' : ` --input ${opts.input}`}${opts.patch === undefined ? '' : ` --patch ${opts.patch}`}`;
const md = [
  `# Training step${standard ? '' : `, input ${input.join('×')}`}${k === 1 ? '' : `, GPS top-${k}`}, ${result.machine['backend'] as string}`,
  '',
  `Command: \`${command}\` (${result.machine['date'] as string}, ${result.machine['cpu'] as string}, ${result.machine['cores'] as number} cores, load average ${loadBefore.map((l) => l.toFixed(1)).join(' ')} before and ${loadAfter.map((l) => l.toFixed(1)).join(' ')} after).`,
  '',
  '## Methods, side by side',
  '',
  `\`fineTune\` on random ${input.join('×')} images, ${stepsPerEpoch} steps per epoch, two epochs per run, medians of ${methodRounds} interleaved rounds (the first dropped); a step is the second epoch over its steps. GPS is top-${k} per neuron with biases and head whole ("dense gradients": the same run with \`sparseGradients: false\`); "sparse leaves" counts the kernels whose gradient was computed at the selected entries only. "epoch ÷ full" compares the second epochs; "before ÷ full" is everything before the second epoch (linear probing: computing the features once, then its first epoch) against one full epoch.`,
  '',
  '| model | batch | method | ms/step | samples/s, 1 worker | epoch ÷ full | before ÷ full | % of matMul peak | sparse leaves | features cached |',
  '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ...methodRows.map((m) => `| ${m.model} | ${m.batch} | ${m.method} | ${m.msPerStep.toFixed(2)} | ${m.samplesPerSecond.toFixed(0)} | ${m.epochRatio.toFixed(3)} | ${m.firstEpochRatio.toFixed(2)} | ${m.matmulPeakFraction === undefined ? '' : pct(m.matmulPeakFraction)} | ${m.sparseGradientLeaves} | ${m.cachedFeatures ? 'yes' : ''} |`),
  '',
  'Goals: GPS step ≤ 1.05× BitFit, GPS and BitFit ≤ 0.72× full, linear-probing epoch after the first ≤ 0.05× a full epoch, ViT full step ≥ 40% of the matMul peak.',
  '',
  '| model | batch | GPS ÷ BitFit | GPS ÷ full | BitFit ÷ full | linear epoch ÷ full | full, % of matMul peak |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...goals.map((g) => `| ${g.model} | ${g.batch} | ${g.gpsOverBitfit.toFixed(2)} | ${g.gpsOverFull.toFixed(2)} | ${g.bitfitOverFull.toFixed(2)} | ${g.linearEpochOverFull.toFixed(3)} | ${pct(g.matmulPeakFraction)} |`),
  '',
  '## Gradient kernels against stock tfjs',
  '',
  `One full training step (\`tf.variableGrads\` and plain SGD), medians of ${rounds} interleaved rounds. "stock tfjs" is the same model with every matmul and convolution on plain tfjs ops and their registered gradients.`,
  '',
  '| model | batch | implementation | ms/step | effective GFLOP/s | % of matMul peak | speed-up |',
  '| --- | ---: | --- | ---: | ---: | ---: | ---: |',
  ...rows.map((x) =>
    x.error
      ? `| ${x.model} | ${x.batch} | ${x.implementation} | fails: ${x.error} | | | |`
      : `| ${x.model} | ${x.batch} | ${x.implementation} | ${x.msPerStep!.toFixed(1)} | ${x.gflops!.toFixed(1)} | ${((100 * x.gflops!) / peak).toFixed(0)}% | ${x.implementation === 'sparsetune' && speedups[key(x.model, x.batch)] ? `${speedups[key(x.model, x.batch)]!.toFixed(2)}×` : ''} |`,
  ),
  '',
  `Plain 512×512×512 matMul on this backend: ${peak.toFixed(1)} GFLOP/s. Tensors leaked by all the timed steps and runs: ${leaked}.`,
  '',
].join('\n');
console.log(md);
writeResults(`step-${opts.backend}${standard ? '' : `-${input.join('x')}`}${k === 1 ? '' : `-k${k}`}${opts.models === 'vit,cnn,mlp' ? '' : `-${opts.models.replaceAll(',', '-')}`}`, result, md);
