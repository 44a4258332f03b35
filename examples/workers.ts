// Both cores: GPS's selection pass and fine-tuning over worker threads.
import { evaluate, fineTune, gps, initBackend, replaceHead, select, selectionEnv, subset } from 'sparsetune';
import { digits, loadBackbone, workerPool } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';
const { model: backbone, params: pretrained } = loadBackbone('vit');
const task = digits({ testSize: quick ? 100 : 1000 });
const train = quick ? subset(task.train, [...Array(128).keys()]) : task.train;
const model = backbone.withClasses(task.classes);
const base = replaceHead(model, pretrained, 0);

// One thread per core, each with its own wasm backend; stop them when done.
const pool = await workerPool();
try {
  const mask = select(gps({ k: 1 }), selectionEnv({ model, params: base, data: train, parallel: pool }));
  const { params } = fineTune({ model, params: base, mask, train, epochs: quick ? 1 : 10, batchSize: 64, parallel: pool });
  console.log(`GPS over ${pool.workers} workers: test accuracy ${(100 * evaluate(model, params, task.test)).toFixed(1)}%`);
} finally {
  await pool.terminate();
}
