// Getting started: pick a tiny subset of a pre-trained ViT's own weights for a new task, train only those.
import { describeMask, evaluate, fineTune, initBackend, loadTuned, prepare, replaceHead, saveTuned, subset } from 'sparsetune';
import { digits, loadBackbone } from 'sparsetune/node';

await initBackend(); // wasm
const quick = process.env.SPARSETUNE_QUICK === '1';

const { model: backbone, params: pretrained } = loadBackbone('vit'); // pre-trained on Fashion-MNIST
const task = digits({ testSize: quick ? 100 : 1000 }); //              800 train / 200 val images
const model = backbone.withClasses(task.classes); //                   a fresh 10-way head
const params = replaceHead(model, pretrained, 0);
const train = quick ? subset(task.train, [...Array(64).keys()]) : task.train;

// One call from a method to what trains. GPS: for every neuron, its top-1
// input connection by |Σ ∇| of a contrastive loss; biases and head whole.
const tuned = prepare({ method: 'gps', k: 1 }, { model, params, data: train });
console.log(describeMask(tuned.mask));
console.log(`kernel entries per neuron of blocks.0.mlp.fc1: ${tuned.mask.bits['blocks.0.mlp.fc1.kernel']!.reduce((s, b) => s + b, 0) / model.spec['blocks.0.mlp.fc1.kernel']!.shape[1]!}`);

// fineTune takes the model, params, mask, learning rate and seed prepare chose.
const result = fineTune({ ...tuned, train, val: task.val, epochs: quick ? 1 : 8, keepBest: true });
const accuracy = evaluate(tuned.model, result.params, task.test);
console.log(`test accuracy: ${(100 * accuracy).toFixed(1)}%`);

// One file: the method's config and the delta on the base; it reloads onto the base in one call.
const bytes = saveTuned(tuned, result.params);
const back = loadTuned(bytes, { model, params });
const again = evaluate(back.model, back.params, task.test);
console.log(`tuned file: ${bytes.length} bytes, method ${JSON.stringify(back.config)}; reloaded: ${again === accuracy ? 'identical' : 'DIFFERS'}`);
