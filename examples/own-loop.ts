// Your own training loop: trainOnly + trainStep, leak-free, side by side with optax.
import * as tf from '@tensorflow/tfjs-core';
import {
  adamw,
  applyIfFinite,
  batches,
  byRole,
  evaluate,
  gps,
  initBackend,
  multiSteps,
  replaceHead,
  rng,
  select,
  selectionEnv,
  subset,
  trainOnly,
  trainStep,
  warmupCosine,
  type OptState,
  type Params,
} from 'sparsetune';
import { loadBackbone, rotation } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';
const { model: backbone, params: pretrained } = loadBackbone('vit');
const task = rotation({ testSize: quick ? 100 : 1000 });
const train = quick ? subset(task.train, [...Array(64).keys()]) : task.train;
const model = backbone.withClasses(task.classes);
const base = replaceHead(model, pretrained, 0);
const mask = select(gps({ k: 1 }), selectionEnv({ model, params: base, data: train }));

// optax: optax.apply_if_finite(optax.MultiSteps(optax.adamw(lr, mask=decay_mask), 2), 3), masked to the selection.
const epochs = quick ? 1 : 5;
const steps = epochs * Math.ceil(train.n / 16);
const lr = warmupCosine({ init: 0, peak: 3e-3, warmupSteps: Math.ceil(steps / 10), totalSteps: steps });
const optimizer = trainOnly(applyIfFinite(multiSteps(adamw(lr, { mask: byRole('kernel') }), 2), 3), mask);

const before = tf.memory().numTensors;
let params: Params = base;
let state: OptState | undefined; // trainStep runs optimizer.init(params, model.spec) on the first step
for (let epoch = 1; epoch <= epochs; epoch++) {
  let sum = 0;
  let n = 0;
  for (const { x, y } of batches(train, 16, { rng: rng(epoch) })) {
    const out = trainStep({ model, params, optimizer, state, x, y, trainable: mask });
    ({ params, state } = out);
    sum += out.loss;
    n++;
  }
  console.log(`epoch ${epoch}: loss ${(sum / n).toFixed(3)}, ${tf.memory().numTensors - before} tensors held (parameters and optimizer state)`);
}
console.log(`test accuracy ${(100 * evaluate(model, params, task.test)).toFixed(1)}%`);
tf.dispose(state); // the optimizer state, trainOnly's device mask with it
