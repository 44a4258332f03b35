// SPT: rank entries by sensitivity under one global budget; the kernels that
// hold enough of it are tuned with LoRA, the rest entry by entry.
import {
  addLora,
  adaptersOf,
  applyDelta,
  describeMask,
  evaluate,
  extractDelta,
  filterTree,
  fineTune,
  fraction,
  initBackend,
  loadCheckpoint,
  loraMask,
  mergeLora,
  replaceHead,
  saveCheckpoint,
  saveDelta,
  selectionEnv,
  spt,
  subset,
} from 'sparsetune';
import { count, loadBackbone } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';
const { model: backbone, params: pretrained } = loadBackbone('vit');
const task = count({ testSize: quick ? 100 : 1000 });
const train = quick ? subset(task.train, [...Array(64).keys()]) : task.train;
const model = backbone.withClasses(task.classes);
const base = replaceHead(model, pretrained, 0);

// 1. The plan: 1% of the eligible entries by Σ(∇W)²; a kernel whose share
//    passes r·(d_in + d_out)/α switches to LoRA of rank r.
const plan = spt({ budget: fraction(0.01), rank: 8 }).plan(selectionEnv({ model, params: base, data: train }));
console.log(`LoRA on ${plan.lora.length} kernels: ${plan.lora.join(', ') || '(none)'}`);
console.log(`trained entry by entry: ${describeMask(plan.mask)}`);

// 2. Train the adapters and the unstructured entries together.
const lora = addLora(model, base, plan.lora, { rank: 8, seed: 0 });
const tuned = fineTune({ model: lora.model, params: lora.params, mask: loraMask(lora, plan.mask), train, val: task.val, epochs: quick ? 1 : 8, learningRate: 3e-3, keepBest: true });

// 3. Fold the adapters into their kernels: the base model runs the result at no extra cost.
const merged = mergeLora(lora.config, tuned.params);
console.log(`SPT-LoRA: test accuracy ${(100 * evaluate(model, merged, task.test)).toFixed(1)}%`);

// 4. Or keep it small: the adapters in a checkpoint of their own, the
//    unstructured entries as a sparse delta on the base.
const adapterSpec = filterTree(lora.model.spec, (leaf) => leaf.role === 'adapter');
const adapterFile = saveCheckpoint(adapterSpec, adaptersOf(lora.config, tuned.params));
const tunedBase = filterTree(tuned.params, (_, path) => path in model.spec);
const delta = extractDelta(model.spec, base, tunedBase, plan.mask);
console.log(`adapters ${adapterFile.length} bytes, delta ${saveDelta(delta).length} bytes`);

// Anywhere the base is: apply the delta, add the adapters, merge.
const rebuilt = mergeLora(lora.config, { ...applyDelta(model.spec, base, delta), ...loadCheckpoint(adapterFile, adapterSpec).params });
console.log(`rebuilt: test accuracy ${(100 * evaluate(model, rebuilt, task.test)).toFixed(1)}%`);
