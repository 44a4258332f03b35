// The root entry must run in a browser: nothing it reaches may import a Node
// built-in or read `process`. This walks the import graph from src/index.ts
// (the compiled dist/ mirrors it file for file) and checks every file.
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { expect, test } from 'vitest';

const src = new URL('../src/', import.meta.url).pathname;
const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/** Every file reachable from `entry` through imports (type-only imports excluded: they vanish when compiled). */
function reachable(entry: string): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    const text = readFileSync(file, 'utf8');
    const specs = [...text.matchAll(/^\s*(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?'([^']+)'/gm)].map((m) => m[1]!);
    seen.set(file, specs);
    for (const s of specs) if (s.startsWith('.')) visit(join(dirname(file), s.replace(/\.js$/, '.ts')));
  };
  visit(entry);
  return seen;
}

test('nothing reachable from the root entry imports a Node built-in or reads process', () => {
  const files = reachable(join(src, 'index.ts'));
  expect(files.size).toBeGreaterThan(30);
  const offences: string[] = [];
  for (const [file, specs] of files) {
    const name = relative(src, file);
    for (const s of specs) if (builtins.has(s)) offences.push(`${name} imports ${s}`);
    const code = readFileSync(file, 'utf8').replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, '');
    if (/(?<![.\w])process\s*[.[]/.test(code)) offences.push(`${name} reads process`);
  }
  expect(offences).toEqual([]);
});

test('the walk does find Node-only code where it is: sparsetune/node reaches node:fs', () => {
  const files = reachable(join(src, 'node', 'index.ts'));
  const imports = [...files.values()].flat();
  expect(imports).toContain('node:fs');
});
