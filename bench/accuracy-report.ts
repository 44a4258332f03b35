// Turns the accuracy benchmark's runs into JSON, a markdown table and SVG plots.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { machine } from './lib.js';

/** One finished run of the benchmark, as cached on disk. */
export interface Run {
  /** Absent: the ViT (runs cached before backbones were an option). */
  backbone?: string;
  /** MobileNetV2's input side and training-set size. */
  side?: number;
  trainSize?: number;
  task: string;
  group: string;
  method: string;
  seed: number;
  learningRate: number;
  epochs: number;
  valAccuracy: number;
  testAccuracy: number;
  trainable: number;
  trainableNoHead: number;
  total: number;
  totalNoHead: number;
  perDepth?: { depth: number | null; trainable: number; total: number }[];
  kernelIndices?: Record<string, number[]>;
  seconds: number;
  /** GPS's and FPS's selection time within the run. */
  selectSeconds?: number;
}
interface Options {
  /** The command that reproduces the run, and one sentence on the backbone and recipe. */
  command: string;
  description: string;
  title: string;
  out: string;
  epochs: number;
  quick: boolean;
  wallSeconds: number;
  /** The machine that ran the runs (default this one): kept when a report is rebuilt from cached runs elsewhere. */
  machine?: Record<string, unknown>;
  tasks: string[];
  methods: string[];
  seeds: number[];
  grid: Record<string, number[]>;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
// One seed has no spread: NaN, printed as a dash, never a misleading 0.
const std = (xs: number[]) => (xs.length < 2 ? NaN : Math.sqrt(xs.reduce((s, x) => s + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

function svg(width: number, height: number, body: string[]): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">\n<rect width="100%" height="100%" fill="white"/>\n${body.join('\n')}\n</svg>\n`;
}

/** The learning rate a (task, method) uses: best validation accuracy on seed 0, ties to the lower rate. */
export function bestLearningRate(runs: Run[], task: string, method: string): number | undefined {
  const cands = runs.filter((r) => r.task === task && r.method === method && r.seed === 0);
  return cands.sort((a, b) => b.valAccuracy - a.valAccuracy || a.learningRate - b.learningRate)[0]?.learningRate;
}

/** Writes accuracy.json, accuracy.md and the plots; returns the markdown. */
export function report(all: Run[], o: Options): string {
  const chosen = new Map<string, number>();
  for (const t of o.tasks) {
    for (const m of o.methods) {
      const lr = bestLearningRate(all, t, m);
      if (lr !== undefined) chosen.set(`${t}/${m}`, lr);
    }
  }
  const final = all.filter((r) => chosen.get(`${r.task}/${r.method}`) === r.learningRate && o.seeds.includes(r.seed));
  const cell = (t: string, m: string) => final.filter((r) => r.task === t && r.method === m).map((r) => r.testAccuracy);
  // One seed's mean over tasks: the unit the seed-to-seed spread and the paired comparisons use.
  const seedMean = (m: string, s: number) => mean(o.tasks.map((t) => final.find((r) => r.task === t && r.method === m && r.seed === s)?.testAccuracy ?? NaN));
  const groups = [...new Set(o.tasks.map((t) => final.find((r) => r.task === t)?.group ?? ''))];
  const rows = o.methods.map((m) => {
    const perTask = Object.fromEntries(o.tasks.map((t) => [t, { mean: mean(cell(t, m)), std: std(cell(t, m)), n: cell(t, m).length }]));
    const perGroup = Object.fromEntries(groups.map((g) => [g, mean(o.tasks.filter((t) => final.find((r) => r.task === t)?.group === g).map((t) => perTask[t]!.mean))]));
    const runs = final.filter((r) => r.method === m);
    return {
      method: m,
      perTask,
      perGroup,
      mean: mean(o.tasks.map((t) => perTask[t]!.mean)),
      // The seed-to-seed spread of the task-mean.
      std: std(o.seeds.map((s) => seedMean(m, s))),
      percent: mean(runs.map((r) => (100 * r.trainable) / r.total)),
      percentNoHead: mean(runs.map((r) => (100 * r.trainableNoHead) / r.totalNoHead)),
      learningRates: Object.fromEntries(o.tasks.map((t) => [t, chosen.get(`${t}/${m}`)])),
    };
  });

  // GPS vs Net: where the selected kernel entries sit, by depth.
  const depthShare = (m: string) => {
    const runs = final.filter((r) => r.method === m && r.perDepth);
    const depths = [...new Set(runs.flatMap((r) => r.perDepth!.map((d) => d.depth)))];
    return depths.map((d) => ({ depth: d, share: mean(runs.map((r) => r.perDepth!.find((x) => x.depth === d)!.trainable / Math.max(1, r.perDepth!.reduce((s, x) => s + x.trainable, 0)))) }));
  };
  // GPS overlap between tasks (seed 0): Jaccard index of the selected kernel entries.
  const gps0 = Object.fromEntries(o.tasks.map((t) => [t, final.find((r) => r.task === t && r.method === 'gps' && r.seed === 0)?.kernelIndices]));
  const jaccard = (a?: Record<string, number[]>, b?: Record<string, number[]>) => {
    if (!a || !b) return NaN;
    let inter = 0;
    let union = 0;
    for (const p of Object.keys(a)) {
      const sa = new Set(a[p]);
      const sb = new Set(b[p] ?? []);
      for (const x of sa) if (sb.has(x)) inter++;
      union += sa.size + sb.size;
    }
    return inter / (union - inter);
  };
  const overlap = o.tasks.map((a) => o.tasks.map((b) => jaccard(gps0[a], gps0[b])));

  // The papers' pairwise claims, as paired differences: every seed draws its own
  // task data, so comparing two methods on the same seed removes that shared noise.
  const pairs = [['gps', 'full'], ['fps', 'gps'], ['fps', 'magnitude'], ['gps', 'net'], ['gps', 'layer'], ['layer', 'net'], ['gps', 'magnitude'], ['magnitude', 'neuron-random'], ['neuron-random', 'net-random'], ['gps', 'head-ce']].filter(([a, b]) => o.methods.includes(a!) && o.methods.includes(b!));
  const paired = pairs.map(([a, b]) => {
    const d = o.seeds.map((s) => seedMean(a!, s) - seedMean(b!, s));
    return { a: a!, b: b!, perSeed: d, mean: mean(d), std: std(d) };
  });
  const result = { machine: o.machine ?? machine(), epochs: o.epochs, seeds: o.seeds, grid: o.grid, wallSeconds: o.wallSeconds, rows, paired, depth: { gps: depthShare('gps'), net: depthShare('net') }, overlap: { tasks: o.tasks, jaccard: overlap } };
  writeFileSync(join(o.out, 'accuracy.json'), JSON.stringify(result, null, 2) + '\n');

  // Plot 1: accuracy against trainable % (without the head, log scale).
  const W = 560;
  const H = 360;
  const pts = rows.filter((r) => !Number.isNaN(r.mean));
  const xs = pts.map((r) => Math.log10(Math.max(r.percentNoHead, 1e-3)));
  const [x0, x1] = [Math.min(...xs, -3), Math.max(...xs, 2)];
  const [y0, y1] = [Math.min(...pts.map((r) => r.mean)) - 0.02, Math.max(...pts.map((r) => r.mean)) + 0.02];
  const sx = (v: number) => 60 + ((v - x0) / (x1 - x0 || 1)) * (W - 200);
  const sy = (v: number) => H - 40 - ((v - y0) / (y1 - y0 || 1)) * (H - 70);
  // Labels sit right of their points, or left where that is taken; one that
  // still overlaps a label placed before it (best methods first) or another
  // point moves down, with a leader line to its point.
  const labelText = (r: (typeof pts)[number]) => `${esc(r.method)} ${(100 * r.mean).toFixed(1)}%${r.percentNoHead === 0 ? ' (0% trainable)' : ''}`;
  type Box = { x0: number; x1: number; y: number };
  const dots: Box[] = pts.map((r, i) => ({ x0: sx(xs[i]!) - 5, x1: sx(xs[i]!) + 5, y: sy(r.mean) + 4 }));
  const labelled: (Box & { r: (typeof pts)[number]; i: number; left: boolean })[] = [];
  const hit = (b: Box, own: number) => [...labelled, ...dots.filter((_, j) => j !== own)].find((l) => l.x0 < b.x1 && b.x0 < l.x1 && Math.abs(l.y - b.y) < 12.5);
  for (const i of pts.map((_, i) => i).sort((a, b) => pts[b]!.mean - pts[a]!.mean)) {
    const x = sx(xs[i]!);
    const width = 6.5 * labelText(pts[i]!).length; // about 6.5 px a character at 11 px
    const right = { x0: x + 16, x1: x + 16 + width, y: sy(pts[i]!.mean) + 4 };
    const left = { x0: x - 10 - width, x1: x - 10, y: right.y };
    if (!hit(right, i) || hit(left, i) || left.x0 < 60) {
      for (let h = hit(right, i); h; h = hit(right, i)) right.y = h.y + 13;
      labelled.push({ ...right, r: pts[i]!, i, left: false });
    } else labelled.push({ ...left, r: pts[i]!, i, left: true });
  }
  writeFileSync(
    join(o.out, 'accuracy-vs-params.svg'),
    svg(W, H, [
      `<text x="${W / 2}" y="16" text-anchor="middle" font-size="13">mean test accuracy vs trainable % (no head, log scale)</text>`,
      `<line x1="60" y1="${H - 40}" x2="${W - 30}" y2="${H - 40}" stroke="black"/><line x1="60" y1="30" x2="60" y2="${H - 40}" stroke="black"/>`,
      ...[-3, -2, -1, 0, 1, 2].filter((e) => e >= x0 && e <= x1).map((e) => `<text x="${sx(e)}" y="${H - 24}" text-anchor="middle">${10 ** e}%</text>`),
      ...[0, 0.25, 0.5, 0.75, 1].map((f) => y0 + f * (y1 - y0)).map((v) => `<text x="54" y="${sy(v) + 4}" text-anchor="end">${(100 * v).toFixed(0)}%</text>`),
      ...pts.map((r, i) => `<circle cx="${sx(xs[i]!)}" cy="${sy(r.mean)}" r="4" fill="${r.method === 'gps' ? 'crimson' : 'steelblue'}"/>`),
      ...labelled.map(({ r, i, y, left }) => {
        const [x, py] = [sx(xs[i]!), sy(r.mean)];
        const colour = r.method === 'gps' ? ' fill="crimson"' : '';
        if (left) return `<text x="${x - 10}" y="${y}" text-anchor="end"${colour}>${labelText(r)}</text>`;
        const leader = Math.abs(y - 4 - py) > 1 ? `<line x1="${x + 4}" y1="${py}" x2="${x + 14}" y2="${y - 4}" stroke="#999"/>` : `<line x1="${x + 5}" y1="${py}" x2="${x + 14}" y2="${py}" stroke="#999"/>`;
        return `${leader}<text x="${x + 16}" y="${y}"${colour}>${labelText(r)}</text>`;
      }),
    ]),
  );
  // Plot 2: selected kernel entries by depth, GPS vs Net.
  const dg = result.depth.gps;
  const dn = result.depth.net;
  const labels = dg.map((d) => (d.depth === null ? 'patch embed' : `block ${d.depth}`));
  const bw = 24;
  const DW = 80 + dg.length * 3 * bw;
  writeFileSync(
    join(o.out, 'depth.svg'),
    svg(DW, 260, [
      `<text x="${DW / 2}" y="16" text-anchor="middle" font-size="13">selected kernel entries by depth (GPS red, Net blue)</text>`,
      `<text x="${DW / 2}" y="32" text-anchor="middle">share of each method's selection, mean over tasks and seeds</text>`,
      `<line x1="40" y1="220" x2="${DW - 20}" y2="220" stroke="black"/>`,
      ...dg.flatMap((d, i) => {
        const n = dn.find((x) => x.depth === d.depth)?.share ?? 0;
        const x = 60 + i * 3 * bw;
        return [
          `<rect x="${x}" y="${220 - 180 * d.share}" width="${bw}" height="${180 * d.share}" fill="crimson"/>`,
          `<rect x="${x + bw}" y="${220 - 180 * n}" width="${bw}" height="${180 * n}" fill="steelblue"/>`,
          `<text x="${x + bw}" y="236" text-anchor="middle">${labels[i]}</text>`,
          `<text x="${x + bw / 2}" y="${216 - 180 * d.share}" text-anchor="middle" font-size="9">${(100 * d.share).toFixed(0)}%</text>`,
          `<text x="${x + 1.5 * bw}" y="${216 - 180 * n}" text-anchor="middle" font-size="9">${(100 * n).toFixed(0)}%</text>`,
        ];
      }),
    ]),
  );
  // Plot 3: GPS overlap between tasks.
  const cellPx = 44;
  writeFileSync(
    join(o.out, 'overlap.svg'),
    svg(140 + cellPx * o.tasks.length, 60 + cellPx * o.tasks.length, [
      `<text x="10" y="16" font-size="13">GPS selections: Jaccard overlap between tasks (seed 0)</text>`,
      ...o.tasks.flatMap((a, i) => [
        `<text x="130" y="${50 + i * cellPx + cellPx / 2}" text-anchor="end">${esc(a)}</text>`,
        ...o.tasks.map((_, j) => {
          const v = overlap[i]![j]!;
          const shade = Number.isNaN(v) ? 255 : Math.round(255 - 200 * v);
          return `<rect x="${140 + j * cellPx}" y="${40 + i * cellPx}" width="${cellPx - 2}" height="${cellPx - 2}" fill="rgb(${shade},${shade},255)"/><text x="${140 + j * cellPx + cellPx / 2}" y="${40 + i * cellPx + cellPx / 2 + 4}" text-anchor="middle">${Number.isNaN(v) ? '' : v.toFixed(2)}</text>`;
        }),
      ]),
    ]),
  );

  const edges = rows.flatMap((r) => {
    const grid = o.grid[r.method]!;
    const [lo, hi] = [Math.min(...grid), Math.max(...grid)];
    if (grid.length < 2) return [];
    return Object.entries(r.learningRates)
      .filter(([, lr]) => lr === lo || lr === hi)
      .map(([t, lr]) => `${r.method}/${t} (${lr === lo ? 'lowest' : 'highest'})`);
  });
  const pct = (x: number) => (Number.isNaN(x) ? '–' : (100 * x).toFixed(1).replace(/^-0\.0$/, '0.0'));
  const md = [
    `# mini-VTAB-1k accuracy, ${o.title}${o.quick ? ' (quick mode)' : ''}`,
    '',
    `Command: \`${o.command}\` (${result.machine['date'] as string}, ${result.machine['cpu'] as string}, ${result.machine['cores'] as number} cores); wall time of the invocation that ran the last runs ${(o.wallSeconds / 60).toFixed(1)} min; the runs' own time summed over all processes ${(all.reduce((s, r) => s + r.seconds, 0) / 60).toFixed(1)} min over ${all.length} runs (cached runs are not re-run).`,
    `${o.description}; learning rate per task and method picked on seed 0's validation split from ${JSON.stringify(o.grid)} and reused for seeds ${o.seeds.join(', ')}. Test accuracy, mean over seeds; ± is the seed-to-seed standard deviation of the task mean.`,
    '',
    `| method | ${o.tasks.join(' | ')} | ${groups.join(' | ')} | mean | trainable % | without head |`,
    `| --- | ${o.tasks.map(() => '---:').join(' | ')} | ${groups.map(() => '---:').join(' | ')} | ---: | ---: | ---: |`,
    ...rows.map((r) => `| ${r.method} | ${o.tasks.map((t) => pct(r.perTask[t]!.mean)).join(' | ')} | ${groups.map((g) => pct(r.perGroup[g]!)).join(' | ')} | **${pct(r.mean)}** ± ${pct(r.std)} | ${r.percent.toFixed(3)} | ${r.percentNoHead.toFixed(3)} |`),
    '',
    ...(paired.length > 0
      ? [
          'Paired differences of the mean over tasks (percentage points; per seed, then mean ± std over seeds):',
          '',
          '| comparison | per seed | mean ± std |',
          '| --- | --- | ---: |',
          ...paired.map((p) => `| ${p.a} − ${p.b} | ${p.perSeed.map(pct).join(', ')} | ${pct(p.mean)} ± ${pct(p.std)} |`),
          '',
        ]
      : []),
    `Learning rates picked at an edge of their grid (a wider grid might do better there): ${edges.length === 0 ? 'none' : edges.join(', ')}.`,
    '',
    'Plots: `accuracy-vs-params.svg`, `depth.svg` (GPS vs Net by depth), `overlap.svg` (GPS selections across tasks).',
    '',
  ].join('\n');
  writeFileSync(join(o.out, 'accuracy.md'), md);
  console.log(md);
  return md;
}
