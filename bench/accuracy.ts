// The accuracy benchmark: mini-VTAB-1k (docs/benchmarks.md describes it) — every task
// × every method × 3 seeds on the shipped ViT, learning rates picked per
// method on the validation split of seed 0 and reused for the other seeds.
// Resumable: each finished run is a JSON file in the runs folder, skipped
// when found. Runs as many worker processes as there are cores.
//
//   npm run bench:accuracy [-- --epochs 4 --workers 2]   full protocol
//   npm run bench:accuracy -- --quick                    one task, three methods, one seed (CI)
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { countMask, evaluate, fineTune, initBackend, kernelPart, maskOf, METHODS, prepare, replaceHead, selectionEnv, type MethodConfig } from '../src/index.js';
import { buildTask, loadBackbone, TASKS } from '../src/node/index.js';
import { bestLearningRate, type Run } from './accuracy-report.js';

const { values: o } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    epochs: { type: 'string' },
    workers: { type: 'string', default: String(cpus().length) },
    runs: { type: 'string' },
    out: { type: 'string' },
    worker: { type: 'string' },
    phase: { type: 'string' },
  },
});
const quick = o.quick;
const epochs = Number(o.epochs ?? (quick ? 1 : 4));
if (!Number.isInteger(epochs) || epochs < 1) throw new Error(`--epochs: expected a positive integer, got ${o.epochs}`);
const out = o.out ?? new URL(quick ? './results/accuracy-quick' : './results/accuracy', import.meta.url).pathname;
const runsDir = o.runs ?? join(out, 'runs');
const TASK_LIST = quick ? ['rotation'] : Object.keys(TASKS);
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
  net: { method: 'gps-ablation', ablation: 'net' },
  layer: { method: 'gps-ablation', ablation: 'layer' },
  'neuron-random': { method: 'gps-ablation', ablation: 'neuron-random' },
  'net-random': { method: 'gps-ablation', ablation: 'net-random' },
  magnitude: { method: 'gps-ablation', ablation: 'magnitude' },
  'head-ce': { method: 'gps-ablation', ablation: 'head-ce' },
};
const METHOD_LIST = quick ? ['gps', 'linear', 'full'] : Object.keys(CONFIGS);
/** The learning-rate grid per method (searched on seed 0's validation split); --quick runs each method's default rate. */
const GRID: Record<string, number[]> = Object.fromEntries(
  METHOD_LIST.map((m) => {
    const info = METHODS[CONFIGS[m]!.method];
    return [m, quick ? [info.defaults['learningRate'] as number] : [...info.learningRates]];
  }),
);
// --- end of the methods ---

// The epoch count is part of the key: a cached run of another length is never mistaken for this one.
const runFile = (task: string, method: string, seed: number, lr: number) => join(runsDir, `${task}__${method}__s${seed}__lr${lr}__e${epochs}.json`);

/** The runs of one task and seed, one per method and learning rate. */
interface Group {
  task: string;
  seed: number;
  jobs: { method: string; lr: number }[];
}
/** The jobs of a group that are not cached yet. */
const pending = (g: Group) => g.jobs.filter((j) => !existsSync(runFile(g.task, j.method, g.seed, j.lr)));

/** Runs every job of one group that is not cached yet. */
function runGroup(g: Group, progress: { done: number; total: number; who: string }): void {
  const { task, seed } = g;
  const todo = pending(g);
  if (todo.length === 0) return;
  const { model: backbone, params: pretrained } = loadBackbone('vit');
  const t = buildTask(task, { seed });
  const model = backbone.withClasses(t.classes);
  const base = replaceHead(model, pretrained, seed);
  const env = selectionEnv({ model, params: base, data: t.train, seed });
  for (const { method, lr } of todo) {
    const t0 = performance.now();
    // One call per method; the shared environment computes each criterion's scores once for all of them.
    const tuned = prepare(CONFIGS[method]!, { model, params: base, env, seed });
    const { mask } = tuned;
    const r = fineTune({ ...tuned, train: t.train, val: t.val, epochs, learningRate: lr, keepBest: true, progressBar: false });
    const c = countMask(mask);
    const testAccuracy = evaluate(tuned.model, r.params, t.test);
    const run: Run = {
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
    };
    writeFileSync(runFile(task, method, seed, lr), JSON.stringify(run) + '\n');
    console.log(`[${progress.who} ${++progress.done}/${progress.total}] ${task} ${method} seed ${seed} lr ${lr}: val ${(100 * run.valAccuracy).toFixed(1)}%, test ${(100 * testAccuracy).toFixed(1)}% (${run.seconds.toFixed(0)} s)`);
  }
}

// Only runs of this protocol count: a cached run of a rate since dropped from
// the grid, or of another task, method, seed or length, is never picked.
const inProtocol = (r: Run) => r.epochs === epochs && TASK_LIST.includes(r.task) && SEEDS.includes(r.seed) && (GRID[r.method]?.includes(r.learningRate) ?? false);
const readRuns = (): Run[] => (existsSync(runsDir) ? readdirSync(runsDir).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(join(runsDir, f), 'utf8')) as Run).filter(inProtocol) : []);
/** The groups of a phase: the grid on seed 0, then each method's picked rate on the other seeds. */
function phaseGroups(phase: number): Group[] {
  if (phase === 1) return TASK_LIST.map((task) => ({ task, seed: 0, jobs: METHOD_LIST.flatMap((method) => GRID[method]!.map((lr) => ({ method, lr }))) }));
  const runs = readRuns();
  return TASK_LIST.flatMap((task) => SEEDS.filter((s) => s !== 0).map((seed) => ({ task, seed, jobs: METHOD_LIST.map((method) => ({ method, lr: bestLearningRate(runs, task, method)! })) })));
}

await initBackend('wasm');
mkdirSync(runsDir, { recursive: true });
if (o.worker !== undefined) {
  const [i, n] = o.worker.split('/').map(Number) as [number, number];
  const mine = phaseGroups(Number(o.phase)).filter((_, k) => k % n === i);
  const progress = { done: 0, total: mine.reduce((s, g) => s + pending(g).length, 0), who: `process ${i + 1}/${n}` };
  for (const g of mine) runGroup(g, progress);
  process.exit(0);
}

const t0 = performance.now();
let ran = 0;
const workers = Number(o.workers);
if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers: expected a positive integer, got ${o.workers}`);
for (const phase of SEEDS.length > 1 ? [1, 2] : [1]) {
  const groups = phaseGroups(phase);
  const total = groups.reduce((s, g) => s + g.jobs.length, 0);
  const todo = groups.reduce((s, g) => s + pending(g).length, 0);
  ran += todo;
  console.log(`phase ${phase}: ${todo} of ${total} runs to do (the rest are cached) in ${workers} processes`);
  await Promise.all(
    Array.from({ length: workers }, (_, i) => {
      const args = ['--import', 'tsx', new URL(import.meta.url).pathname, '--worker', `${i}/${workers}`, '--phase', String(phase), '--epochs', String(epochs), '--runs', runsDir, '--out', out, ...(quick ? ['--quick'] : [])];
      const child = spawn(process.execPath, args, { stdio: 'inherit' });
      return new Promise<void>((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker ${i} exited with ${code}`)))));
    }),
  );
}
// When every run was cached, the report keeps the wall time of the invocation that ran them.
const previous = join(out, 'accuracy.json');
const wallSeconds = ran === 0 && existsSync(previous) ? (JSON.parse(readFileSync(previous, 'utf8')) as { wallSeconds: number }).wallSeconds : (performance.now() - t0) / 1000;
const { report } = await import('./accuracy-report.js');
report(readRuns(), { out, epochs, quick, wallSeconds, tasks: TASK_LIST, methods: METHOD_LIST, seeds: SEEDS, grid: GRID });
