// Forward-only selection (FPS): |w| · mean |input| from one forward pass, against GPS's gradients.
import * as tf from '@tensorflow/tfjs-core';
import {
  byRole,
  countMask,
  defineModel,
  describeMask,
  feedforward,
  fps,
  gps,
  initBackend,
  kernelPart,
  layers,
  neuron,
  only,
  relu,
  replaceHead,
  select,
  selectionEnv,
  subset,
  type Tensor,
} from 'sparsetune';
import { digits, loadBackbone } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';

const { model: backbone, params: pretrained } = loadBackbone('vit');
const task = digits();
const model = backbone.withClasses(task.classes);
const params = replaceHead(model, pretrained, 0);
const data = quick ? subset(task.train, [...Array(64).keys()]) : task.train;

// GPS and FPS, each in its own environment so neither reuses the other's pass; peak memory from tf.profile.
for (const [name, selector] of [['GPS', gps({ k: 1 })], ['FPS', fps({ k: 1 })]] as const) {
  const env = selectionEnv({ model, params, data, seed: 0 });
  const t0 = performance.now();
  const profile = await tf.profile(() => void select(selector, env));
  const mask = select(selector, env); // cached scores: no second pass
  console.log(`${name}: ${describeMask(mask)} | ${((performance.now() - t0) / 1000).toFixed(1)} s, peak ${(profile.peakBytes / 2 ** 20).toFixed(1)} MiB`);
}

// The criterion composes like any other: FPS's scores with a per-neuron top-4 on the MLP kernels only.
const env = selectionEnv({ model, params, data, seed: 0 });
const mlpOnly = select(only(byRole('kernel'), neuron(4, feedforward({ batchSize: 64 }))), env);
console.log('top-4 by |w|·|a|:', countMask(kernelPart(mlpOnly)).trainable, 'kernel entries');

// A model of your own reports each kernel's input through the tap in its apply options.
const mine = defineModel(
  {
    name: 'two-layer',
    config: {},
    input: [784] as const,
    features: 32,
    backbone: layers.denseLeaves('fc', 784, 32),
    forward: (p, x, options) => relu(layers.dense(p, 'fc', x as Tensor<readonly [number, 784]>, options.tap)),
  },
  10,
);
const flat = { ...data, shape: [784] as const };
const minePick = select(fps({ k: 2 }), selectionEnv({ model: mine, params: mine.init(0), data: flat }));
console.log('your model:', describeMask(minePick));
