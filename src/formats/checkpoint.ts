/**
 * Checkpoints: a model's parameters in one binary file whose header records
 * the model, the full spec, and a checksum; and the shipped backbones read
 * from their checkpoints' bytes.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { requireBackend } from '../core/backend.js';
import { bytesOf, checkFilePath, crc32, describe, field, isCount, isRecord, isU32, packFile, unpackFile, type FileHeader } from './binary.js';
import { BACKBONES, type BackboneName } from '../models/backbones.js';
import { assertMatchesSpec, ConfigError, FormatError, leafSize, paths, SpecError, tree, type LeafSpec, type ParamSpec, type Params, type Role } from '../core/index.js';

const KIND = 'checkpoint';
/** Format 2 lists the leaves as an ordered array with a checksum each; format 1 (still read) keyed them by path. */
const FORMAT = 2;
const FORMATS = [1, 2] as const;
// A record over Role, so adding a role without listing it here is a type error.
const ROLES: Readonly<Record<Role, true>> = { kernel: true, bias: true, norm: true, embedding: true, token: true, head: true, adapter: true };

/**
 * What a checkpoint's header holds besides the container fields.
 * @category Checkpoints
 */
export interface CheckpointHeader extends FileHeader {
  /** The model's name and config, when saved from a model. */
  readonly model?: { readonly name: string; readonly config: Readonly<Record<string, unknown>> };
  /** The spec of the saved parameters. */
  readonly spec: Readonly<Record<string, LeafSpec>>;
  /** Anything the caller attached (how it was trained, its accuracy, …). */
  readonly meta?: Readonly<Record<string, unknown>>;
}

/**
 * What to save beside the parameters.
 * @category Checkpoints
 */
export interface SaveOptions {
  /** Name and config of the model, so a reader knows what to build. */
  readonly model?: { readonly name: string; readonly config: Readonly<Record<string, unknown>> };
  /** Free-form metadata. */
  readonly meta?: Readonly<Record<string, unknown>>;
}

/**
 * The checksum of one leaf: CRC-32 of its description, then of its bytes.
 * It binds a leaf's name and shape to its values, so a header whose leaves
 * were renamed, reordered or reshaped cannot load one leaf's values into another.
 */
function leafCrc(path: string, leaf: LeafSpec, bytes: Uint8Array): number {
  return crc32(bytes, crc32(new TextEncoder().encode(JSON.stringify([path, leaf.shape, leaf.role, leaf.neuronAxis]))));
}

/**
 * Serialises parameters (checked against `spec`) to bytes: float32
 * little-endian, leaves in spec order, the header listing them in that
 * order with a checksum each.
 * @example
 * ```ts
 * const bytes = saveCheckpoint(model.spec, params, { model: { name: model.name, config: model.config }, meta: { epochs: 10 } });
 * const { params: back } = loadCheckpoint(bytes, model.spec);
 * ```
 * @category Checkpoints
 */
export function saveCheckpoint(spec: ParamSpec, params: Params, options: SaveOptions = {}): Uint8Array {
  assertMatchesSpec(spec, params, 'saveCheckpoint');
  const total = Object.values(spec).reduce((s, l) => s + leafSize(l), 0);
  const values = new Float32Array(total);
  const leaves: Record<string, unknown>[] = [];
  let at = 0;
  for (const p of paths(spec)) {
    const leaf = spec[p]!;
    const data = params[p]!.dataSync() as Float32Array;
    values.set(data, at);
    leaves.push({ path: p, shape: leaf.shape, dtype: leaf.dtype, role: leaf.role, neuronAxis: leaf.neuronAxis, crc32: leafCrc(p, leaf, bytesOf(values.subarray(at, at + data.length))) });
    at += data.length;
  }
  const payload = new Uint8Array(values.buffer);
  // Float32Array is platform-endian; every platform tfjs runs on is little-endian.
  return packFile(KIND, FORMAT, { ...(options.model ? { model: options.model } : {}), leaves, ...(options.meta ? { meta: options.meta } : {}) }, payload);
}

function describeLeaf(l: LeafSpec): string {
  return `${l.dtype} [${l.shape.join(', ')}] ${l.role}, neuron axis ${l.neuronAxis}`;
}

interface FileLeaf {
  readonly path: string;
  readonly leaf: LeafSpec;
  readonly crc32?: number;
}

/** One leaf description of a header, checked field by field; `where` names it in errors. */
function readLeaf(what: string, where: string, path: unknown, x: unknown, withCrc: boolean): FileLeaf {
  if (!isRecord(x)) throw new FormatError(`${what}: malformed header: '${where}' should be a leaf description, got ${describe(x)}`);
  if (typeof path !== 'string') throw new FormatError(`${what}: malformed header: '${where}.path' should be a string, got ${describe(path)}`);
  checkFilePath(what, path, `malformed header: '${where}.path'`);
  const shape = field(what, x, 'shape', (v): v is number[] => Array.isArray(v) && v.every(isCount), `a list of non-negative integers (at '${where}')`);
  field(what, x, 'dtype', (v): v is 'float32' => v === 'float32', `'float32' (at '${where}')`);
  const role = field(what, x, 'role', (v): v is Role => typeof v === 'string' && Object.hasOwn(ROLES, v), `one of ${Object.keys(ROLES).join(', ')} (at '${where}')`);
  const rank = Math.max(shape.length, 1);
  const neuronAxis = field(what, x, 'neuronAxis', (v): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) < rank, `an axis of the leaf's shape (at '${where}')`);
  const crc = withCrc ? field(what, x, 'crc32', isU32, `an unsigned 32-bit checksum (at '${where}')`) : undefined;
  return { path, leaf: { shape, dtype: 'float32', role, neuronAxis }, ...(crc === undefined ? {} : { crc32: crc }) };
}

/** The leaves a header lists, in payload order, all checked before anything is allocated. */
function readLeaves(what: string, h: Record<string, unknown>, format: number, payloadBytes: number): FileLeaf[] {
  let leaves: FileLeaf[];
  if (format === 1) {
    // Format 1 keyed the spec by path; its writer iterated the same object
    // JSON.stringify did, so key order is payload order. Nothing here can
    // catch a re-ordered format-1 header: re-save such files as format 2.
    const spec = field(what, h, 'spec', isRecord, 'an object of leaf descriptions');
    leaves = Object.keys(spec).map((p) => readLeaf(what, `spec.${p}`, p, spec[p], false));
  } else {
    const list = field(what, h, 'leaves', Array.isArray, 'a list of leaf descriptions');
    leaves = list.map((x, i) => readLeaf(what, `leaves[${i}]`, isRecord(x) ? x['path'] : undefined, x, true));
  }
  const seen = new Set<string>();
  let values = 0;
  const available = payloadBytes / 4;
  for (const { path, leaf } of leaves) {
    if (seen.has(path)) throw new FormatError(`${what}: malformed header: leaf '${path}' is listed twice`);
    seen.add(path);
    // Multiplied step by step against what the payload holds, so no product can overflow.
    let n = 1;
    for (const d of leaf.shape) {
      n *= d;
      if (n > available) break;
    }
    values += n;
    if (values > available) throw new FormatError(`${what}: malformed header: the leaves up to '${path}' need more than the payload's ${available} values`);
  }
  if (values * 4 !== payloadBytes) throw new FormatError(`${what}: malformed header: the leaves hold ${values} float32 values (${values * 4} bytes) but the payload is ${payloadBytes} bytes`);
  return leaves;
}

/**
 * Reads a checkpoint. Every header field is checked before anything is
 * allocated (a `FormatError` naming the field); each leaf's values are
 * checked against the checksum that binds them to its name and shape (format
 * 2), and leaves are matched to `spec` by name. With `spec` (say
 * `model.spec`), a file whose spec differs is a {@link SpecError} naming the
 * first differing leaf. Format-1 files (written before format 2) still load.
 * @example
 * ```ts
 * const { params, header } = loadCheckpoint(new Uint8Array(readFileSync('model.ckpt')), model.spec);
 * console.log(header.meta);
 * ```
 * @category Checkpoints
 */
export function loadCheckpoint(bytes: Uint8Array, spec?: ParamSpec): { params: Params; header: CheckpointHeader } {
  requireBackend('loadCheckpoint');
  const what = `${KIND} file`;
  const { header: h, payload } = unpackFile(bytes, KIND, FORMATS);
  const model = Object.hasOwn(h, 'model')
    ? field(what, h, 'model', (v): v is { name: string; config: Record<string, unknown> } => isRecord(v) && typeof v['name'] === 'string' && isRecord(v['config']), "an object with a string 'name' and an object 'config'")
    : undefined;
  const meta = Object.hasOwn(h, 'meta') ? field(what, h, 'meta', isRecord, 'an object') : undefined;
  const leaves = readLeaves(what, h, h.format, h.payloadBytes);
  const byName = new Map(leaves.map((l) => [l.path, l.leaf]));
  if (spec) {
    const missing = paths(spec).filter((p) => !byName.has(p));
    const extra = leaves.map((l) => l.path).filter((p) => !Object.hasOwn(spec, p));
    if (missing.length || extra.length) {
      throw new SpecError(`loadCheckpoint: the file's spec differs from the model's: missing ${missing.join(', ') || 'none'}; extra ${extra.join(', ') || 'none'}`);
    }
    for (const p of paths(spec)) {
      const want = describeLeaf(spec[p]!);
      const got = describeLeaf(byName.get(p)!);
      if (want !== got) throw new SpecError(`loadCheckpoint: leaf '${p}' is ${got} in the file but ${want} in the model`);
    }
  }
  // A copy into a fresh buffer: `payload` may be a view (a Node Buffer from the pool, a subarray), and Buffer#slice would not copy.
  const values = new Float32Array(new Uint8Array(payload).buffer);
  const slices: (readonly [string, LeafSpec, Float32Array])[] = [];
  let at = 0;
  for (const { path, leaf, crc32: want } of leaves) {
    const n = leafSize(leaf);
    const v = values.subarray(at, at + n);
    at += n;
    if (want !== undefined) {
      const got = leafCrc(path, leaf, bytesOf(v));
      if (got !== want) throw new FormatError(`${what}: corrupted: leaf '${path}' has checksum ${got.toString(16)}, the header records ${want.toString(16)}`);
    }
    slices.push([path, leaf, v]);
  }
  // Tensors only once everything is checked; should one still fail, none is left behind.
  const made: tf.Tensor[] = [];
  try {
    for (const [, leaf, v] of slices) made.push(tf.tensor(v, [...leaf.shape], 'float32'));
  } catch (e) {
    tf.dispose(made);
    throw e;
  }
  const fileSpec = tree(leaves.map((l) => [l.path, Object.freeze({ ...l.leaf, shape: Object.freeze([...l.leaf.shape]) })] as const));
  const header: CheckpointHeader = {
    kind: KIND,
    format: h.format,
    payloadBytes: h.payloadBytes,
    crc32: h.crc32,
    ...(model ? { model } : {}),
    spec: fileSpec,
    ...(meta ? { meta } : {}),
  };
  return { params: tree(slices.map(([p], i) => [p, made[i]!] as const)), header };
}

/**
 * A loaded backbone: the model, its pre-trained parameters, and the
 * checkpoint's header (how it was trained, its accuracy).
 * @category Models
 */
export interface Backbone<N extends BackboneName> {
  /** The model with its 10-way Fashion-MNIST head. */
  readonly model: ReturnType<(typeof BACKBONES)[N]>;
  /** The pre-trained parameters. */
  readonly params: Params;
  /** The checkpoint's header. */
  readonly header: CheckpointHeader;
}

/**
 * A standard backbone with its pre-trained parameters read from the bytes of
 * its checkpoint (`checkpoints/<name>.ckpt` in the package), for code that
 * cannot read files, such as a page in a browser. The checkpoint is checked
 * against the backbone's spec.
 * @example
 * ```ts
 * const bytes = new Uint8Array(await (await fetch('vit.ckpt')).arrayBuffer());
 * const { model, params } = backboneFromBytes('vit', bytes);
 * ```
 * @category Models
 */
export function backboneFromBytes<N extends BackboneName>(name: N, bytes: Uint8Array): Backbone<N> {
  const factory = BACKBONES[name] as (() => ReturnType<(typeof BACKBONES)[N]>) | undefined;
  if (factory === undefined) throw new ConfigError(`unknown backbone '${String(name)}'; known: ${Object.keys(BACKBONES).join(', ')}`);
  const model = factory();
  const { params, header } = loadCheckpoint(bytes, model.spec);
  return { model, params, header };
}
