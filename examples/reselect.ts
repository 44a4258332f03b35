// Re-selection during training: GPS's budget, re-chosen on the weights as they train.
import { countMask, evaluate, extractDelta, fineTune, gps, initBackend, replaceHead, subset } from 'sparsetune';
import { loadBackbone, rotation } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';
const { model: backbone, params: pretrained } = loadBackbone('vit');
const task = rotation({ testSize: quick ? 100 : 1000 });
const train = quick ? subset(task.train, [...Array(64).keys()]) : task.train;
const model = backbone.withClasses(task.classes);
const base = replaceHead(model, pretrained, 0);

// The selector runs first on the base, then every `every` steps on the current weights.
// (Each re-selection is a GPS gradient pass over the training set: every 50 steps, 4 in 250.)
const result = fineTune({ model, params: base, mask: gps({ k: 1 }), train, batchSize: 16, epochs: quick ? 1 : 5, reselect: { every: quick ? 2 : 50 } });
for (const r of result.reselections) {
  console.log(`after step ${r.step}: ${r.selected} selected (${r.kept} kept, ${r.dropped} dropped, ${r.added} added)`);
}
// result.mask holds every entry that trained at some point (dropped ones kept their trained
// values), so the delta over it holds every entry that differs from the base.
const delta = extractDelta(model.spec, base, result.params, result.mask);
let outside = 0;
for (const p of Object.keys(model.spec)) {
  const [before, after] = [base[p]!.dataSync(), result.params[p]!.dataSync()];
  before.forEach((v, i) => void (v !== after[i] && !delta.leaves[p]?.indices.includes(i) && outside++));
}
console.log(`entries that trained: ${countMask(result.mask).trainable}; changed but not in the delta: ${outside}`);
console.log(`test accuracy ${(100 * evaluate(model, result.params, task.test)).toFixed(1)}%`);
