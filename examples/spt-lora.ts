// SPT: rank entries by sensitivity under one global budget; the kernels that
// hold enough of it are tuned with LoRA, the rest entry by entry.
import { describeMask, evaluate, fineTune, initBackend, loadTuned, mergeLora, prepare, replaceHead, saveCheckpoint, saveTuned, subset } from 'sparsetune';
import { count, loadBackbone } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';
const { model: backbone, params: pretrained } = loadBackbone('vit');
const task = count({ testSize: quick ? 100 : 1000 });
const train = quick ? subset(task.train, [...Array(64).keys()]) : task.train;
const model = backbone.withClasses(task.classes);
const base = replaceHead(model, pretrained, 0);

// 1. One call: 1% of the eligible entries by Σ(∇W)²; a kernel whose share
//    passes r·(d_in + d_out)/α gets LoRA adapters of that same rank r.
const tuned = prepare({ method: 'spt-lora', budget: 0.01, rank: 8 }, { model, params: base, data: train });
console.log(`LoRA on ${tuned.lora!.kernels.length} kernels: ${tuned.lora!.kernels.join(', ') || '(none)'}`);
console.log(`trained (adapters and entries): ${describeMask(tuned.mask)}`);

// 2. Train the adapters and the unstructured entries together.
const result = fineTune({ ...tuned, train, val: task.val, epochs: quick ? 1 : 8, keepBest: true });
const accuracy = evaluate(tuned.model, result.params, task.test);
console.log(`SPT-LoRA: test accuracy ${(100 * accuracy).toFixed(1)}%`);

// 3. Fold the adapters into their kernels: the base model runs the result at no extra cost.
const merged = mergeLora(tuned.lora!, result.params);
console.log(`merged: test accuracy ${(100 * evaluate(model, merged, task.test)).toFixed(1)}%`);

// 4. One file, the adapters beside the delta (small) or merged into it (the adapted kernels whole).
const separate = saveTuned(tuned, result.params);
const folded = saveTuned(tuned, result.params, { lora: 'merged' });
const checkpoint = saveCheckpoint(model.spec, base).length;
console.log(`tuned file: ${separate.length} bytes with adapters, ${folded.length} merged; the checkpoint is ${checkpoint} bytes`);

// Anywhere the base is: one call puts the LoRA model back together.
const back = loadTuned(separate, { model, params: base });
const again = evaluate(back.model, back.params, task.test);
console.log(`reloaded (${back.merged ? 'merged' : 'adapters separate'}, rank ${back.lora!.rank}): ${again === accuracy ? 'identical' : 'DIFFERS'}`);
