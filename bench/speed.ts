// Every speed and memory benchmark (docs/benchmarks.md), run one after
// another, summarised in one JSON and one markdown table.
//
//   npm run bench:speed                  run them all (step, selection, optim, reselect, workers), then the table
//   npm run bench:speed -- --table-only  the table from their last results, without running them
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { machine, writeResults } from './lib.js';

const here = (f: string) => new URL(f, import.meta.url).pathname;
const run = (script: string, ...args: string[]) => {
  console.log(`\n== ${script} ${args.join(' ')}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', here(script), ...args], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${script} failed with ${r.status}`);
};
const tableOnly = process.argv.includes('--table-only');
if (!tableOnly) run('./step.ts', '--batch', '32,64', '--rounds', '20', '--method-rounds', '9');
if (!tableOnly) run('./selection.ts', '--rounds', '5');
if (!tableOnly) run('./optim.ts', '--rounds', '20', '--steps', '1000');
if (!tableOnly) run('./reselect.ts', '--rounds', '3', '--every', '10');
if (!tableOnly) run('./workers.ts', '--rounds', '3', '--batch', '64', '--steps', '5', '--samples', '256');

const read = (name: string): unknown => JSON.parse(readFileSync(here(`./results/${name}.json`), 'utf8'));
const step = read('step-wasm') as {
  rows: { model: string; batch: number; implementation: string; msPerStep?: number; gflops?: number; error?: string }[];
  goals: { model: string; batch: number; gpsOverBitfit: number; gpsOverFull: number; bitfitOverFull: number; linearEpochOverFull: number }[];
  speedups: Record<string, number | null>;
  matmulPeakGflops: number;
  leakedTensors: number;
};
const sel = read('selection') as { vitB16: { entries: number; seconds: Record<string, number> }; gpsSelection: { ratio: number; selectSeconds: number; epochSeconds: number }; fpsSelection: { fpsSeconds: number; gpsPeakBytes: number; fpsPeakBytes: number } };
const re = read('reselect') as { every: number; steps: number; rows: { criterion: string; ratio: number; reselections: number; perReselection: number }[] };
const workers = read('workers-wasm-b64') as { batch: number; rows: { job: string; speedup2v1: number; doubleBatch2v1?: number }[] };
const opt = read('optim') as { maskedStep: { ratio: number }; memory: { ratio: number }; delta: { ratio: number; deltaBytes: number; checkpointBytes: number }; leak: { steps: number; before: number; after: number } };

const ours = (m: string) => step.rows.find((r) => r.model === m && r.batch === 32 && r.implementation === 'sparsetune')!;
const goal = (m: string) => step.goals.find((g) => g.model === m && g.batch === 32)!;
const lines: [string, string, string][] = [
  ...['mlp', 'vit', 'cnn'].map((m): [string, string, string] => [
    `training step, ${m}, wasm, batch 32`,
    `${ours(m).msPerStep!.toFixed(1)} ms, ${ours(m).gflops!.toFixed(1)} GFLOP/s`,
    step.speedups[`${m}-b32`] ? `${step.speedups[`${m}-b32`]!.toFixed(2)}× stock tfjs` : 'stock tfjs cannot train it on wasm',
  ]),
  ...['mlp', 'vit', 'cnn'].map((m): [string, string, string] => [`fraction of the backend's peak, ${m}`, `${(100 * (ours(m).gflops! / step.matmulPeakGflops)).toFixed(0)}%`, `of ${step.matmulPeakGflops.toFixed(1)} GFLOP/s plain matMul`]),
  ...['mlp', 'vit', 'cnn'].flatMap((m): [string, string, string][] => [
    [`GPS step ÷ BitFit step, ${m}, batch 32`, goal(m).gpsOverBitfit.toFixed(2), 'goal ≤ 1.05'],
    [`GPS, BitFit step ÷ full step, ${m}, batch 32`, `${goal(m).gpsOverFull.toFixed(2)}, ${goal(m).bitfitOverFull.toFixed(2)}`, 'goal ≤ 0.72'],
    [`linear-probing epoch after the first ÷ full epoch, ${m}, batch 32`, goal(m).linearEpochOverFull.toFixed(3), 'goal ≤ 0.05'],
  ]),
  ...workers.rows.map((r): [string, string, string] => [
    `2 workers ÷ 1 worker, ${r.job}, ViT, batch ${workers.batch}`,
    `${r.speedup2v1.toFixed(2)}×${r.doubleBatch2v1 === undefined ? '' : ` (${r.doubleBatch2v1.toFixed(2)}× at batch ${2 * workers.batch})`}`,
    r.job.includes('fine-tuning') ? 'goal ≥ 1.7×' : 'no goal (splits whole batches)',
  ]),
  ['masked AdamW step ÷ unmasked', opt.maskedStep.ratio.toFixed(3), 'goal ≤ 1.05'],
  ['GPS selection ÷ one fine-tuning epoch (ViT, 800 images)', `${sel.gpsSelection.ratio.toFixed(2)}×`, 'goal ≤ 2.5×'],
  ['FPS selection ÷ GPS selection, time and peak memory (ViT, 800 images)', `${(sel.fpsSelection.fpsSeconds / sel.gpsSelection.selectSeconds).toFixed(2)}, ${(sel.fpsSelection.fpsPeakBytes / sel.fpsSelection.gpsPeakBytes).toFixed(3)}`, 'forward pass only, no gradient tape'],
  ...re.rows.map((r): [string, string, string] => [`fineTune with re-selection every ${re.every} steps ÷ without, ${r.criterion.toUpperCase()} (ViT, ${re.steps} steps)`, `${r.ratio.toFixed(2)}×`, `${r.reselections} re-selections, ${r.perReselection.toFixed(2)} s each`]),
  ...Object.entries(sel.vitB16.seconds).map(([k, s]): [string, string, string] => [`per-neuron ${k.replace('top', 'top-')}, ViT-B/16-sized tree (${(sel.vitB16.entries / 1e6).toFixed(1)}M entries)`, `${s.toFixed(3)} s`, 'goal < 0.5 s']),
  ['optimizer state, 1% selection ÷ dense Adam', `${(100 * opt.memory.ratio).toFixed(2)}%`, 'goal ≤ 5%'],
  ['GPS delta ÷ full checkpoint', `${(100 * opt.delta.ratio).toFixed(2)}%`, `${opt.delta.deltaBytes.toLocaleString('en-US')} of ${opt.delta.checkpointBytes.toLocaleString('en-US')} bytes`],
  [`tf.memory().numTensors over ${opt.leak.steps} masked steps`, `${opt.leak.before} → ${opt.leak.after}`, 'no growth'],
];
const md = ['# Speed and memory', '', `Command: \`npm run bench:speed${tableOnly ? ' -- --table-only' : ''}\` (${new Date().toISOString()}); each line comes from the benchmark named in \`bench/results/\`${tableOnly ? ', as its last run left it' : ''}.`, '', '| benchmark | measured | against |', '| --- | ---: | --- |', ...lines.map((l) => `| ${l.join(' | ')} |`), ''].join('\n');
console.log(md);
writeResults('speed', { machine: machine(), step, selection: sel, optim: opt }, md);
