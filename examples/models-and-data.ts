// Models, tasks and checkpoints.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { accuracy, batches, initBackend, replaceHead, vit } from 'sparsetune';
import { buildTask, loadBackbone, readCheckpoint, TASKS, writeCheckpoint } from 'sparsetune/node';

await initBackend();

// A model is a spec, a seeded initialiser and a pure apply function.
const small = vit({ input: [28, 28, 1], patch: 7, width: 32, depth: 2, heads: 4, classes: 10 });
const params = small.init(42);
console.log('leaves:', Object.keys(small.spec).length, '| qkv kernel:', small.spec['blocks.0.attn.qkv.kernel']);

// The seven mini-VTAB-1k tasks, each built alone by name (or by its own function).
for (const name of Object.keys(TASKS)) {
  const t = buildTask(name, { testSize: 100 });
  console.log(name.padEnd(16), t.group.padEnd(12), `${t.classes}-way`, t.train.n, t.val.n, t.test.n);
}

// The shipped backbones, pre-trained on Fashion-MNIST; a new head for a 4-way task.
const { model, params: pretrained, header } = loadBackbone('vit');
console.log('vit checkpoint, upstream test accuracy', header.meta?.['testAccuracy']);
const task = buildTask('rotation', { testSize: 200 });
const taskModel = model.withClasses(task.classes);
const taskParams = replaceHead(taskModel, pretrained, 0); // backbone tensors shared, head fresh
let hits = 0;
for (const { x, y } of batches(task.test, 100)) hits += accuracy(taskModel.apply(taskParams, x).logits, y) * x.shape[0]!;
console.log(`untrained head on ${task.name}: ${((100 * hits) / task.test.n).toFixed(1)}% (chance 25%)`);

// Checkpoints carry their spec and a checksum; loading into another spec fails clearly.
const file = join(mkdtempSync(join(tmpdir(), 'sparsetune-')), 'small.ckpt');
writeCheckpoint(file, small.spec, params, { model: { name: small.name, config: small.config } });
console.log('reloaded', Object.keys(readCheckpoint(file, small.spec).params).length, 'leaves');
try {
  readCheckpoint(file, model.spec);
} catch (e) {
  console.log((e as Error).message);
}
