// The browser test: builds the page from the installed package, serves it on
// 127.0.0.1, drives Debian's Chromium headless with puppeteer-core (which
// downloads no browser), and checks what the page reports against Node:
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
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 900, height: 720 });
  const errors = [];
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && errors.push(`console error: ${m.text()}`));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
  await page.goto(server.url, { waitUntil: 'load' });
  await page.waitForSelector('#result[data-done="1"]', { timeout: 240_000 });
  const result = JSON.parse(await page.$eval('#result', (el) => el.textContent));
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
  console.log(`browser: passed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
} finally {
  await browser.close();
  await server.close();
  rmSync(site, { recursive: true, force: true });
  rmSync(profile, { recursive: true, force: true });
}
