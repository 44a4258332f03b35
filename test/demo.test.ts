// The main job: flags, errors, and a quick end-to-end run.
import { spawnSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
const demo = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', ...args], { cwd: root, env: { ...process.env, SPARSETUNE_QUICK: '1' }, encoding: 'utf8' });

describe('npm run demo', () => {
  test('--help lists the flags', () => {
    const r = demo('--help');
    expect(r.status).toBe(0);
    for (const flag of ['--task', '--backbone', '--methods', '--epochs', '--seed', '--backend']) expect(r.stdout).toContain(flag);
  });
  test.each([
    [['--bogus'], "Unknown option '--bogus'"],
    [['--task', 'cifar'], "--task must be one of digits, fashion-coarse, digits-inverted, digits-noisy, rotation, location, count, got 'cifar'"],
    [['--methods', 'gps,gpss'], "--methods: unknown method 'gpss'"],
    [['--epochs', '0'], "--epochs must be an integer ≥ 1, got '0'"],
    [['--backend', 'gpu'], "--backend must be wasm, cpu or tensorflow, got 'gpu'"],
  ])('%j is a clear error', (args, message) => {
    const r = demo(...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(message);
  });
  test('runs GPS and linear probing, prints the table, and reloads the delta to the same accuracy', () => {
    const r = demo('--methods', 'gps,linear', '--epochs', '1', '--task', 'rotation');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/\| GPS +\| +\d+\.\d\d% \|/);
    expect(r.stdout).toMatch(/\| Linear probing +\|/);
    expect(r.stdout).toMatch(/reloaded onto a fresh base: test accuracy \d+\.\d\d% \(identical\)/);
  }, 180_000);
});
