// Selecting what to train: GPS, its ablations, SPT, and a selector of your own.
import {
  ablations,
  byRole,
  describeMask,
  exactly,
  fraction,
  gps,
  gradient,
  initBackend,
  kernelPart,
  linearProbe,
  countMask,
  magnitude,
  net,
  neuron,
  only,
  refine,
  replaceHead,
  select,
  selectionEnv,
  spt,
  subset,
  union,
} from 'sparsetune';
import { digitsNoisy, loadBackbone } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';

// A pre-trained backbone and a downstream task with a fresh 10-way head.
const { model: backbone, params: pretrained } = loadBackbone('vit');
const task = digitsNoisy();
const model = backbone.withClasses(task.classes);
const params = replaceHead(model, pretrained, 0);
const data = quick ? subset(task.train, [...Array(64).keys()]) : task.train;

// One environment: scores are computed once in it and shared by every selector.
const env = selectionEnv({ model, params, data, seed: 0 });

// GPS: top-1 input connection per neuron by |Σ ∇| of SupCon; biases and head whole.
const gpsMask = select(gps({ k: 1 }), env);
console.log('GPS      ', describeMask(gpsMask));

// The paper's ablations choose exactly as many kernel entries as GPS did.
for (const [name, selector] of Object.entries(ablations(gpsMask))) {
  const mask = select(selector, env);
  console.log(name.padEnd(12), countMask(kernelPart(mask)).trainable, 'kernel entries');
}

// SPT: a global sensitivity budget; dense-enough kernels switch to LoRA.
const plan = spt({ budget: fraction(0.02) }).plan(env);
console.log('SPT      ', describeMask(plan.mask), '| LoRA on', plan.lora.length, 'kernels');

// Your own: GPS's top-4 kernel connections, refined to the 500 largest weights, plus the head.
const mine = union(refine(only(byRole('kernel'), neuron(4, gradient())), net(exactly(500), magnitude())), linearProbe());
console.log('custom   ', describeMask(select(mine, env)));
