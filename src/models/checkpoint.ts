/**
 * Checkpoints: a model's parameters in one binary file whose header records
 * the model, the full spec, and a checksum.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { packFile, unpackFile, type FileHeader } from '../core/binary.js';
import {
  assertMatchesSpec,
  leafSize,
  paths,
  SpecError,
  tree,
  type LeafSpec,
  type ParamSpec,
  type Params,
} from '../core/index.js';

const KIND = 'checkpoint';
const FORMAT = 1;

/**
 * What a checkpoint's header holds besides the container fields.
 * @category Checkpoints
 */
export interface CheckpointHeader extends FileHeader {
  /** The model's name and config, when saved from a model. */
  readonly model?: { readonly name: string; readonly config: Readonly<Record<string, unknown>> };
  /** The spec of the saved parameters, in payload order. */
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
 * Serialises parameters (checked against `spec`) to bytes: float32
 * little-endian, leaves in spec order.
 * @category Checkpoints
 */
export function saveCheckpoint(spec: ParamSpec, params: Params, options: SaveOptions = {}): Uint8Array {
  assertMatchesSpec(spec, params, 'saveCheckpoint');
  const total = Object.values(spec).reduce((s, l) => s + leafSize(l), 0);
  const values = new Float32Array(total);
  let at = 0;
  for (const p of paths(spec)) {
    const data = params[p]!.dataSync() as Float32Array;
    values.set(data, at);
    at += data.length;
  }
  const payload = new Uint8Array(values.buffer);
  // Float32Array is platform-endian; every platform tfjs runs on is little-endian.
  return packFile(KIND, FORMAT, { ...(options.model ? { model: options.model } : {}), spec, ...(options.meta ? { meta: options.meta } : {}) }, payload);
}

function describeLeaf(l: LeafSpec): string {
  return `${l.dtype} [${l.shape.join(', ')}] ${l.role}, neuron axis ${l.neuronAxis}`;
}

/**
 * Reads a checkpoint. With `spec` (say `model.spec`), a file whose spec
 * differs is a {@link SpecError} naming the first differing leaf; a
 * truncated or corrupted file is a `FormatError`.
 * @category Checkpoints
 */
export function loadCheckpoint(bytes: Uint8Array, spec?: ParamSpec): { params: Params; header: CheckpointHeader } {
  const { header, payload } = unpackFile<CheckpointHeader>(bytes, KIND, FORMAT);
  const fileSpec = header.spec;
  if (spec) {
    const missing = paths(spec).filter((p) => !(p in fileSpec));
    const extra = Object.keys(fileSpec).filter((p) => !(p in spec));
    if (missing.length || extra.length) {
      throw new SpecError(`loadCheckpoint: the file's spec differs from the model's: missing ${missing.join(', ') || 'none'}; extra ${extra.join(', ') || 'none'}`);
    }
    for (const p of paths(spec)) {
      const want = describeLeaf(spec[p]!);
      const got = describeLeaf(fileSpec[p]!);
      if (want !== got) throw new SpecError(`loadCheckpoint: leaf '${p}' is ${got} in the file but ${want} in the model`);
    }
  }
  const values = new Float32Array(payload.slice().buffer);
  let at = 0;
  const entries = Object.entries(fileSpec).map(([p, l]) => {
    const n = leafSize(l);
    const t = tf.tensor(values.subarray(at, at + n), [...l.shape], 'float32');
    at += n;
    return [p, t] as const;
  });
  if (at !== values.length) throw new SpecError(`loadCheckpoint: the spec covers ${at} values but the payload holds ${values.length}`);
  return { params: tree(entries), header };
}
