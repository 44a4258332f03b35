// Getting started: pick a tiny subset of a pre-trained ViT's own weights for a new task, train only those.
import {
  describeMask,
  evaluate,
  fineTune,
  gps,
  initBackend,
  replaceHead,
  select,
  selectionEnv,
  subset,
} from 'sparsetune';
import { digits, loadBackbone } from 'sparsetune/node';

await initBackend(); // wasm
const quick = process.env.SPARSETUNE_QUICK === '1';

const { model: backbone, params: pretrained } = loadBackbone('vit'); // pre-trained on Fashion-MNIST
const task = digits({ testSize: quick ? 100 : 1000 }); //              800 train / 200 val images
const model = backbone.withClasses(task.classes); //                   a fresh 10-way head
const params = replaceHead(model, pretrained, 0);
const train = quick ? subset(task.train, [...Array(64).keys()]) : task.train;

// GPS: for every neuron, its top-1 input connection by |Σ ∇| of a contrastive loss.
const mask = select(gps({ k: 1 }), selectionEnv({ model, params, data: train }));
console.log(describeMask(mask));

const { params: tuned } = fineTune({ model, params, mask, train, val: task.val, epochs: quick ? 1 : 8, learningRate: 1e-2, keepBest: true });
console.log(`test accuracy: ${(100 * evaluate(model, tuned, task.test)).toFixed(1)}%`);
