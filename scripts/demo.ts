// The main job: GPS against full fine-tuning and linear probing on a shipped
// backbone and a mini-VTAB task (each method set up by one `prepare` call),
// then GPS's tuned file (config + delta) saved, reloaded onto a fresh base
// and checked.
//
//   npm run demo [-- --task digits --backbone vit --methods gps,full,linear --epochs 8 --seed 0 --backend wasm]
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  BACKBONES,
  countMask,
  evaluate,
  fineTune,
  initBackend,
  loadTuned,
  METHODS,
  prepare,
  replaceHead,
  saveCheckpoint,
  type BackboneName,
  type BackendName,
  type MethodConfig,
  type MethodName,
  type Params,
  type Prepared,
} from '../src/index.js';
import { buildTask, loadBackbone, TASKS, writeTuned } from '../src/node/index.js';

// The library's registry; GPS's ablations need a setting the flags do not give, so they are left to the benchmark.
const NAMES = (Object.keys(METHODS) as MethodName[]).filter((m) => m !== 'gps-ablation');
const DEFAULT_METHODS = ['gps', 'full', 'linear'];
const HELP = `usage: npm run demo -- [options]

  --task NAME        ${Object.keys(TASKS).join(' | ')} (default digits)
  --backbone NAME    ${Object.keys(BACKBONES).join(' | ')} (default vit)
  --methods LIST     comma-separated: ${NAMES.join(',')} (default ${DEFAULT_METHODS.join(',')})
  --epochs N         epochs per method (default 8)
  --k N              GPS connections per neuron (default 1)
  --seed N           seed of the task draw, the head, shuffling and selection (default 0)
  --backend NAME     wasm | cpu | tensorflow (default wasm)
  --out DIR          where GPS's tuned file is written (default: a new temporary folder)
  --help             this text`;

function fail(message: string): never {
  console.error(`demo: ${message}\n\n${HELP}`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      task: { type: 'string', default: 'digits' },
      backbone: { type: 'string', default: 'vit' },
      methods: { type: 'string', default: DEFAULT_METHODS.join(',') },
      epochs: { type: 'string', default: '8' },
      k: { type: 'string', default: '1' },
      seed: { type: 'string', default: '0' },
      backend: { type: 'string', default: 'wasm' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  }).values;
} catch (e) {
  fail((e as Error).message);
}
if (args.help) {
  console.log(HELP);
  process.exit(0);
}
const int = (name: string, v: string, min: number) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer ≥ ${min}, got '${v}'`);
  return n;
};
if (!(args.task in TASKS)) fail(`--task must be one of ${Object.keys(TASKS).join(', ')}, got '${args.task}'`);
if (!(args.backbone in BACKBONES)) fail(`--backbone must be one of ${Object.keys(BACKBONES).join(', ')}, got '${args.backbone}'`);
if (!['wasm', 'cpu', 'tensorflow'].includes(args.backend)) fail(`--backend must be wasm, cpu or tensorflow, got '${args.backend}'`);
const methods = args.methods.split(',').map((m) => m.trim());
for (const m of methods) if (!(NAMES as string[]).includes(m)) fail(`--methods: unknown method '${m}'; known: ${NAMES.join(', ')}`);
const epochs = int('epochs', args.epochs, 1);
const k = int('k', args.k, 1);
const seed = int('seed', args.seed, 0);
const quick = process.env.SPARSETUNE_QUICK === '1';

await initBackend(args.backend as BackendName);
const t0 = performance.now();
const { model: backbone, params: pretrained, header } = loadBackbone(args.backbone as BackboneName);
const task = buildTask(args.task, { seed, ...(quick ? { testSize: 200 } : {}) });
const model = backbone.withClasses(task.classes);
const base = replaceHead(model, pretrained, seed);
console.log(`${args.backbone} pre-trained on Fashion-MNIST (upstream test accuracy ${(100 * Number(header.meta?.['testAccuracy'])).toFixed(2)}%)`);
console.log(`task ${task.name} (${task.group}, ${task.classes}-way): ${task.train.n} train, ${task.val.n} val, ${task.test.n} test images\n`);

const rows: { method: string; accuracy: number; percent: number; percentNoHead: number; selectSeconds: number; trainSeconds: number }[] = [];
let gpsResult: { tuned: Prepared<readonly [28, 28, 1], number, number>; params: Params; accuracy: number } | undefined;
for (const name of methods as MethodName[]) {
  const label = METHODS[name].label;
  const config = (name === 'gps' ? { method: 'gps', k } : { method: name }) as MethodConfig;
  console.log(`${label}: selecting…`);
  const s0 = performance.now();
  // One call: the method's selection on the training set, adapters where it adds them, its mask and learning rate.
  const tuned = prepare(config, { model, params: base, data: task.train, seed, onProgress: (p) => process.stderr.isTTY && process.stderr.write(`\r  ${p.task} ${p.done}/${p.total}   `) });
  if (process.stderr.isTTY) process.stderr.write('\n');
  const selectSeconds = (performance.now() - s0) / 1000;
  const c = countMask(tuned.mask);
  console.log(`  ${c.trainable.toLocaleString('en-US')} of ${c.total.toLocaleString('en-US')} parameters trainable (${c.percent.toFixed(3)}%); training ${epochs} epochs at learning rate ${tuned.learningRate}`);
  const r0 = performance.now();
  const result = fineTune({
    ...tuned,
    train: task.train,
    val: task.val,
    epochs,
    keepBest: true,
    onEpoch: (e) => !process.stderr.isTTY && console.log(`  epoch ${e.epoch}: loss ${e.loss.toFixed(4)}, val ${(100 * e.valAccuracy!).toFixed(1)}%`),
  });
  const trainSeconds = (performance.now() - r0) / 1000;
  const accuracy = evaluate(tuned.model, result.params, task.test);
  console.log(`  best epoch ${result.epoch}; test accuracy ${(100 * accuracy).toFixed(2)}%\n`);
  rows.push({ method: label, accuracy, percent: c.percent, percentNoHead: c.percentNoHead, selectSeconds, trainSeconds });
  if (name === 'gps') gpsResult = { tuned, params: result.params, accuracy };
}

const pad = (s: string, n: number) => s.padEnd(n);
console.log(`| ${pad('method', 17)} | test accuracy | trainable % | without head | selection s | training s |`);
console.log(`| ${'-'.repeat(17)} | ------------: | ----------: | -----------: | ----------: | ---------: |`);
for (const r of rows) {
  console.log(
    `| ${pad(r.method, 17)} | ${(100 * r.accuracy).toFixed(2).padStart(12)}% | ${r.percent.toFixed(3).padStart(11)} | ${r.percentNoHead.toFixed(3).padStart(12)} | ${r.selectSeconds.toFixed(1).padStart(11)} | ${r.trainSeconds.toFixed(1).padStart(10)} |`,
  );
}
if (rows.length > 1) console.log(`(wall-clock seconds; ${rows[0]!.method} ran first and its times include the backend's one-time warm-up)`);

if (gpsResult) {
  const dir = args.out ?? mkdtempSync(join(tmpdir(), 'sparsetune-demo-'));
  const file = join(dir, `${args.backbone}-${task.name}.tuned`);
  // One file: the GPS config, the delta on the base, and (for LoRA methods) the adapters.
  writeTuned(file, gpsResult.tuned, gpsResult.params, { meta: { task: task.name, testAccuracy: gpsResult.accuracy } });
  const fileBytes = readFileSync(file).length;
  const checkpointBytes = saveCheckpoint(model.spec, base).length;
  // A fresh base, as another process would load it: the shipped checkpoint and the same seeded head.
  const fresh = loadBackbone(args.backbone as BackboneName);
  const freshBase = replaceHead(model, fresh.params, seed);
  const reloaded = loadTuned(new Uint8Array(readFileSync(file)), { model, params: freshBase });
  const again = evaluate(reloaded.model, reloaded.params, task.test);
  console.log(`\nGPS tuned file (config ${JSON.stringify(reloaded.config)}, delta): ${file}, ${fileBytes.toLocaleString('en-US')} bytes (${((100 * fileBytes) / checkpointBytes).toFixed(2)}% of the ${checkpointBytes.toLocaleString('en-US')}-byte checkpoint)`);
  console.log(`reloaded onto a fresh base: test accuracy ${(100 * again).toFixed(2)}% (${again === gpsResult.accuracy ? 'identical' : `DIFFERS from ${(100 * gpsResult.accuracy).toFixed(2)}%`})`);
  if (again !== gpsResult.accuracy) process.exitCode = 1;
}
console.log(`\ndone in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
