// Pre-trains a backbone on Fashion-MNIST (all ten classes) from a seed and
// writes checkpoints/<model>.ckpt with a JSON record beside it.
//
//   npm run pretrain -- --model vit --epochs 8 --seed 0
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, rng, type Params, type Tensor } from '../src/index.js';
import { batches, type ImageSet } from '../src/data/index.js';
import { fashionPartition } from '../src/node/index.js';
import { accuracy, BACKBONES, crossEntropy, type BackboneName } from '../src/models/index.js';
import { checkpointPath, writeCheckpoint } from '../src/node/index.js';

const { values: o } = parseArgs({
  options: {
    model: { type: 'string' },
    epochs: { type: 'string', default: '5' },
    seed: { type: 'string', default: '0' },
    batch: { type: 'string', default: '64' },
    lr: { type: 'string', default: '0.001' },
    help: { type: 'boolean', default: false },
  },
});
if (o.help || !o.model) {
  console.log('usage: npm run pretrain -- --model vit|cnn|mlp [--epochs 5] [--seed 0] [--batch 64] [--lr 0.001]');
  process.exit(o.help ? 0 : 1);
}
const name = o.model as BackboneName;
if (!(name in BACKBONES)) throw new Error(`--model must be one of ${Object.keys(BACKBONES).join(', ')}, got '${name}'`);
const epochs = Number(o.epochs);
const seed = Number(o.seed);
const batchSize = Number(o.batch);
const peakLr = Number(o.lr);

await initBackend('wasm');
const model = BACKBONES[name]();
const data = fashionPartition();
const r = rng(seed);
const init = model.init(seed);
const vars = Object.fromEntries(Object.entries(init).map(([p, t]) => [p, tf.variable(t, true, `${name}/${p}`)])) as Params;
const optimizer = tf.train.adam(peakLr);

function evaluate(set: ImageSet): number {
  let hits = 0;
  for (const { x, y } of batches(set, 500)) {
    const acc = tf.tidy(() => accuracy(model.apply(vars, x).logits as Tensor<readonly ['B', number]>, y));
    hits += acc * x.shape[0]!;
  }
  return hits / set.n;
}

const stepsPerEpoch = Math.floor(data.train.n / batchSize);
const totalSteps = epochs * stepsPerEpoch;
const warmup = Math.min(stepsPerEpoch, Math.floor(totalSteps / 10));
const t0 = performance.now();
let step = 0;
const history: { epoch: number; loss: number; valAccuracy: number; seconds: number }[] = [];
let best = { valAccuracy: -1, epoch: -1, params: undefined as Params | undefined };
for (let epoch = 0; epoch < epochs; epoch++) {
  let lossSum = 0;
  for (const { x, y } of batches(data.train, batchSize, { rng: r.fork(`epoch${epoch}`), dropLast: true })) {
    // Linear warm-up, then cosine decay to zero.
    const lr = step < warmup ? (peakLr * (step + 1)) / warmup : 0.5 * peakLr * (1 + Math.cos((Math.PI * (step - warmup)) / (totalSteps - warmup)));
    (optimizer as unknown as { learningRate: number }).learningRate = lr;
    const loss = optimizer.minimize(() => crossEntropy(model.apply(vars, x).logits as Tensor<readonly ['B', number]>, y) as tf.Scalar, true)!;
    lossSum += loss.dataSync()[0]!;
    loss.dispose();
    step++;
    if (step % 100 === 0) process.stdout.write(`\r${name} epoch ${epoch + 1}/${epochs} step ${step}/${totalSteps} loss ${(lossSum / (step - epoch * stepsPerEpoch)).toFixed(4)}   `);
  }
  const valAccuracy = evaluate(data.val);
  const seconds = (performance.now() - t0) / 1000;
  history.push({ epoch: epoch + 1, loss: lossSum / stepsPerEpoch, valAccuracy, seconds });
  console.log(`\n${name} epoch ${epoch + 1}: loss ${(lossSum / stepsPerEpoch).toFixed(4)} val ${(100 * valAccuracy).toFixed(2)}% (${seconds.toFixed(0)} s)`);
  if (valAccuracy > best.valAccuracy) {
    Object.values(best.params ?? {}).forEach((t) => t.dispose());
    best = { valAccuracy, epoch: epoch + 1, params: Object.fromEntries(Object.entries(vars).map(([p, v]) => [p, tf.clone(v)])) };
  }
}
for (const [p, v] of Object.entries(vars)) (v as tf.Variable).assign(best.params![p]!);
const testAccuracy = evaluate(data.test);
const wallSeconds = (performance.now() - t0) / 1000;
const record = {
  command: `npm run pretrain -- --model ${name} --epochs ${epochs} --seed ${seed} --batch ${batchSize} --lr ${peakLr}`,
  model: { name: model.name, config: model.config },
  seed,
  epochs,
  batchSize,
  optimizer: `tfjs adam, peak lr ${peakLr}, linear warm-up over ${warmup} steps then cosine decay to 0`,
  data: `Fashion-MNIST, fashionPartition(): train ${data.train.n}, val ${data.val.n}, test ${data.test.n}`,
  bestEpoch: best.epoch,
  valAccuracy: best.valAccuracy,
  testAccuracy,
  wallSeconds,
  history,
  backend: tf.getBackend(),
  date: new Date().toISOString(),
};
const file = checkpointPath(name);
writeCheckpoint(file, model.spec, vars, { model: { name: model.name, config: model.config }, meta: { seed, epochs: best.epoch, testAccuracy } });
writeFileSync(file.replace(/\.ckpt$/, '.json'), JSON.stringify(record, null, 2) + '\n');
console.log(`${name}: test accuracy ${(100 * testAccuracy).toFixed(2)}% after ${wallSeconds.toFixed(0)} s; wrote ${file}`);
