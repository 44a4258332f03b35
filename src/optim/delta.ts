/**
 * Sparse deltas: what fine-tuning changed, as (leaf, flat index, value)
 * triples on top of a shared base. A delta records a hash of the base's spec
 * and a checksum of its values, so it cannot be applied to another base.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { packFile, unpackFile, type FileHeader } from '../core/binary.js';
import { assertMatchesSpec, crc32, FormatError, MaskError, paths, SpecError, type ParamSpec, type Params, type Tree } from '../core/index.js';
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
  return crc32(new TextEncoder().encode(JSON.stringify(paths(spec).map((p) => [p, spec[p]!.shape, spec[p]!.role, spec[p]!.neuronAxis]))));
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
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
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
  assertMatchesSpec(spec, base, 'applyDelta: base');
  if (delta.specHash !== specHash(spec)) throw new SpecError('applyDelta: the delta was made for a model of another spec');
  if (delta.baseChecksum !== baseChecksum(spec, base)) throw new SpecError('applyDelta: the delta was made on other base weights (checksum differs)');
  for (const [p, d] of Object.entries(delta.leaves)) {
    const leaf = spec[p];
    if (!leaf) throw new SpecError(`applyDelta: the delta has leaf '${p}', which the spec lacks`);
    const n = leaf.shape.reduce((a, b) => a * b, 1);
    if (d.indices.length !== d.values.length) throw new FormatError(`applyDelta: leaf '${p}' has ${d.indices.length} indices but ${d.values.length} values`);
    for (const i of d.indices) if (!(i >= 0 && i < n)) throw new FormatError(`applyDelta: index ${i} is outside leaf '${p}' of ${n} entries`);
  }
  return Object.fromEntries(
    paths(spec).map((p) => {
      const d = delta.leaves[p];
      if (!d) return [p, base[p]!];
      const values = Float32Array.from(base[p]!.dataSync() as Float32Array);
      d.indices.forEach((i, k) => (values[i] = d.values[k]!));
      return [p, tf.tensor(values, [...spec[p]!.shape], 'float32')];
    }),
  );
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

interface DeltaHeader extends FileHeader {
  readonly specHash: number;
  readonly baseChecksum: number;
  readonly leaves: readonly { readonly path: string; readonly count: number }[];
}

/**
 * A delta as bytes: a JSON header (format, spec hash, base checksum, paths
 * and counts) and a payload of int32 indices then float32 values per leaf,
 * with a CRC-32.
 * @example
 * ```ts
 * writeFileSync('task.delta', saveDelta(delta));
 * ```
 * @category Deltas
 */
export function saveDelta(delta: Delta): Uint8Array {
  const entries = Object.entries(delta.leaves);
  const total = entries.reduce((s, [, l]) => s + l.indices.length, 0);
  const payload = new Uint8Array(total * 8);
  let at = 0;
  for (const [, l] of entries) {
    payload.set(new Uint8Array(l.indices.buffer, l.indices.byteOffset, l.indices.byteLength), at);
    at += l.indices.byteLength;
    payload.set(new Uint8Array(l.values.buffer, l.values.byteOffset, l.values.byteLength), at);
    at += l.values.byteLength;
  }
  return packFile('delta', 1, { specHash: delta.specHash, baseChecksum: delta.baseChecksum, leaves: entries.map(([path, l]) => ({ path, count: l.indices.length })) }, payload);
}

/**
 * Reads a delta; a truncated or corrupted file is a `FormatError` saying which.
 * @example
 * ```ts
 * const delta = loadDelta(new Uint8Array(readFileSync('task.delta')));
 * ```
 * @category Deltas
 */
export function loadDelta(bytes: Uint8Array): Delta {
  const { header, payload } = unpackFile<DeltaHeader>(bytes, 'delta', 1);
  const copy = payload.slice();
  let at = 0;
  const leaves: Record<string, LeafDelta> = {};
  for (const { path, count } of header.leaves) {
    if (at + count * 8 > copy.length) throw new FormatError(`delta file: corrupted: leaf '${path}' runs past the payload`);
    leaves[path] = { indices: new Int32Array(copy.buffer, at, count), values: new Float32Array(copy.buffer, at + count * 4, count) };
    at += count * 8;
  }
  return { specHash: header.specHash, baseChecksum: header.baseChecksum, leaves };
}
