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

describe('examples run', () => {
  test.each(examples)('%s', (file) => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', `examples/${file}`], {
      cwd: root,
      env: { ...process.env, SPARSETUNE_QUICK: '1' },
      encoding: 'utf8',
    });
    expect(out.length).toBeGreaterThan(0);
  });
});

describe('the guides show the committed benchmark results', () => {
  test.each([
    ['docs/benchmarks.md', 'bench/results/accuracy/accuracy.md'],
    ['docs/benchmarks.md', 'bench/results/speed.md'],
    ['docs/benchmarks.md', 'bench/results/step-wasm.md'],
    ['docs/your-model.md', 'bench/results/keras-mobilenet.md'],
  ])('%s shows %s', (doc, file) => {
    const guide = readFileSync(`${root}${doc}`, 'utf8');
    const rows = readFileSync(`${root}${file}`, 'utf8').split('\n').filter((l) => l.startsWith('|'));
    expect(rows.length).toBeGreaterThan(2);
    for (const row of rows) expect(guide).toContain(row);
  });
});
