import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, expect, test } from 'vitest';
import { BackendError, initBackend } from '../src/index.js';
import { NATIVE_MISSING } from '../src/core/backend.js';

afterAll(async () => {
  await initBackend('wasm');
});

test('wasm is the default and cpu is available', async () => {
  expect(await initBackend()).toBe('wasm');
  expect(await initBackend('cpu')).toBe('cpu');
  expect(tf.getBackend()).toBe('cpu');
});

test('gradients are registered in Node for plain tfjs ops too', () => {
  const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.exp(x), 2)))(tf.zeros([3]));
  expect(Array.from(g.dataSync())).toEqual([2, 2, 2]);
});

test('on wasm, the copies the engine keeps for a gradient share their data: no new buffer, same values, each freed on its own', async () => {
  await initBackend('wasm');
  const x = tf.tensor([1, 2, 3]);
  const before = tf.memory();
  const c = tf.clone(x); // the engine's copy for a gradient is this same kernel
  // wasm's own Identity copied into another buffer
  expect(tf.memory().numDataBuffers).toBe(before.numDataBuffers);
  x.dispose();
  expect(Array.from(c.dataSync())).toEqual([1, 2, 3]);
  c.dispose();
  expect(tf.memory().numTensors).toBe(before.numTensors - 1);
  expect(tf.memory().numDataBuffers).toBe(before.numDataBuffers - 1);
  // A gradient through saved tensors is unchanged.
  const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(v, v)))(tf.tensor([1, -2]));
  expect(Array.from(g.dataSync())).toEqual([2, -4]);
});

test("'tensorflow' without a native package says what to install and what it needs", async () => {
  await expect(initBackend('tensorflow', ['sparsetune-no-such-package'])).rejects.toThrow(new BackendError(NATIVE_MISSING));
  expect(NATIVE_MISSING).toContain('@tensorflow/tfjs-node-gpu');
  expect(NATIVE_MISSING).toContain('CUDA 11.2 and cuDNN 8.1');
});

test('an unknown backend name is an error', async () => {
  // @ts-expect-error not a backend name
  await expect(initBackend('webgpu')).rejects.toThrow("initBackend: unknown backend 'webgpu'; expected 'wasm', 'cpu' or 'tensorflow'");
});

test.each(['throw in a timer', 'rejected top-level await'])("after initBackend on wasm, an uncaught error (%s) prints the user's message and stack, not the wasm glue, and exits 1", (how) => {
  // The emscripten glue re-throws from its own process handlers: before the
  // fix this printed ~38 KB of minified source under tsx and exited 7.
  const dir = mkdtempSync(join(tmpdir(), 'sparsetune-uncaught-'));
  const script = join(dir, 'main.mts');
  const index = new URL('../src/index.ts', import.meta.url).pathname;
  const fail = how === 'throw in a timer' ? "setTimeout(() => { throw new Error('user message 42'); });" : "await Promise.reject(new Error('user message 42'));";
  writeFileSync(script, `import { initBackend } from ${JSON.stringify(index)};\nawait initBackend();\n${fail}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname });
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('user message 42');
  expect(r.stderr).toContain('main.mts');
  expect(r.stderr.length).toBeLessThan(2000);
});

test('a native package that loads but registers no backend is a BackendError naming the package', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { pathToFileURL } = await import('node:url');
  // Stands in for tfjs-node built against another tfjs-core: it loads, and registers nothing with ours.
  const file = join(mkdtempSync(join(tmpdir(), 'sparsetune-native-')), 'fake-native.mjs');
  writeFileSync(file, 'export const loaded = true;\n');
  const name = pathToFileURL(file).href;
  const error = await initBackend('tensorflow', [name]).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(BackendError);
  expect((error as Error).message).toContain(`${name} loaded but registered no 'tensorflow' backend`);
  expect((error as Error).message).toContain('4.22.0');
});

test('using the library before initBackend says to await initBackend()', async () => {
  const { execFileSync } = await import('node:child_process');
  const root = new URL('..', import.meta.url).pathname;
  // A fresh process: no backend chosen yet (this one's was set up by test/setup.ts).
  const script = [
    `import { mlp } from ${JSON.stringify(root + 'src/models/index.ts')};`,
    `import { loadCheckpoint } from ${JSON.stringify(root + 'src/formats/index.ts')};`,
    'const m = mlp({ input: [2, 2, 1], hidden: [3], classes: 2 });',
    'for (const f of [() => m.init(0), () => loadCheckpoint(new Uint8Array(8))]) {',
    '  try { f(); console.log("no error"); } catch (e) { console.log(e.name + ": " + e.message); }',
    '}',
  ].join('\n');
  const out = execFileSync(root + 'node_modules/.bin/tsx', ['--eval', script], { encoding: 'utf8', cwd: root }).trim().split('\n');
  expect(out).toEqual([
    "BackendError: mlp.init: no backend is ready; call `await initBackend()` (or initBackend('cpu') / initBackend('tensorflow')) once before using sparsetune",
    "BackendError: loadCheckpoint: no backend is ready; call `await initBackend()` (or initBackend('cpu') / initBackend('tensorflow')) once before using sparsetune",
  ]);
});
