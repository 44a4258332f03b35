// Container files under attack: every truncation, random bit flips, and
// structured edits of the header JSON (re-ordered keys, removed fields,
// wrong types, renamed or swapped leaves) re-packed with a correct header
// checksum, so the edit reaches the readers' validation. Each file must
// either load bit-identical values or fail with a named error, and a
// failure must leave no tensor behind. The seed is printed at the start of
// every run; FC_SEED=<seed> replays it.
import { fc, test } from '@fast-check/vitest';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test as plain } from 'vitest';
import { crc32, FormatError, mapTree, paths, SpecError, type Params } from '../src/index.js';
import { mlp } from '../src/models/index.js';
import { loadCheckpoint, saveCheckpoint } from '../src/formats/index.js';
import { maskOf } from '../src/selection/index.js';
import { applyDelta, extractDelta, loadDelta, saveDelta } from '../src/formats/index.js';

const model = mlp({ input: [2, 2, 1], hidden: [3], classes: 2 });
const params = model.init(0);
const ckpt = saveCheckpoint(model.spec, params, { model: { name: model.name, config: model.config }, meta: { note: 'fuzz' } });
const tuned = mapTree(params, (t) => tf.keep(tf.add(t, 1)));
const mask = maskOf(model.spec, (_, p) => (p === 'layers.0.bias' ? true : p === 'head.kernel' ? Uint8Array.from([1, 0, 0, 1, 1, 0]) : false));
const delta = extractDelta(model.spec, params, tuned, mask);
const deltaBytes = saveDelta(delta);
const applied = applyDelta(model.spec, params, delta);

const bits = (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer));

/** The file's layout (container 2 has a 20-byte prefix with a header checksum, 1 an 8-byte one), header text and payload. */
function split(bytes: Uint8Array): { layout: 1 | 2; header: string; payload: Uint8Array } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const layout = view.getUint32(4, true) === 0 ? 2 : 1;
  const start = layout === 2 ? 20 : 8;
  const len = view.getUint32(layout === 2 ? 12 : 4, true);
  return { layout, header: new TextDecoder().decode(bytes.subarray(start, start + len)), payload: bytes.subarray(start + len) };
}

/** Packs header text and payload in `layout`, with a correct header checksum. */
function pack(layout: 1 | 2, header: string, payload: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(header);
  const start = layout === 2 ? 20 : 8;
  const out = new Uint8Array(start + json.length + payload.length);
  const view = new DataView(out.buffer);
  out.set([0x53, 0x50, 0x54, 0x4e]);
  if (layout === 2) {
    view.setUint32(8, 2, true);
    view.setUint32(12, json.length, true);
    view.setUint32(16, crc32(json), true);
  } else view.setUint32(4, json.length, true);
  out.set(json, start);
  out.set(payload, start + json.length);
  return out;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Edit = { at: number; kind: 'delete' | 'set' | 'reorder' | 'renameKey' | 'swap'; value: Json; pick: number };

const leafNames = paths(model.spec);
const weird: Json[] = [null, true, false, 0, -1, 1.5, 2 ** 32, 1e300, -0.5, '', 'x', '__proto__', 'constructor', 'toString', 'a..b', [], {}, [[]], [-1], [2, 2], ['1'], { path: 'x' }, ...leafNames, 'kernel', 'bias', 'head', 'float64'];

/** Every place in a JSON value: a parent (object or array) and a key. */
function places(v: Json, out: [Json[] | { [k: string]: Json }, string | number][] = []) {
  if (Array.isArray(v)) v.forEach((x, i) => (out.push([v, i]), places(x, out)));
  else if (v !== null && typeof v === 'object') Object.keys(v).forEach((k) => (out.push([v, k]), places(v[k]!, out)));
  return out;
}

/** Applies a structured edit to a copy of the header; `reorder` changes only key order, nothing else. */
function edit(header: string, e: Edit): string {
  const root = JSON.parse(header) as Json;
  const all = places(root);
  if (all.length === 0) return JSON.stringify(e.value);
  const [parent, key] = all[e.at % all.length]!;
  const target = Array.isArray(parent) ? parent[key as number]! : parent[key as string]!;
  switch (e.kind) {
    case 'set':
      if (Array.isArray(parent)) parent[key as number] = e.value;
      else parent[key as string] = e.value;
      break;
    case 'delete':
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key as string];
      break;
    case 'reorder': {
      // Sorted, reversed or rotated keys: what any JSON tool may do.
      const obj = target !== null && typeof target === 'object' && !Array.isArray(target) ? target : !Array.isArray(parent) ? parent : null;
      if (obj) {
        const ks = Object.keys(obj);
        const order = [[...ks].sort(), [...ks].reverse(), [...ks.slice(1), ...ks.slice(0, 1)]][e.pick % 3]!;
        const copy = { ...obj };
        for (const k of ks) delete obj[k];
        for (const k of order) obj[k] = copy[k]!;
      }
      break;
    }
    case 'renameKey':
      if (!Array.isArray(parent) && typeof e.value === 'string' && e.value !== key) {
        const ks = Object.keys(parent);
        const copy = { ...parent };
        for (const k of ks) delete parent[k];
        for (const k of ks) parent[k === key ? e.value : k] = copy[k]!;
      }
      break;
    case 'swap':
      if (Array.isArray(target) && target.length > 1) {
        const i = e.pick % target.length;
        const j = (i + 1) % target.length;
        [target[i], target[j]] = [target[j]!, target[i]!];
      }
      break;
  }
  return JSON.stringify(root);
}

const editArb = fc.record({
  at: fc.nat(10_000),
  kind: fc.constantFrom('delete', 'set', 'reorder', 'renameKey', 'swap'),
  value: fc.constantFrom(...weird),
  pick: fc.nat(100),
}) as fc.Arbitrary<Edit>;

const named = (e: unknown) => e instanceof FormatError || e instanceof SpecError;

/**
 * Loads a checkpoint with and without the spec: bit-identical to what was
 * saved, or a named error; no tensor left behind either way. With `whole`,
 * the model and metadata must be the saved ones too (a re-packed header may
 * legitimately say something else there; a corrupted one may not).
 */
function checkpointOutcome(bytes: Uint8Array, whole = false): void {
  for (const spec of [model.spec, undefined]) {
    const before = tf.memory().numTensors;
    let loaded: Params | undefined;
    try {
      const out = loadCheckpoint(bytes, spec);
      loaded = out.params;
      expect(paths(loaded)).toEqual(paths(params));
      for (const p of paths(params)) {
        expect(loaded[p]!.shape).toEqual(params[p]!.shape);
        expect(bits(loaded[p]!)).toEqual(bits(params[p]!));
      }
      expect(JSON.parse(JSON.stringify(out.header.spec))).toEqual(JSON.parse(JSON.stringify(model.spec)));
      if (whole) expect([out.header.model, out.header.meta]).toEqual([{ name: model.name, config: model.config }, { note: 'fuzz' }]);
    } catch (e) {
      if (!named(e)) throw e;
    } finally {
      if (loaded) tf.dispose(Object.values(loaded));
    }
    expect(tf.memory().numTensors).toBe(before);
  }
}

/** Loads and applies a delta: the same parameters as the original delta gives, or a named error; no tensor left behind. */
function deltaOutcome(bytes: Uint8Array, whole = false): void {
  const before = tf.memory().numTensors;
  let out: Params | undefined;
  try {
    out = applyDelta(model.spec, params, loadDelta(bytes));
    for (const p of paths(params)) expect(bits(out[p]!)).toEqual(bits(applied[p]!));
    // A corrupted file must not load at all, even where applying it happens to give the same parameters.
    if (whole) expect(bytes).toEqual(deltaBytes);
  } catch (e) {
    if (!named(e)) throw e;
  } finally {
    if (out) tf.dispose(Object.values(out).filter((t) => !Object.values(params).includes(t)));
  }
  expect(tf.memory().numTensors).toBe(before);
}

describe.each([
  ['checkpoint', ckpt, checkpointOutcome],
  ['delta', deltaBytes, deltaOutcome],
] as const)('%s files', (_, file, outcome: (bytes: Uint8Array, whole?: boolean) => void) => {
  plain('the untouched file loads bit-identical values', () => outcome(file));

  plain('every truncation is a FormatError', () => {
    for (let n = 0; n < file.length; n++) {
      const cut = file.slice(0, n);
      expect(() => (file === ckpt ? loadCheckpoint(cut) : loadDelta(cut)), `truncated to ${n} bytes`).toThrow(FormatError);
    }
  });

  test.prop([fc.uniqueArray(fc.nat(file.length * 8 - 1), { minLength: 1, maxLength: 8 })])('bit flips (1 to 8, header and payload): identical values or a named error', (flips) => {
    const bad = file.slice();
    for (const b of flips) bad[b >> 3]! ^= 1 << (b & 7);
    outcome(bad, true);
  });

  test.prop([fc.array(editArb, { minLength: 1, maxLength: 3 })])('structured header edits, re-packed with a correct header checksum: identical values or a named error', (edits) => {
    const { layout, header, payload } = split(file);
    outcome(pack(layout, edits.reduce(edit, header), payload));
  });

  test.prop([fc.constantFrom<Json>(null, [], 42, 'checkpoint', true, {})])('a header that is not an object of the right kind is a FormatError', (h) => {
    const { layout, payload } = split(file);
    const bytes = pack(layout, JSON.stringify(h), payload);
    expect(() => (file === ckpt ? loadCheckpoint(bytes) : loadDelta(bytes))).toThrow(FormatError);
  });
});

plain('a header re-serialised with sorted keys (as any JSON tool may) loads the same values, leaf by leaf', () => {
  const { layout, header, payload } = split(ckpt);
  const sortKeys = (v: Json): Json =>
    Array.isArray(v) ? v.map(sortKeys) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().reverse().map((k) => [k, sortKeys(v[k]!)])) : v;
  checkpointOutcome(pack(layout, JSON.stringify(sortKeys(JSON.parse(header) as Json)), payload));
  const { params: back } = loadCheckpoint(pack(layout, JSON.stringify(sortKeys(JSON.parse(header) as Json)), payload), model.spec);
  for (const p of paths(params)) expect(bits(back[p]!)).toEqual(bits(params[p]!));
  tf.dispose(Object.values(back));
});
