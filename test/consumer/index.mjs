// Plain Node, no loader: what a user of the installed package runs first.
import { countMask, evaluate, fineTune, gps, initBackend, replaceHead, select, selectionEnv, subset } from 'sparsetune';
import { digits, loadBackbone } from 'sparsetune/node';

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
