// Builds the browser example into a folder you can serve as static files:
//   node build.mjs <out>
// Run it in a project where sparsetune (the tarball) and esbuild are
// installed, with page.ts and index.html beside this file (and workers/). It
// bundles the page and the worker-pool page (workers/: a trainer and a pool
// worker, each a Web Worker of its own), copies tfjs's wasm binaries and the shipped ViT checkpoint beside it,
// and writes a small digits task as raw typed arrays for the page to fetch.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { build } from 'esbuild';
import { subset } from 'sparsetune';
import { checkpointPath, digits } from 'sparsetune/node';

export const TASK = { classes: 10, train: 320, test: 200, seed: 0, epochs: 5 };

/** The train and test images the page uses, built the same way in Node for the test's reference. */
export function pageTask() {
  const task = digits({ seed: TASK.seed, testSize: TASK.test });
  return { train: subset(task.train, [...Array(TASK.train).keys()]), test: task.test };
}

export async function buildPage(out) {
  const here = dirname(new URL(import.meta.url).pathname);
  mkdirSync(out, { recursive: true });
  // The first page, and the worker-pool page in workers/ (served cross-origin isolated) with its two workers' scripts.
  mkdirSync(join(out, 'workers'), { recursive: true });
  await build({
    entryPoints: { page: join(here, 'page.ts'), 'workers/page': join(here, 'workers', 'page.ts'), 'workers/trainer': join(here, 'workers', 'trainer.ts'), 'workers/pool-worker': join(here, 'workers', 'pool-worker.ts') },
    outdir: out,
    bundle: true,
    format: 'esm',
    platform: 'browser', // tfjs's "browser" fields map its Node-only imports away
    target: 'es2022',
    minify: true,
    sourcemap: true,
    logLevel: 'warning',
  });
  copyFileSync(join(here, 'index.html'), join(out, 'index.html'));
  copyFileSync(join(here, 'workers', 'index.html'), join(out, 'workers', 'index.html'));
  const wasm = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm'));
  // Which binary loads depends on the browser (SIMD, threads): ship all three.
  for (const f of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm']) copyFileSync(join(wasm, f), join(out, f));
  copyFileSync(checkpointPath('vit'), join(out, 'vit.ckpt'));
  const { train, test } = pageTask();
  for (const [name, set] of [['train', train], ['test', test]]) {
    writeFileSync(join(out, `${name}-images.bin`), new Uint8Array(set.images.buffer, set.images.byteOffset, set.images.byteLength));
    writeFileSync(join(out, `${name}-labels.bin`), new Uint8Array(set.labels.buffer, set.labels.byteOffset, set.labels.byteLength));
  }
  writeFileSync(join(out, 'task.json'), JSON.stringify(TASK));
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const out = process.argv[2];
  if (!out) throw new Error('usage: node build.mjs <out folder>');
  await buildPage(out);
  console.log(`built the page into ${out}; serve it with: node serve.mjs ${out}`);
}
