import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { FormatError, paths, SpecError, type Params, type Tensor } from '../src/index.js';
import { fashionPartition } from '../src/node/index.js';
import { accuracy, BACKBONES, mlp, type BackboneName } from '../src/models/index.js';
import { backboneFromBytes, loadCheckpoint, saveCheckpoint } from '../src/formats/index.js';
import { extractDelta, loadDelta, saveDelta } from '../src/formats/index.js';
import { maskOf } from '../src/selection/index.js';
import { checkpointPath, loadBackbone, readCheckpoint, writeCheckpoint, writeDelta } from '../src/node/index.js';
import { batches } from '../src/data/index.js';

const model = mlp({ input: [4, 4, 1], hidden: [6], classes: 3 });
const params = model.init(0);
const bytes = saveCheckpoint(model.spec, params, { model: { name: model.name, config: model.config }, meta: { note: 'test' } });

describe('checkpoints', () => {
  test('round-trip every value exactly, with the header', () => {
    const { params: back, header } = loadCheckpoint(bytes, model.spec);
    expect(paths(back)).toEqual(paths(params));
    for (const p of paths(params)) expect(Array.from(back[p]!.dataSync())).toEqual(Array.from(params[p]!.dataSync()));
    expect(header.model).toEqual({ name: 'mlp', config: model.config });
    expect(header.meta).toEqual({ note: 'test' });
    expect(header.spec).toEqual(JSON.parse(JSON.stringify(model.spec)));
  });
  test('a file for another spec says which leaf differs', () => {
    const wider = mlp({ input: [4, 4, 1], hidden: [7], classes: 3 });
    expect(() => loadCheckpoint(bytes, wider.spec)).toThrow(
      new SpecError("loadCheckpoint: leaf 'head.kernel' is float32 [6, 3] head, neuron axis 1 in the file but float32 [7, 3] head, neuron axis 1 in the model"),
    );
    const deeper = mlp({ input: [4, 4, 1], hidden: [6, 6], classes: 3 });
    expect(() => loadCheckpoint(bytes, deeper.spec)).toThrow("loadCheckpoint: the file's spec differs from the model's: missing layers.1.bias, layers.1.kernel; extra none");
  });
  test('truncated and corrupted files are reported as such', () => {
    expect(() => loadCheckpoint(bytes.slice(0, bytes.length - 3))).toThrow(FormatError);
    expect(() => loadCheckpoint(bytes.slice(0, bytes.length - 3))).toThrow(/checkpoint file: truncated: payload has \d+ of \d+ bytes/);
    expect(() => loadCheckpoint(bytes.slice(0, 20))).toThrow(/checkpoint file: truncated: header needs \d+ bytes/);
    expect(() => loadCheckpoint(bytes.slice(0, 5))).toThrow('checkpoint file: truncated: 5 bytes is not even a header');
    const flipped = bytes.slice();
    flipped[flipped.length - 5]! ^= 0x40;
    expect(() => loadCheckpoint(flipped)).toThrow(/checkpoint file: corrupted: checksum [0-9a-f]+ does not match/);
    const junk = new Uint8Array(bytes.length + 4);
    junk.set(bytes);
    expect(() => loadCheckpoint(junk)).toThrow('checkpoint file: corrupted: 4 unexpected bytes after the payload');
    expect(() => loadCheckpoint(new TextEncoder().encode('not a checkpoint at all'))).toThrow('checkpoint file: not a sparsetune file (bad magic)');
  });
  test('saving checks parameters against the spec', () => {
    const wrong: Params = { ...params, 'head.bias': params['layers.0.bias']! };
    expect(() => saveCheckpoint(model.spec, wrong)).toThrow("saveCheckpoint: leaf 'head.bias': expected float32 [3], got float32 [6]");
  });
  test('file helpers', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'sparsetune-')), 'm.ckpt');
    writeCheckpoint(file, model.spec, params);
    expect(new Uint8Array(readFileSync(file)).length).toBeGreaterThan(0);
    expect(paths(readCheckpoint(file, model.spec).params)).toEqual(paths(params));
  });
});

describe('shipped checkpoints', () => {
  const test10k = fashionPartition().test;
  test.each(Object.keys(BACKBONES) as BackboneName[])('%s reloads to its recorded test accuracy', (name) => {
    const record = JSON.parse(readFileSync(new URL(`../checkpoints/${name}.json`, import.meta.url), 'utf8')) as { testAccuracy: number; command: string; seed: number; epochs: number; wallSeconds: number };
    expect(record.command).toContain(`--model ${name}`);
    const { model: m, params: p, header } = loadBackbone(name);
    expect(header.meta?.['testAccuracy']).toBe(record.testAccuracy);
    let hits = 0;
    for (const { x, y } of batches(test10k, 1000)) hits += accuracy(m.apply(p, x).logits as Tensor<readonly ['B', number]>, y) * x.shape[0]!;
    expect(hits / test10k.n).toBe(record.testAccuracy);
  }, 120_000);
});

describe('bytes given as a view load like a fresh array', () => {
  // Node's readFileSync returns a Buffer that is a view into a shared pool,
  // and Buffer#slice does not copy: reading `.buffer` of it once made a valid
  // delta "corrupted" and a checkpoint a RangeError.
  const dir = mkdtempSync(join(tmpdir(), 'sparsetune-views-'));
  const inside = (b: Uint8Array, offset: number) => {
    const big = new Uint8Array(b.length + offset + 5).fill(0xee);
    big.set(b, offset);
    return big.subarray(offset, offset + b.length);
  };
  const same = (a: Params, b: Params) => {
    expect(paths(b)).toEqual(paths(a));
    for (const p of paths(a)) expect(Array.from(b[p]!.dataSync())).toEqual(Array.from(a[p]!.dataSync()));
  };

  test('checkpoints: a Buffer from readFileSync and subarrays at odd offsets', () => {
    writeCheckpoint(join(dir, 'm.ckpt'), model.spec, params);
    same(params, loadCheckpoint(readFileSync(join(dir, 'm.ckpt')), model.spec).params);
    for (const offset of [1, 3, 4, 7]) same(params, loadCheckpoint(inside(bytes, offset), model.spec).params);
  });

  test('the shipped backbone from a Buffer', () => {
    const { params: want } = loadBackbone('mlp');
    same(want, backboneFromBytes('mlp', readFileSync(checkpointPath('mlp'))).params);
  });

  test('deltas: a Buffer from readFileSync and subarrays at odd offsets', () => {
    const tuned = { ...params, 'head.bias': params['head.bias']!.add(1) };
    const mask = maskOf(model.spec, (_leaf, path) => path === 'head.bias');
    const delta = extractDelta(model.spec, params, tuned, mask);
    writeDelta(join(dir, 'm.delta'), delta);
    const fromBuffer = loadDelta(readFileSync(join(dir, 'm.delta')));
    expect(Array.from(fromBuffer.leaves['head.bias']!.values)).toEqual(Array.from(delta.leaves['head.bias']!.values));
    for (const offset of [1, 2, 5]) {
      const d = loadDelta(inside(saveDelta(delta), offset));
      expect(Array.from(d.leaves['head.bias']!.indices)).toEqual(Array.from(delta.leaves['head.bias']!.indices));
      expect(Array.from(d.leaves['head.bias']!.values)).toEqual(Array.from(delta.leaves['head.bias']!.values));
    }
  });
});
