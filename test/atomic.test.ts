// Atomic writes under a real failure: a child process with a file-size
// limit (ulimit -f, a stand-in for a full disk) overwrites a file; the write
// fails with EFBIG, and the old file must be intact with no temp file left.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { writeFileAtomic } from '../src/node/atomic.js';

const root = new URL('..', import.meta.url).pathname;
const tsx = join(root, 'node_modules/.bin/tsx');
// ulimit -f counts 1024-byte blocks in bash.
const LIMIT_BLOCKS = 4;
const LIMIT = LIMIT_BLOCKS * 1024;

/** Runs `writer` (`atomic` or `plain`) in a child under the size limit; returns what it printed. */
function writeUnderLimit(file: string, size: number, writer: 'atomic' | 'plain'): string {
  const script = join(mkdtempSync(join(tmpdir(), 'sparsetune-atomic-script-')), 'write.ts');
  writeFileSync(
    script,
    `import { writeFileSync } from 'node:fs';
import { writeFileAtomic } from ${JSON.stringify(join(root, 'src/node/atomic.ts'))};
const bytes = new Uint8Array(${size}).fill(0xab);
try {
  ${writer === 'atomic' ? 'writeFileAtomic' : 'writeFileSync'}(${JSON.stringify(file)}, bytes);
  console.log('written');
} catch (e) {
  console.log('failed', (e as NodeJS.ErrnoException).code);
}
`,
  );
  // SIGXFSZ ignored (trap '' XFSZ survives exec), so the write fails with EFBIG instead of killing the child.
  return execFileSync('bash', ['-c', `trap '' XFSZ; ulimit -f ${LIMIT_BLOCKS}; exec "$0" "$1"`, tsx, script], { encoding: 'utf8' }).trim();
}

describe('writeFileAtomic', () => {
  test('writes, and overwrites, the whole file; no temp file remains', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sparsetune-atomic-'));
    const file = join(dir, 'f.bin');
    writeFileAtomic(file, Uint8Array.from([1, 2, 3]));
    writeFileAtomic(file, Uint8Array.from([4, 5]));
    expect(Array.from(readFileSync(file))).toEqual([4, 5]);
    expect(readdirSync(dir)).toEqual(['f.bin']);
  });

  test('a write that fails under a real size limit leaves the old file intact and no temp file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sparsetune-atomic-'));
    const file = join(dir, 'model.ckpt');
    const old = new Uint8Array(LIMIT / 2).map((_, i) => i % 251);
    writeFileSync(file, old);
    expect(writeUnderLimit(file, LIMIT * 3, 'atomic')).toBe('failed EFBIG');
    expect(new Uint8Array(readFileSync(file))).toEqual(old);
    expect(readdirSync(dir)).toEqual(['model.ckpt']);
    // Within the limit the same child succeeds: the limit, not the writer, made it fail.
    expect(writeUnderLimit(file, LIMIT / 4, 'atomic')).toBe('written');
    expect(readFileSync(file).length).toBe(LIMIT / 4);
    expect(readdirSync(dir)).toEqual(['model.ckpt']);
  });

  test('a failure before any byte is written (no such directory) throws the system error', () => {
    expect(() => writeFileAtomic(join(tmpdir(), 'sparsetune-no-such-dir', 'x', 'f.bin'), new Uint8Array(1))).toThrow(/ENOENT/);
  });
});

test('writeCheckpoint over an existing checkpoint under a size limit keeps the old one loadable', async () => {
  // The reported failure: an 825 KB checkpoint overwritten under `ulimit -f 400` was left cut short.
  const dir = mkdtempSync(join(tmpdir(), 'sparsetune-atomic-ckpt-'));
  const file = join(dir, 'vit.ckpt');
  const script = join(dir, 'write.mts');
  writeFileSync(
    script,
    `import { initBackend } from ${JSON.stringify(join(root, 'src/index.ts'))};
import { loadBackbone, readCheckpoint, writeCheckpoint } from ${JSON.stringify(join(root, 'src/node/index.ts'))};
await initBackend('cpu');
const { model, params } = loadBackbone('vit');
const mode = process.argv[2];
if (mode === 'small') writeCheckpoint(${JSON.stringify(file)}, model.spec, { ...params }, {});
else {
  try { writeCheckpoint(${JSON.stringify(file)}, model.spec, params, { meta: { pad: 'x'.repeat(600_000) } }); console.log('written'); }
  catch (e) { console.log('failed', (e as NodeJS.ErrnoException).code); }
  console.log(Object.keys(readCheckpoint(${JSON.stringify(file)}, model.spec).params).length);
}
`,
  );
  execFileSync(tsx, [script, 'small']);
  const before = readFileSync(file);
  const out = execFileSync('bash', ['-c', `trap '' XFSZ; ulimit -f 400; exec "$0" "$1" big`, tsx, script], { encoding: 'utf8', cwd: root }).trim().split('\n');
  expect(out[0]).toBe('failed EFBIG');
  expect(Number(out[1])).toBeGreaterThan(0);
  expect(readFileSync(file).equals(before)).toBe(true);
  expect(readdirSync(dir).sort()).toEqual(['vit.ckpt', 'write.mts']);
});
