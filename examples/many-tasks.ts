// Many tasks on one base: the backbone is shipped once, each task keeps only
// the entries its fine-tuning changed, as a sparse delta (8 bytes an entry).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  applyDelta,
  evaluate,
  extractDelta,
  fineTune,
  initBackend,
  loadDelta,
  mergeDeltas,
  prepare,
  replaceHead,
  saveDelta,
  subset,
} from 'sparsetune';
import { count, loadBackbone, rotation } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';
const dir = mkdtempSync(join(tmpdir(), 'sparsetune-'));
const { model: backbone, params: pretrained } = loadBackbone('vit');
const tasks = { rotation: rotation({ testSize: quick ? 100 : 1000 }), count: count({ testSize: quick ? 100 : 1000 }) };

// Both tasks are 4-way, so they share one base: the backbone with a head drawn from seed 0.
const model = backbone.withClasses(4);
const base = replaceHead(model, pretrained, 0);

// 1. Per task: select, train, keep the delta.
for (const [name, task] of Object.entries(tasks)) {
  const train = quick ? subset(task.train, [...Array(64).keys()]) : task.train;
  const gps = prepare({ method: 'gps', k: 1 }, { model, params: base, data: train });
  const tuned = fineTune({ ...gps, train, val: task.val, epochs: quick ? 1 : 8, learningRate: 3e-3, keepBest: true, progressBar: false });
  writeFileSync(join(dir, `${name}.delta`), saveDelta(extractDelta(model.spec, base, tuned.params, gps.mask)));
}

// 2. Later, anywhere the base is: load a task's delta and apply it.
const deltas = Object.entries(tasks).map(([name, task]) => {
  const bytes = new Uint8Array(readFileSync(join(dir, `${name}.delta`)));
  const delta = loadDelta(bytes);
  console.log(`${name}: ${bytes.length} bytes, test accuracy ${(100 * evaluate(model, applyDelta(model.spec, base, delta), task.test)).toFixed(1)}%`);
  return delta;
});

// 3. A delta only goes onto the base it was made on.
try {
  applyDelta(model.spec, replaceHead(model, pretrained, 1), deltas[0]!);
} catch (e) {
  console.log(`another base: ${(e as Error).message}`);
}

// 4. Deltas of one base merge; where two changed the same entry, say which wins.
try {
  mergeDeltas(deltas);
} catch (e) {
  console.log(`overlap: ${(e as Error).message}`);
}
const both = mergeDeltas(deltas, { overlap: 'last' });
console.log(`merged, the later delta winning: ${Object.values(both.leaves).reduce((s, l) => s + l.indices.length, 0)} entries in ${Object.keys(both.leaves).length} leaves`);
