/// <reference lib="dom" />
// The trainer: a dedicated Web Worker, because fineTune is synchronous and
// waits for the pool's workers by blocking, which a page's main thread may
// not do. It selects with GPS and fine-tunes the shipped ViT on one thread
// and on a pool of two Web Workers, and posts what it measured to the page.
import * as tf from '@tensorflow/tfjs-core';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { backboneFromBytes, countMask, fineTune, gps, initBackend, replaceHead, select, selectionEnv, sgd, webWorkerPool, type ImageSet, type Mask, type Params, type WorkerPool } from 'sparsetune';

const bytesOf = async (url: string) => new Uint8Array(await (await fetch(url)).arrayBuffer());
const say = (status: string) => postMessage({ status });

async function main(): Promise<Record<string, unknown>> {
  setWasmPaths('../');
  // One core here too: the pool's workers use the others.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  await initBackend('wasm');
  const meta = (await (await fetch('../task.json')).json()) as { classes: number; train: number; seed: number };
  const { model: backbone, params: pretrained } = backboneFromBytes('vit', await bytesOf('../vit.ckpt'));
  const images = new Float32Array((await bytesOf('../train-images.bin')).buffer);
  const labels = new Int32Array((await bytesOf('../train-labels.bin')).buffer);
  const train: ImageSet = { images, labels, n: meta.train, shape: [28, 28, 1] };
  const model = backbone.withClasses(meta.classes);
  const params = replaceHead(model, pretrained, meta.seed);

  say('starting two pool workers…');
  const pool: WorkerPool = await webWorkerPool({ workers: 2, create: () => new Worker('./pool-worker.js', { type: 'module' }) });
  try {
    const choose = (parallel?: WorkerPool) => select(gps({ k: 1 }), selectionEnv({ model, params, data: train, seed: meta.seed, ...(parallel ? { parallel } : {}) }));
    say('selecting with GPS, on one thread and on the pool…');
    const mask = choose();
    const maskPool = choose(pool);

    const tune = (m: Mask, parallel?: WorkerPool) => {
      const start = performance.now();
      // Plain SGD, so that the two runs' parameters differ only as their gradients do (Adam would scale a near-zero gradient's rounding up to a full step).
      const r = fineTune({ model, params, mask: m, train, epochs: 2, batchSize: 64, optimizer: sgd(0.05), seed: meta.seed, progressBar: false, ...(parallel ? { parallel } : {}) });
      const ms = performance.now() - start;
      const host = Object.values(r.params as Params).map((p) => Array.from(p.dataSync()));
      const loss = r.history.map((h) => h.loss);
      tf.dispose(Object.values(r.params).filter((p) => !Object.values(params).includes(p)));
      return { host, loss, ms };
    };
    // Timed after the selection passes, which warmed up both sides.
    say('fine-tuning on one thread…');
    const one = tune(mask);
    say('fine-tuning on the pool, twice…');
    const a = tune(mask, pool);
    const b = tune(mask, pool);
    let maxDiff = 0;
    one.host.forEach((leaf, i) => leaf.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - a.host[i]![j]!) / (1 + Math.abs(v))))));
    // Near-ties may rank the other way: the pool sums the same gradients in another order.
    let maskDiffers = 0;
    for (const p of Object.keys(mask.bits)) mask.bits[p]!.forEach((v, i) => (maskDiffers += v === maskPool.bits[p]![i] ? 0 : 1));
    return {
      crossOriginIsolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
      workers: pool.workers,
      trainable: countMask(mask).trainable,
      maskDiffers,
      poolRepeats: JSON.stringify(a.host) === JSON.stringify(b.host) && JSON.stringify(a.loss) === JSON.stringify(b.loss),
      maxRelativeDiff: maxDiff,
      loss: { one: one.loss, pool: a.loss },
      tuneSpeedup: one.ms / a.ms,
      poolTensors: pool.tensors(),
    };
  } finally {
    await pool.terminate();
  }
}

main().then(
  (result) => postMessage({ result }),
  (e: unknown) => postMessage({ result: { error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) } }),
);
