// Fine-tuning with a mask, saving what changed as a sparse delta, and LoRA.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  adamw,
  applyDelta,
  describeMask,
  evaluate,
  extractDelta,
  fineTune,
  gps,
  initBackend,
  loadDelta,
  mergeLora,
  prepare,
  replaceHead,
  saveDelta,
  select,
  selectionEnv,
  subset,
  warmupCosine,
} from 'sparsetune';
import { loadBackbone, rotation } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';
const { model: backbone, params: pretrained } = loadBackbone('vit');
const task = rotation({ testSize: quick ? 100 : 1000 });
const train = quick ? subset(task.train, [...Array(64).keys()]) : task.train;
const model = backbone.withClasses(task.classes);
const base = replaceHead(model, pretrained, 0);

// 1. GPS: select once, then train only the selected entries.
const mask = select(gps({ k: 1 }), selectionEnv({ model, params: base, data: train }));
console.log(describeMask(mask));
const epochs = quick ? 1 : 10;
const steps = epochs * Math.ceil(train.n / 32);
const optimizer = adamw(warmupCosine({ init: 0, peak: 3e-3, warmupSteps: Math.ceil(steps / 10), totalSteps: steps }), { weightDecay: 1e-4 });
const result = fineTune({ model, params: base, mask, train, val: task.val, optimizer, epochs, keepBest: true });
console.log(`GPS: best epoch ${result.epoch}, test accuracy ${(100 * evaluate(model, result.params, task.test)).toFixed(1)}%`);

// 2. Keep only what changed: a delta, 8 bytes per changed entry, on the shared base.
const file = join(mkdtempSync(join(tmpdir(), 'sparsetune-')), 'rotation.delta');
writeFileSync(file, saveDelta(extractDelta(model.spec, base, result.params, mask)));
const restored = applyDelta(model.spec, base, loadDelta(new Uint8Array(readFileSync(file))));
console.log(`delta: ${readFileSync(file).length} bytes; reloaded accuracy ${(100 * evaluate(model, restored, task.test)).toFixed(1)}%`);

// 3. LoRA on the attention kernels (plus the head, as the method trains it), merged back for inference.
const kernels = Object.keys(model.spec).filter((p) => p.endsWith('attn.qkv.kernel'));
const lora = prepare({ method: 'lora', rank: 4, kernels }, { model, params: base });
const tunedLora = fineTune({ ...lora, train, epochs });
const merged = mergeLora(lora.lora!, tunedLora.params);
console.log(`LoRA (merged): test accuracy ${(100 * evaluate(model, merged, task.test)).toFixed(1)}%`);
