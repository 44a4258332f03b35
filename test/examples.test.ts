// The guides quote examples/ verbatim, and every example runs.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
const guides = readdirSync(`${root}docs`).filter((f) => f.endsWith('.md'));
const examples = readdirSync(`${root}examples`).filter((f) => f.endsWith('.ts'));

describe('guides quote their examples exactly', () => {
  const quotes = guides.flatMap((g) =>
    [...readFileSync(`${root}docs/${g}`, 'utf8').matchAll(/<!-- example: (\S+) -->\n```ts\n([\s\S]*?)```/g)].map((m) => [g, m[1]!, m[2]!] as const),
  );
  test('at least one guide quotes an example', () => expect(quotes.length).toBeGreaterThan(0));
  test.each(quotes)('%s quotes %s', (_guide, file, code) => {
    expect(code).toBe(readFileSync(`${root}${file}`, 'utf8'));
  });
});

/** The number a pattern's first group captures in `out`; the test fails if the line is missing. */
function num(out: string, pattern: RegExp): number {
  const m = out.match(pattern);
  expect(m, `output has no line matching ${pattern}`).not.toBeNull();
  return Number(m![1]!.replace(/,/g, ''));
}
/** A percentage in [0, 100]. */
const percent = (out: string, pattern: RegExp) => {
  const v = num(out, pattern);
  expect(v).toBeGreaterThanOrEqual(0);
  expect(v).toBeLessThanOrEqual(100);
  return v;
};

/**
 * What each example claims, checked on its output (a quick run: 64 training
 * images and 1 epoch, so accuracies are only checked to be percentages;
 * what must hold exactly, such as a reload being identical, is checked exactly).
 */
const CLAIMS: Record<string, (out: string) => void> = {
  'getting-started.ts': (out) => {
    // GPS keeps k = 1 input connection per neuron, a small fraction of the network.
    expect(num(out, /kernel entries per neuron of blocks\.0\.mlp\.fc1: ([\d.]+)/)).toBe(1);
    expect(num(out, /trainable%: ([\d.]+)/)).toBeLessThan(5);
    percent(out, /test accuracy: ([\d.]+)%/);
    expect(out).toMatch(/method \{"method":"gps","k":1,[^\n]*reloaded: identical/);
  },
  'spt-lora.ts': (out) => {
    const kernels = num(out, /LoRA on (\d+) kernels/);
    percent(out, /SPT-LoRA: test accuracy ([\d.]+)%/);
    percent(out, /merged: test accuracy ([\d.]+)%/);
    const [separate, merged, checkpoint] = [/tuned file: (\d+) bytes with adapters/, /, (\d+) merged/, /the checkpoint is (\d+) bytes/].map((re) => num(out, re));
    expect(separate).toBeLessThan(checkpoint!);
    // Merged, the delta holds each adapted kernel whole: larger than its rank-8 adapters.
    if (kernels > 0) expect(merged).toBeGreaterThan(separate!);
    expect(out).toMatch(/reloaded \(adapters separate, rank 8\): identical/);
  },
  'fine-tune.ts': (out) => {
    const tuned = percent(out, /GPS: best epoch \d+, test accuracy ([\d.]+)%/);
    expect(num(out, /delta: (\d+) bytes/)).toBeGreaterThan(0);
    expect(percent(out, /reloaded accuracy ([\d.]+)%/)).toBe(tuned);
    percent(out, /LoRA \(merged\): test accuracy ([\d.]+)%/);
  },
  'many-tasks.ts': (out) => {
    percent(out, /rotation: \d+ bytes, test accuracy ([\d.]+)%/);
    percent(out, /count: \d+ bytes, test accuracy ([\d.]+)%/);
    expect(out).toContain('another base: applyDelta: the delta was made on other base weights');
    expect(out).toMatch(/overlap: mergeDeltas: both change entry \d+ of '/);
    expect(num(out, /merged, the later delta winning: (\d+) entries/)).toBeGreaterThan(0);
  },
  'own-loop.ts': (out) => {
    // trainStep leaks nothing: the tensors held are the same after every epoch.
    const held = [...out.matchAll(/^epoch \d+: loss ([\d.]+), (\d+) tensors held/gm)];
    expect(held.length).toBeGreaterThan(0);
    expect(new Set(held.map((m) => m[2])).size).toBe(1);
    percent(out, /test accuracy ([\d.]+)%/);
  },
  'select-fps.ts': (out) => {
    // FPS picks as many entries as GPS (k per neuron), with a far lower peak (memory is deterministic; time is not checked).
    const gps = out.match(/^GPS: trainable params: ([\d,]+) .* peak ([\d.]+) MiB$/m);
    const fps = out.match(/^FPS: trainable params: ([\d,]+) .* peak ([\d.]+) MiB$/m);
    expect(gps && fps).toBeTruthy();
    expect(fps![1]).toBe(gps![1]);
    expect(Number(fps![2])).toBeLessThan(Number(gps![2]) / 4);
    expect(num(out, /top-4 by \|w\|·\|a\|: (\d+) kernel entries/)).toBeGreaterThan(0);
    expect(num(out, /your model: trainable params: ([\d,]+)/)).toBeGreaterThan(0);
  },
  'workers.ts': (out) => {
    // Trained over worker threads, GPS beats chance (10 classes) even in the quick run.
    expect(percent(out, /GPS over \d+ workers: test accuracy ([\d.]+)%/)).toBeGreaterThan(10);
  },
  'select-gps.ts': (out) => {
    // Every ablation chooses exactly as many kernel entries as GPS.
    const counts = [...out.matchAll(/^(\S+) +(\d+) kernel entries$/gm)].map((m) => Number(m[2]));
    expect(counts).toHaveLength(6);
    expect(new Set(counts).size).toBe(1);
    expect(num(out, /^GPS +trainable params: ([\d,]+)/m)).toBeGreaterThan(0);
    num(out, /LoRA on (\d+) kernels/);
  },
  'models-and-data.ts': (out) => {
    expect(out).toMatch(/leaves: \d+ \| qkv kernel: \{ shape: \[ 32, 96 \], dtype: 'float32', role: 'kernel', neuronAxis: 1 \}/);
    expect(out.match(/^\S+ +(natural|specialized|structured) +\d+-way 800 200 100$/gm)).toHaveLength(7);
    percent(out, /untrained head on rotation: ([\d.]+)%/);
    expect(num(out, /reloaded (\d+) leaves/)).toBe(num(out, /leaves: (\d+)/));
    expect(out).toContain("loadCheckpoint: the file's spec differs from the model's");
  },
  'your-data.ts': (out) => {
    percent(out, /images: test accuracy ([\d.]+)%/);
    percent(out, /features: test accuracy ([\d.]+)%/);
    const m = out.match(/regression: test MSE ([\d.]+) → ([\d.]+)/);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBeLessThan(Number(m![1]));
  },
  'your-model.ts': (out) => {
    expect(out).toContain('same spec either way: true');
    expect(num(out, /max \|imported − keras\.predict\|: ([\d.e+-]+)/)).toBeLessThan(1e-4);
    percent(out, /test accuracy ([\d.]+)%/);
    expect(num(out, /max \|served − sparsetune\|: ([\d.e+-]+)/)).toBeLessThan(1e-4);
  },
  'pretrained-mobilenet.ts': (out) => {
    expect(num(out, /max \|imported − keras\.predict\| at \d+×\d+: ([\d.e+-]+)/)).toBeLessThan(1e-3);
    expect(num(out, /GPS trains \d+ of \d+ entries \(([\d.]+)%\)/)).toBeLessThan(10);
    percent(out, /test accuracy after: +([\d.]+)%/);
    expect(num(out, /max \|served − sparsetune\| ([\d.e+-]+)/)).toBeLessThan(1e-3);
  },
  'reselect.ts': (out) => {
    // The budget stays GPS's at every re-selection, and the delta holds every entry that moved.
    const rs = [...out.matchAll(/^after step \d+: (\d+) selected \((\d+) kept, (\d+) dropped, (\d+) added\)$/gm)].map((m) => m.slice(1).map(Number));
    expect(rs.length).toBeGreaterThan(0);
    for (const [selected, kept, dropped, added] of rs) {
      expect(selected).toBe(rs[0]![0]);
      expect(kept! + added!).toBe(selected);
      expect(dropped).toBe(added);
    }
    const trained = num(out, /entries that trained: (\d+)/);
    expect(trained).toBeGreaterThanOrEqual(rs[0]![0]!);
    expect(trained).toBeLessThanOrEqual(rs[0]![0]! + rs.reduce((n, r) => n + r[3]!, 0));
    expect(num(out, /changed but not in the delta: (\d+)/)).toBe(0);
    percent(out, /test accuracy ([\d.]+)%/);
  },
  'testing-a-criterion.ts': (out) => expect(out).toContain('taylor: selector and criterion laws hold'),
  'typed-shapes.ts': (out) => {
    expect(out).toMatch(/logits \[ \d+, 10 \]/);
    expect(out).toContain('checked: argument images: expected [B, 784], got [32, 785]');
  },
};

describe('examples do what they say', () => {
  test('every example has its claims checked', () => expect(Object.keys(CLAIMS).sort()).toEqual([...examples].sort()));
  test.each(examples)('%s', (file) => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', `examples/${file}`], {
      cwd: root,
      env: { ...process.env, SPARSETUNE_QUICK: '1' },
      encoding: 'utf8',
    });
    CLAIMS[file]!(out);
  });
});

describe('the guides show the committed benchmark results', () => {
  test.each([
    ['docs/benchmarks.md', 'bench/results/accuracy/accuracy.md'],
    ['docs/benchmarks.md', 'bench/results/accuracy-mobilenetv2/accuracy.md'],
    ['docs/benchmarks.md', 'bench/results/speed.md'],
    ['docs/benchmarks.md', 'bench/results/step-wasm.md'],
    ['docs/your-model.md', 'bench/results/keras-mobilenet.md'],
    ['docs/backends.md', 'bench/results/workers-wasm-b64.md'],
  ])('%s shows %s', (doc, file) => {
    const guide = readFileSync(`${root}${doc}`, 'utf8');
    const rows = readFileSync(`${root}${file}`, 'utf8').split('\n').filter((l) => l.startsWith('|'));
    expect(rows.length).toBeGreaterThan(2);
    for (const row of rows) expect(guide).toContain(row);
  });
});
