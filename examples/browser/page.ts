/// <reference lib="dom" />
// Fine-tuning in the browser: the page that docs/browser.md shows. Bundled by
// build.mjs from the installed package; it uses only the root entry, which
// touches no Node built-in.
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import {
  backboneFromBytes,
  countMask,
  crc32,
  evaluate,
  extractDelta,
  fineTune,
  gps,
  initBackend,
  replaceHead,
  saveDelta,
  select,
  selectionEnv,
  type ImageSet,
} from 'sparsetune';

const $ = (id: string) => document.getElementById(id)!;
const status = (text: string) => ($('status').textContent = text);
const bytesOf = async (url: string) => new Uint8Array(await (await fetch(url)).arrayBuffer());

/** An image set from the two files build.mjs wrote: float32 pixels, int32 labels. */
async function imageSet(name: string, n: number): Promise<ImageSet> {
  const images = new Float32Array((await bytesOf(`${name}-images.bin`)).buffer);
  const labels = new Int32Array((await bytesOf(`${name}-labels.bin`)).buffer);
  return { images, labels, n, shape: [28, 28, 1] };
}

async function main(): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  setWasmPaths('./'); // the .wasm files are served beside this page
  const backend = await initBackend('wasm');
  $('backend').textContent = backend;

  status('loading the ViT and the digits task…');
  const meta = (await (await fetch('task.json')).json()) as { classes: number; train: number; test: number; seed: number; epochs: number };
  const { model: backbone, params: pretrained } = backboneFromBytes('vit', await bytesOf('vit.ckpt'));
  const train = await imageSet('train', meta.train);
  const test = await imageSet('test', meta.test);
  const model = backbone.withClasses(meta.classes);
  const params = replaceHead(model, pretrained, meta.seed);

  status('selecting with GPS…');
  const mask = select(gps({ k: 1 }), selectionEnv({ model, params, data: train, seed: meta.seed }));
  const { trainable, total } = countMask(mask);
  const bits = Object.values(mask.bits);
  const all = new Uint8Array(bits.reduce((s, b) => s + b.length, 0));
  bits.reduce((at, b) => (all.set(b, at), at + b.length), 0);
  $('selected').textContent = `${trainable.toLocaleString('en')} of ${total.toLocaleString('en')} (${((100 * trainable) / total).toFixed(2)}%)`;

  const before = evaluate(model, params, test);
  $('before').textContent = `${(100 * before).toFixed(1)}%`;
  status('fine-tuning…');
  const { params: tuned } = fineTune({
    model, params, mask, train, epochs: meta.epochs, batchSize: 32, learningRate: 1e-2, seed: meta.seed,
    progressBar: (p) => status(`fine-tuning: epoch ${p.epoch}, step ${p.step}/${p.steps}, loss ${p.loss.toFixed(3)}`),
  });
  const after = evaluate(model, tuned, test);
  $('after').textContent = `${(100 * after).toFixed(1)}%`;

  const delta = saveDelta(extractDelta(model.spec, params, tuned, mask));
  $('delta').textContent = `${(delta.length / 1024).toFixed(1)} KiB`;
  const link = $('download') as HTMLAnchorElement;
  link.href = URL.createObjectURL(new Blob([delta.slice()], { type: 'application/octet-stream' }));
  link.hidden = false;
  const seconds = (performance.now() - t0) / 1000;
  $('time').textContent = `${seconds.toFixed(1)} s`;
  status('done');
  return { backend, trainable, total, maskCrc: crc32(all), before, after, deltaBytes: delta.length, seconds };
}

const out = $('result');
main()
  .then((r) => (out.textContent = JSON.stringify(r)))
  .catch((e: unknown) => {
    $('error').textContent = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    out.textContent = JSON.stringify({ error: String(e) });
  })
  .finally(() => (out.dataset['done'] = '1'));
