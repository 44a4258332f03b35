// Your own data: an image folder of RGB images at 32×32, and feature vectors,
// each selected with GPS and fine-tuned; then regression with a loss of your own choosing.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pngjs from 'pngjs';
import {
  dataSet,
  describeMask,
  evaluate,
  evaluateLoss,
  fineTune,
  fraction,
  gps,
  initBackend,
  magnitude,
  meanSquaredError,
  mlp,
  net,
  rng,
  select,
  selectionEnv,
  splitDataSet,
  summarize,
  vit,
} from 'sparsetune';
import { loadImageFolder } from 'sparsetune/node';

await initBackend();
const quick = process.env.SPARSETUNE_QUICK === '1';
const r = rng(0);

// 0. A folder of PNGs, one sub-folder per class (here written on the spot:
//    red, green or blue squares of random size and place on grey noise, 40×40).
const root = mkdtempSync(join(tmpdir(), 'sparsetune-folder-'));
['blue', 'green', 'red'].forEach((name, colour) => {
  mkdirSync(join(root, name));
  for (let i = 0; i < (quick ? 12 : 60); i++) {
    const png = new pngjs.PNG({ width: 40, height: 40 });
    const [side, top, left] = [10 + r.int(15), r.int(15), r.int(15)];
    for (let p = 0; p < 40 * 40; p++) {
      const [y, x] = [Math.floor(p / 40), p % 40];
      const inside = y >= top && y < top + side && x >= left && x < left + side;
      for (let c = 0; c < 3; c++) png.data[4 * p + c] = inside && c === 2 - colour ? 230 : 60 + r.int(80);
      png.data[4 * p + 3] = 255;
    }
    writeFileSync(join(root, name, `${i}.png`), pngjs.PNG.sync.write(png));
  }
});

// 1. Images: load at 32×32 RGB, split with a seed, select with GPS, fine-tune.
const folder = loadImageFolder(root, { size: [32, 32] });
console.log(folder.summary.text); // … samples of shape [32, 32, 3], 3 classes: blue …, green …, red …
const { train, val, test } = splitDataSet(folder.set, { val: 0.15, test: 0.15, seed: 0 });
// A fresh network stands in for your pre-trained one (readCheckpoint loads yours).
const model = vit({ input: [32, 32, 3], patch: 8, width: 32, depth: 2, heads: 4, classes: folder.classes.length });
const params = model.init(0);
const mask = select(gps({ k: 2 }), selectionEnv({ model, params, data: train }));
console.log(describeMask(mask));
const tuned = fineTune({ model, params, mask, train, val, epochs: quick ? 2 : 15, batchSize: 16, learningRate: 3e-3, keepBest: true });
console.log(`images: test accuracy ${(100 * evaluate(model, tuned.params, test)).toFixed(1)}%`);

// 2. Feature vectors [20]: from typed arrays, validated and reported.
const n = quick ? 120 : 600;
const features = new Float32Array(n * 20);
const labels = new Int32Array(n);
for (let i = 0; i < n; i++) {
  labels[i] = r.int(3);
  for (let d = 0; d < 20; d++) features[i * 20 + d] = r.normal() + (d % 3 === labels[i] ? 1.5 : 0);
}
const table = dataSet({ images: features, labels, shape: [20], classes: 3 });
console.log(summarize(table, ['a', 'b', 'c']).text);
const parts = splitDataSet(table, { val: 0.2, test: 0.2, seed: 1 });
const net20 = mlp({ input: [20], hidden: [64, 32], classes: 3 });
const p20 = net20.init(1);
// GPS's SupCon views of feature vectors: feature dropout and noise.
const mask20 = select(gps({ k: 1 }), selectionEnv({ model: net20, params: p20, data: parts.train }));
const tuned20 = fineTune({ model: net20, params: p20, mask: mask20, train: parts.train, val: parts.val, epochs: quick ? 2 : 20, learningRate: 1e-2 });
console.log(`features: test accuracy ${(100 * evaluate(net20, tuned20.params, parts.test)).toFixed(1)}%`);

// 3. Regression: float32 targets, n × T (T = the model's outputs), with mean-squared error.
const targets = Float32Array.from({ length: n }, (_, i) => features[i * 20]! - 0.5 * features[i * 20 + 1]!);
const reg = splitDataSet(dataSet({ images: features, labels: targets, shape: [20] }), { test: 0.2, seed: 2 });
const regressor = mlp({ input: [20], hidden: [32], classes: 1 });
const pr = regressor.init(2);
// Gradient criteria need classes, so this mask is by weight magnitude: 10% of each leaf's entries.
const maskR = select(net(fraction(0.1), magnitude()), selectionEnv({ model: regressor, params: pr }));
const fit = fineTune({ model: regressor, params: pr, mask: maskR, train: reg.train, loss: meanSquaredError, epochs: quick ? 2 : 20, learningRate: 1e-2 });
const before = evaluateLoss(regressor, pr, reg.test, meanSquaredError);
console.log(`regression: test MSE ${before.toFixed(3)} → ${evaluateLoss(regressor, fit.params, reg.test, meanSquaredError).toFixed(3)}`);
