// The root entry must run in a browser: nothing it reaches may import a Node
// built-in or read `process`. This walks the import graph from src/index.ts
// (the compiled dist/ mirrors it file for file) and checks every file.
import { readdirSync, readFileSync } from 'node:fs';
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

// The layering README's architecture map states: each folder imports only the
// folders listed for it (type-only imports count: they are dependencies too).
const LAYERS: Record<string, readonly string[]> = {
  core: [],
  models: ['core'],
  data: ['core'],
  selection: ['core', 'models', 'data'],
  formats: ['core', 'models', 'selection'],
  adapters: ['core', 'models', 'selection'],
  optim: ['core', 'models', 'data', 'selection'],
  keras: ['core', 'models'],
  methods: ['core', 'models', 'data', 'selection', 'formats', 'adapters', 'optim'],
  parallel: ['core', 'models', 'data', 'selection', 'keras'],
  testing: ['core', 'selection', 'optim'],
  node: ['core', 'models', 'data', 'selection', 'formats', 'adapters', 'optim', 'methods', 'keras', 'parallel'],
};

/** Per source file, the relative modules it imports, type-only ones included, and the scripts it starts as workers (`new URL('./worker.js', import.meta.url)`). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/^\s*(?:import|export)\s+(?:[^'";]*?\sfrom\s+)?'(\.[^']+)'/gm), ...text.matchAll(/new URL\('(\.[^']+\.js)', self\)/g)];
  return specifiers.map((m) => join(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
}

test('each folder imports only the layers below it, as the architecture map says', () => {
  const offences: string[] = [];
  const folders = readdirSync(src, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  expect(folders.sort()).toEqual(Object.keys(LAYERS).sort());
  for (const folder of folders) {
    for (const f of readdirSync(join(src, folder)).filter((f) => f.endsWith('.ts'))) {
      for (const target of importsOf(join(src, folder, f))) {
        const to = relative(src, target).split('/')[0]!;
        if (to !== folder && !LAYERS[folder]!.includes(to)) offences.push(`${folder}/${f} imports ${relative(src, target)}`);
      }
    }
  }
  expect(offences).toEqual([]);
});

test("every file in a folder is used: reachable from the folder's index.ts", () => {
  const unused: string[] = [];
  for (const folder of Object.keys(LAYERS)) {
    const seen = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file) || relative(src, file).split('/')[0] !== folder) return;
      seen.add(file);
      importsOf(file).forEach(visit);
    };
    visit(join(src, folder, 'index.ts'));
    for (const f of readdirSync(join(src, folder)).filter((f) => f.endsWith('.ts'))) if (!seen.has(join(src, folder, f))) unused.push(`${folder}/${f}`);
  }
  expect(unused).toEqual([]);
});
