// The browser test: builds the pages from the installed package, serves them on
// 127.0.0.1, drives Debian's Chromium headless with puppeteer-core (which
// downloads no browser), and checks what the first page reports against Node
// and what the worker-pool page reports against one thread:
//   node test-page.mjs [screenshot.png]
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';
import { countMask, crc32, gps, initBackend, replaceHead, select, selectionEnv } from 'sparsetune';
import { loadBackbone } from 'sparsetune/node';
import { buildPage, pageTask, TASK } from './build.mjs';
import { serve } from './serve.mjs';

const t0 = performance.now();
const site = mkdtempSync(join(tmpdir(), 'sparsetune-page-'));
const profile = mkdtempSync(join(tmpdir(), 'sparsetune-chromium-'));
await buildPage(site);
const server = await serve(site);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', `--user-data-dir=${profile}`],
});
/** Opens `url` in a new page and waits for its #result; returns the page, what it reported, and the errors it showed. */
async function run(url) {
  const page = await browser.newPage();
  await page.setViewport({ width: 900, height: 720 });
  const errors = [];
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && errors.push(`console error: ${m.text()}`));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('#result[data-done="1"]', { timeout: 240_000 });
  return { page, errors, result: JSON.parse(await page.$eval('#result', (el) => el.textContent)) };
}
try {
  const { page, errors, result } = await run(server.url);
  if (process.argv[2]) await page.screenshot({ path: process.argv[2] });
  console.log('browser: page reported', JSON.stringify(result));
  assert.deepEqual(errors, []);
  assert.equal(result.error, undefined);
  assert.equal(result.backend, 'wasm');

  // The same selection in Node, on the same images with the same seed.
  await initBackend('wasm');
  const { model: backbone, params: pretrained } = loadBackbone('vit');
  const model = backbone.withClasses(TASK.classes);
  const params = replaceHead(model, pretrained, TASK.seed);
  const mask = select(gps({ k: 1 }), selectionEnv({ model, params, data: pageTask().train, seed: TASK.seed }));
  const bits = Object.values(mask.bits);
  const all = new Uint8Array(bits.reduce((s, b) => s + b.length, 0));
  bits.reduce((at, b) => (all.set(b, at), at + b.length), 0);
  assert.equal(result.trainable, countMask(mask).trainable, 'selection count differs from Node');
  assert.equal(result.maskCrc, crc32(all), 'selected entries differ from Node');
  assert.ok(result.after > result.before, `accuracy did not improve: ${result.before} -> ${result.after}`);
  assert.ok(result.deltaBytes > 0 && result.deltaBytes < 200_000, `delta size ${result.deltaBytes}`);

  // The worker-pool page (workers/, served cross-origin isolated): a trainer
  // in a dedicated worker selects and fine-tunes on one thread and on two pool workers.
  const t1 = performance.now();
  const { errors: poolErrors, result: r } = await run(`${server.url}workers/`);
  console.log('browser: the worker-pool page reported', JSON.stringify({ ...r, loss: undefined }));
  assert.deepEqual(poolErrors, []);
  assert.equal(r.error, undefined);
  assert.equal(r.crossOriginIsolated, true);
  assert.match(r.refusal, /^ConfigError: .*dedicated Web Worker/, 'the main thread is refused with a ConfigError that says where to run the pool');
  assert.equal(r.workers, 2);
  assert.ok(r.maskDiffers <= 0.001 * r.trainable, `the pool's GPS selection differs from one thread's in ${r.maskDiffers} of ${r.trainable} entries`);
  assert.equal(r.poolRepeats, true, 'two runs on the same pool differ');
  assert.ok(r.maxRelativeDiff < 1e-4, `pool and one thread differ by ${r.maxRelativeDiff}`);
  r.loss.one.forEach((l, i) => assert.ok(Math.abs(l - r.loss.pool[i]) < 1e-4, `epoch ${i} loss: ${l} on one thread, ${r.loss.pool[i]} on the pool`));
  assert.deepEqual(r.poolTensors, [0, 0], 'tensors left in the pool workers');
  console.log(`browser: the worker-pool page passed in ${((performance.now() - t1) / 1000).toFixed(1)} s (fine-tuning at batch 64, pool of 2 ÷ one thread: ${r.tuneSpeedup.toFixed(2)}×)`);
  console.log(`browser: passed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
} finally {
  await browser.close();
  await server.close();
  rmSync(site, { recursive: true, force: true });
  rmSync(profile, { recursive: true, force: true });
}
