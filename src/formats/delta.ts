/**
 * Sparse deltas: what fine-tuning changed, as (leaf, flat index, value)
 * triples on top of a shared base. A delta records a hash of the base's spec
 * and a checksum of its values, so it cannot be applied to another base.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { requireBackend } from '../core/backend.js';
import { bytesOf, checkFilePath, describe, field, isCount, isRecord, isU32, packFile, unpackFile, crc32 } from './binary.js';
import { assertMatchesSpec, specKey, FormatError, MaskError, paths, SpecError, tree, type ParamSpec, type Params, type Tree } from '../core/index.js';
import { assertMaskFor, maskToIndices, type Mask } from '../selection/index.js';

/**
 * One leaf's changes: ascending flat indices and the new values there.
 * @category Deltas
 */
export interface LeafDelta {
  /** Ascending flat indices into the leaf. */
  readonly indices: Int32Array;
  /** The tuned values at those indices. */
  readonly values: Float32Array;
}

/**
 * A sparse delta over a base.
 * @category Deltas
 */
export interface Delta {
  /** Hash of the base's spec (paths, shapes, roles, neuron axes). */
  readonly specHash: number;
  /** CRC-32 of the base's values, leaves in spec order. */
  readonly baseChecksum: number;
  /** Changed entries per leaf (leaves without changes are absent). */
  readonly leaves: Tree<LeafDelta>;
}

/**
 * The spec hash a delta records.
 * @example
 * ```ts
 * specHash(model.spec) === delta.specHash
 * ```
 * @category Deltas
 */
export function specHash(spec: ParamSpec): number {
  return crc32(new TextEncoder().encode(specKey(spec)));
}

/**
 * The base checksum a delta records: CRC-32 over the base's float32 values in spec order.
 * @example
 * ```ts
 * baseChecksum(model.spec, pretrained) === delta.baseChecksum
 * ```
 * @category Deltas
 */
export function baseChecksum(spec: ParamSpec, base: Params): number {
  const parts = paths(spec).map((p) => {
    const v = base[p]!.dataSync() as Float32Array;
    return bytesOf(v);
  });
  const all = new Uint8Array(parts.reduce((s, x) => s + x.length, 0));
  let at = 0;
  for (const x of parts) {
    all.set(x, at);
    at += x.length;
  }
  return crc32(all);
}

/**
 * The tuned values of the entries `mask` selects, as a delta on `base`.
 * @example
 * ```ts
 * const delta = extractDelta(model.spec, pretrained, tuned, mask);
 * writeFileSync('task.delta', saveDelta(delta));
 * ```
 * @category Deltas
 */
export function extractDelta(spec: ParamSpec, base: Params, tuned: Params, mask: Mask): Delta {
  assertMatchesSpec(spec, base, 'extractDelta: base');
  assertMatchesSpec(spec, tuned, 'extractDelta: tuned');
  assertMaskFor(spec, mask, 'extractDelta');
  const idx = maskToIndices(mask);
  const leaves: Record<string, LeafDelta> = {};
  for (const p of paths(spec)) {
    const indices = idx[p]!;
    if (indices.length === 0) continue;
    const all = tuned[p]!.dataSync() as Float32Array;
    leaves[p] = { indices, values: Float32Array.from(indices, (i) => all[i]!) };
  }
  return { specHash: specHash(spec), baseChecksum: baseChecksum(spec, base), leaves };
}

/**
 * The base with the delta's values written in: new tensors for the leaves
 * the delta touches, the base's own tensors elsewhere. Everything is checked
 * before anything is built, so a bad delta changes nothing.
 * @example
 * ```ts
 * const taskParams = applyDelta(model.spec, pretrained, loadDelta(readFileSync('task.delta')));
 * ```
 * @category Deltas
 */
export function applyDelta(spec: ParamSpec, base: Params, delta: Delta): Params {
  requireBackend('applyDelta');
  assertMatchesSpec(spec, base, 'applyDelta: base');
  if (delta.specHash !== specHash(spec)) throw new SpecError('applyDelta: the delta was made for a model of another spec');
  if (delta.baseChecksum !== baseChecksum(spec, base)) throw new SpecError('applyDelta: the delta was made on other base weights (checksum differs)');
  for (const [p, d] of Object.entries(delta.leaves)) {
    // Own properties only: 'constructor' is "in" every object.
    const leaf = Object.hasOwn(spec, p) ? spec[p]! : undefined;
    if (!leaf) throw new SpecError(`applyDelta: the delta has leaf '${p}', which the spec lacks`);
    checkLeafDelta('applyDelta', p, d, leaf.shape.reduce((a, b) => a * b, 1));
  }
  const made: tf.Tensor[] = [];
  try {
    return Object.fromEntries(
      paths(spec).map((p) => {
        const d = Object.hasOwn(delta.leaves, p) ? delta.leaves[p] : undefined;
        if (!d) return [p, base[p]!];
        const values = Float32Array.from(base[p]!.dataSync() as Float32Array);
        d.indices.forEach((i, k) => (values[i] = d.values[k]!));
        const t = tf.tensor(values, [...spec[p]!.shape], 'float32');
        made.push(t);
        return [p, t];
      }),
    );
  } catch (e) {
    // Whatever was built before the failure goes; the base is untouched.
    tf.dispose(made);
    throw e;
  }
}

/**
 * Checks one leaf of a delta: typed arrays of equal length, indices
 * strictly increasing from 0 up (below `size` when the leaf's size is
 * known), values finite. A {@link FormatError} says which entry is wrong.
 */
function checkLeafDelta(what: string, path: string, d: LeafDelta, size = Infinity): void {
  if (!(d?.indices instanceof Int32Array) || !(d.values instanceof Float32Array)) {
    throw new FormatError(`${what}: leaf '${path}' must hold an Int32Array of indices and a Float32Array of values`);
  }
  if (d.indices.length !== d.values.length) throw new FormatError(`${what}: leaf '${path}' has ${d.indices.length} indices but ${d.values.length} values`);
  let prev = -1;
  for (let k = 0; k < d.indices.length; k++) {
    const i = d.indices[k]!;
    if (i <= prev) throw new FormatError(`${what}: leaf '${path}': indices must be strictly increasing, but index ${i} at position ${k} follows ${prev}`);
    if (i >= size) throw new FormatError(`${what}: index ${i} is outside leaf '${path}' of ${size} entries`);
    const v = d.values[k]!;
    if (!Number.isFinite(v)) throw new FormatError(`${what}: leaf '${path}': value ${v} at index ${i} is not finite`);
    prev = i;
  }
}

/** Checks a whole delta as {@link saveDelta} and {@link loadDelta} need it. */
function checkDelta(what: string, delta: Delta): void {
  if (!isU32(delta.specHash)) throw new FormatError(`${what}: specHash should be an unsigned 32-bit hash, got ${describe(delta.specHash)}`);
  if (!isU32(delta.baseChecksum)) throw new FormatError(`${what}: baseChecksum should be an unsigned 32-bit checksum, got ${describe(delta.baseChecksum)}`);
  if (!isRecord(delta.leaves)) throw new FormatError(`${what}: leaves should be an object of leaf deltas, got ${describe(delta.leaves)}`);
  for (const [p, d] of Object.entries(delta.leaves)) {
    checkFilePath(what, p, `leaf '${p}'`);
    checkLeafDelta(what, p, d);
  }
}

/** Binds a leaf's name to its entries, so renaming or re-ordering leaves in a header is caught. */
function leafDeltaCrc(path: string, indices: Int32Array, values: Float32Array): number {
  return crc32(bytesOf(values), crc32(bytesOf(indices), crc32(new TextEncoder().encode(JSON.stringify(path)))));
}

/**
 * How {@link mergeDeltas} resolves an entry two deltas both change:
 * `'error'` refuses (the default), `'last'` keeps the later delta's value.
 * @category Deltas
 */
export type Overlap = 'error' | 'last';

/**
 * One delta holding the changes of several made on the same base.
 * @example
 * ```ts
 * const both = mergeDeltas([digitsDelta, countDelta], { overlap: 'last' });
 * ```
 * @category Deltas
 */
export function mergeDeltas(deltas: readonly Delta[], options: { readonly overlap?: Overlap } = {}): Delta {
  const first = deltas[0];
  if (!first) throw new MaskError('mergeDeltas: needs at least one delta');
  for (const d of deltas) {
    if (d.specHash !== first.specHash || d.baseChecksum !== first.baseChecksum) throw new SpecError('mergeDeltas: the deltas were made on different bases');
  }
  const overlap = options.overlap ?? 'error';
  const merged = new Map<string, Map<number, number>>();
  for (const d of deltas) {
    for (const [p, l] of Object.entries(d.leaves)) {
      const m = merged.get(p) ?? new Map<number, number>();
      l.indices.forEach((i, k) => {
        if (m.has(i) && overlap === 'error') throw new MaskError(`mergeDeltas: both change entry ${i} of '${p}' (pass { overlap: 'last' } to let the later one win)`);
        m.set(i, l.values[k]!);
      });
      merged.set(p, m);
    }
  }
  const leaves = Object.fromEntries(
    [...merged].map(([p, m]) => {
      const indices = Int32Array.from([...m.keys()].sort((a, b) => a - b));
      return [p, { indices, values: Float32Array.from(indices, (i) => m.get(i)!) }];
    }),
  );
  return { specHash: first.specHash, baseChecksum: first.baseChecksum, leaves };
}

/** Format 2 adds a checksum per leaf; format 1 (still read) has none. */
const DELTA_FORMAT = 2;

/**
 * A delta as bytes: a JSON header (format, spec hash, base checksum, and
 * per leaf its path, count and a checksum binding the path to its entries)
 * and a payload of int32 indices then float32 values per leaf, under a
 * CRC-32. The delta is checked first (indices strictly increasing, values
 * finite, valid leaf paths): a malformed one is a `FormatError`, not a file.
 * @example
 * ```ts
 * writeFileSync('task.delta', saveDelta(delta));
 * ```
 * @category Deltas
 */
export function saveDelta(delta: Delta): Uint8Array {
  checkDelta('saveDelta', delta);
  const entries = Object.entries(delta.leaves);
  const total = entries.reduce((s, [, l]) => s + l.indices.length, 0);
  const payload = new Uint8Array(total * 8);
  let at = 0;
  for (const [, l] of entries) {
    payload.set(bytesOf(l.indices), at);
    at += l.indices.byteLength;
    payload.set(bytesOf(l.values), at);
    at += l.values.byteLength;
  }
  const leaves = entries.map(([path, l]) => ({ path, count: l.indices.length, crc32: leafDeltaCrc(path, l.indices, l.values) }));
  return packFile('delta', DELTA_FORMAT, { specHash: delta.specHash, baseChecksum: delta.baseChecksum, leaves }, payload);
}

/**
 * Reads a delta. Every header field is checked before anything is
 * allocated, and the entries after: a truncated, corrupted or malformed
 * file is a `FormatError` saying which field or entry. Format-1 files
 * (without per-leaf checksums) still load.
 * @example
 * ```ts
 * const delta = loadDelta(new Uint8Array(readFileSync('task.delta')));
 * ```
 * @category Deltas
 */
export function loadDelta(bytes: Uint8Array): Delta {
  const what = 'delta file';
  const { header: h, payload } = unpackFile(bytes, 'delta', [1, DELTA_FORMAT]);
  const specHash = field(what, h, 'specHash', isU32, 'an unsigned 32-bit hash');
  const baseChecksum = field(what, h, 'baseChecksum', isU32, 'an unsigned 32-bit checksum');
  const list = field(what, h, 'leaves', Array.isArray, 'a list of leaves');
  const withCrc = h.format >= 2;
  const seen = new Set<string>();
  let entries = 0;
  const described = list.map((x, k) => {
    if (!isRecord(x)) throw new FormatError(`${what}: malformed header: 'leaves[${k}]' should be an object, got ${describe(x)}`);
    const path = field(what, x, 'path', (v): v is string => typeof v === 'string', `a string (at 'leaves[${k}]')`);
    checkFilePath(what, path, `malformed header: 'leaves[${k}].path'`);
    if (seen.has(path)) throw new FormatError(`${what}: malformed header: leaf '${path}' is listed twice`);
    seen.add(path);
    const count = field(what, x, 'count', isCount, `a non-negative integer (at 'leaves[${k}]')`);
    const crc = withCrc ? field(what, x, 'crc32', isU32, `an unsigned 32-bit checksum (at 'leaves[${k}]')`) : undefined;
    entries += count;
    if (entries * 8 > h.payloadBytes) throw new FormatError(`${what}: malformed header: the leaves up to '${path}' need more than the payload's ${h.payloadBytes} bytes`);
    return { path, count, crc };
  });
  if (entries * 8 !== h.payloadBytes) throw new FormatError(`${what}: malformed header: the leaves hold ${entries} entries (${entries * 8} bytes) but the payload is ${h.payloadBytes} bytes`);
  // A copy into a fresh buffer: `payload` may be a view (a Node Buffer from the pool), and Buffer#slice would not copy.
  const copy = new Uint8Array(payload);
  let at = 0;
  const leaves = described.map(({ path, count, crc }) => {
    const d: LeafDelta = { indices: new Int32Array(copy.buffer, at, count), values: new Float32Array(copy.buffer, at + count * 4, count) };
    at += count * 8;
    if (crc !== undefined) {
      const got = leafDeltaCrc(path, d.indices, d.values);
      if (got !== crc) throw new FormatError(`${what}: corrupted: leaf '${path}' has checksum ${got.toString(16)}, the header records ${crc.toString(16)}`);
    }
    checkLeafDelta(what, path, d);
    return [path, d] as const;
  });
  return { specHash, baseChecksum, leaves: tree(leaves) };
}
