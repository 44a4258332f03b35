// Plain Node, no loader: what a user of the installed package runs first.
import { countMask, evaluate, fineTune, gps, initBackend, replaceHead, select, selectionEnv, subset } from 'sparsetune';
import { digits, loadBackbone, workerPool } from 'sparsetune/node';

await initBackend();
const { model: backbone, params: pretrained } = loadBackbone('vit');
const task = digits({ testSize: 64 });
const model = backbone.withClasses(task.classes);
const params = replaceHead(model, pretrained, 0);
const train = subset(task.train, [...Array(32).keys()]);
const mask = select(gps({ k: 1 }), selectionEnv({ model, params, data: train }));
const { trainable: selected, total } = countMask(mask);
const { params: tuned, history } = fineTune({ model, params, mask, train, epochs: 1, batchSize: 16, progressBar: false });
const acc = evaluate(model, tuned, task.test);
if (!(selected > 0 && selected < total / 10)) throw new Error(`unexpected selection: ${selected} of ${total}`);
if (history.length !== 1 || !Number.isFinite(history[0].loss)) throw new Error('fine-tuning did not run');
console.log(JSON.stringify({ selected, total, loss: history[0].loss, accuracy: acc }));

// The compiled worker entry (dist/node/worker.js) is found and runs: the same run over 2 worker threads.
const pool = await workerPool({ workers: 2, minShard: 1 });
try {
  const par = fineTune({ model, params, mask, train, epochs: 1, batchSize: 16, progressBar: false, parallel: pool });
  if (Math.abs(par.history[0].loss - history[0].loss) > 1e-4) throw new Error(`workers: loss ${par.history[0].loss}, one thread ${history[0].loss}`);
  console.log(JSON.stringify({ workers: pool.workers, loss: par.history[0].loss }));
} finally {
  await pool.terminate();
}

// fineTune's workers option: threads started synchronously through a bootstrap of dist/node/worker.js, stopped after.
const opt = fineTune({ model, params, mask, train, epochs: 1, batchSize: 32, progressBar: false, workers: 2 });
const ref = fineTune({ model, params, mask, train, epochs: 1, batchSize: 32, progressBar: false });
if (Math.abs(opt.history[0].loss - ref.history[0].loss) > 1e-4) throw new Error(`workers option: loss ${opt.history[0].loss}, one thread ${ref.history[0].loss}`);
console.log(JSON.stringify({ workersOption: 2, loss: opt.history[0].loss }));
