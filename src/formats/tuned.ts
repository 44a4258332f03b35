/**
 * Tuned files: everything one fine-tuning run produced on a shared base, in
 * one file — the method's config, the sparse delta on the base, and the LoRA
 * adapters (or, merged, nothing beside the delta). The delta and the
 * adapters are stored as a delta file and a checkpoint file inside this
 * one's payload, so each keeps its own checks (per-leaf checksums, index
 * order, shapes), and the outer container's CRC-32 covers them both.
 *
 * Header (kind `'tuned'`, format 1), besides the container fields:
 * `method` (the config that made it: an object with a string `method`),
 * `seed`, `specHash` (of the base's spec; must equal the delta's),
 * `lora` (`null`, or `{ kernels, rank, alpha, merged }`), `parts`
 * (`{ delta, adapters }`: byte lengths, in payload order; `adapters` is 0
 * when there are none) and optionally `meta` (free-form).
 *
 * @module
 */
import { field, isCount, isRecord, isU32, packFile, unpackFile, describe, checkFilePath } from './binary.js';
import { loadDelta, saveDelta, type Delta } from './delta.js';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { ConfigError, FormatError, type ParamSpec, type Params } from '../core/index.js';
import * as tf from '@tensorflow/tfjs-core';

const KIND = 'tuned';
const FORMAT = 1;

/**
 * The LoRA part of a tuned file: which kernels carried adapters, with
 * rank and α, and whether the adapters were folded into the kernels
 * (`merged`: the delta holds those kernels whole, and no adapters are stored).
 * @category Tuned files
 */
export interface TunedLora {
  /** The adapted kernels. */
  readonly kernels: readonly string[];
  /** Rank r. */
  readonly rank: number;
  /** α (the product is scaled by α/r). */
  readonly alpha: number;
  /** True when the adapters were merged into the delta's kernels before saving. */
  readonly merged: boolean;
}

/**
 * The contents of a tuned file.
 * @category Tuned files
 */
export interface TunedFile {
  /** The method's config (plain JSON: an object whose `method` names the method). */
  readonly method: Readonly<Record<string, unknown>> & { readonly method: string };
  /** The seed of the run (selection, adapters' initialisation, shuffling). */
  readonly seed: number;
  /** What changed on the base's own leaves. */
  readonly delta: Delta;
  /** LoRA's part, if the method added adapters. */
  readonly lora?: TunedLora;
  /** The adapters' spec and values, when `lora` is present and not merged. */
  readonly adapters?: { readonly spec: ParamSpec; readonly params: Params };
  /** Anything the caller attached (accuracy, task, …). */
  readonly meta?: Readonly<Record<string, unknown>>;
}

const isMethod = (v: unknown): v is TunedFile['method'] => isRecord(v) && typeof v['method'] === 'string';
const isRank = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1;
const isPositive = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/**
 * A tuned file as bytes: the config, the delta and the adapters in the
 * checksummed container. The parts are checked as their own formats check
 * them (a malformed delta is a `FormatError`); adapters must come exactly
 * when `lora` is present and not merged (else a `ConfigError`).
 * @example
 * ```ts
 * const bytes = saveTunedFile({ method: { method: 'gps', k: 1 }, seed: 0, delta });
 * ```
 * @category Tuned files
 */
export function saveTunedFile(file: TunedFile): Uint8Array {
  if (!isMethod(file.method)) throw new ConfigError(`saveTunedFile: method should be an object with a string 'method', got ${describe(file.method)}`);
  if (!isCount(file.seed)) throw new ConfigError(`saveTunedFile: seed should be a non-negative integer, got ${describe(file.seed)}`);
  const wantAdapters = file.lora !== undefined && !file.lora.merged;
  if (wantAdapters !== (file.adapters !== undefined)) {
    throw new ConfigError(`saveTunedFile: adapters must be given exactly when lora is present and not merged (lora ${file.lora ? (file.lora.merged ? 'merged' : 'separate') : 'absent'}, adapters ${file.adapters ? 'given' : 'absent'})`);
  }
  const delta = saveDelta(file.delta);
  const adapters = file.adapters ? saveCheckpoint(file.adapters.spec, file.adapters.params) : new Uint8Array(0);
  const payload = new Uint8Array(delta.length + adapters.length);
  payload.set(delta, 0);
  payload.set(adapters, delta.length);
  const lora = file.lora ? { kernels: [...file.lora.kernels], rank: file.lora.rank, alpha: file.lora.alpha, merged: file.lora.merged } : null;
  // JSON round trip of the config: what is written is exactly what a reader gets back.
  const method = JSON.parse(JSON.stringify(file.method)) as unknown;
  if (!isMethod(method)) throw new ConfigError('saveTunedFile: method does not survive JSON (it must be plain data)');
  return packFile(KIND, FORMAT, { method, seed: file.seed, specHash: file.delta.specHash, lora, parts: { delta: delta.length, adapters: adapters.length }, ...(file.meta ? { meta: file.meta } : {}) }, payload);
}

/**
 * Reads a tuned file. Every header field is checked before anything is
 * allocated, then the delta and adapter parts with their own formats'
 * checks; a truncated, corrupted or malformed file is a `FormatError`
 * naming what is wrong, and leaves no tensor behind. Checking the method
 * config's settings is the caller's (`loadTuned` does it).
 * @example
 * ```ts
 * const { method, delta, adapters } = loadTunedFile(bytes);
 * ```
 * @category Tuned files
 */
export function loadTunedFile(bytes: Uint8Array): TunedFile {
  const what = `${KIND} file`;
  const { header: h, payload } = unpackFile(bytes, KIND, [FORMAT]);
  const method = field(what, h, 'method', isMethod, "an object with a string 'method'");
  const seed = field(what, h, 'seed', isCount, 'a non-negative integer');
  const specHash = field(what, h, 'specHash', isU32, 'an unsigned 32-bit hash');
  const rawLora = field(what, h, 'lora', (v): v is Record<string, unknown> | null => v === null || isRecord(v), 'null or an object');
  let lora: TunedLora | undefined;
  if (rawLora !== null) {
    const kernels = field(what, rawLora, 'kernels', isStrings, "a list of kernel paths (at 'lora')");
    kernels.forEach((k, i) => checkFilePath(what, k, `malformed header: 'lora.kernels[${i}]'`));
    if (new Set(kernels).size !== kernels.length) throw new FormatError(`${what}: malformed header: 'lora.kernels' lists a kernel twice`);
    const rank = field(what, rawLora, 'rank', isRank, "a positive integer (at 'lora')");
    const alpha = field(what, rawLora, 'alpha', isPositive, "a finite number > 0 (at 'lora')");
    const merged = field(what, rawLora, 'merged', (v): v is boolean => typeof v === 'boolean', "true or false (at 'lora')");
    lora = { kernels, rank, alpha, merged };
  }
  const parts = field(what, h, 'parts', isRecord, 'an object of part lengths');
  const deltaBytes = field(what, parts, 'delta', isCount, "a byte count (at 'parts')");
  const adapterBytes = field(what, parts, 'adapters', isCount, "a byte count (at 'parts')");
  if (deltaBytes + adapterBytes !== h.payloadBytes) throw new FormatError(`${what}: malformed header: the parts hold ${deltaBytes} + ${adapterBytes} bytes but the payload is ${h.payloadBytes}`);
  const wantAdapters = lora !== undefined && !lora.merged;
  if (wantAdapters !== adapterBytes > 0) throw new FormatError(`${what}: malformed header: ${wantAdapters ? 'separate LoRA adapters are recorded but no adapter part is present' : 'an adapter part is present but no separate LoRA adapters are recorded'}`);
  const meta = Object.hasOwn(h, 'meta') ? field(what, h, 'meta', isRecord, 'an object') : undefined;
  const inner = (e: unknown, part: string): never => {
    if (e instanceof FormatError) throw new FormatError(`${what}: ${part} part: ${e.message}`);
    throw e;
  };
  let delta: Delta;
  try {
    delta = loadDelta(payload.subarray(0, deltaBytes));
  } catch (e) {
    return inner(e, 'delta');
  }
  if (delta.specHash !== specHash) throw new FormatError(`${what}: corrupted: the header's spec hash ${specHash.toString(16)} differs from its delta's ${delta.specHash.toString(16)}`);
  let adapters: TunedFile['adapters'];
  if (adapterBytes > 0) {
    let loaded: ReturnType<typeof loadCheckpoint>;
    try {
      loaded = loadCheckpoint(payload.subarray(deltaBytes));
    } catch (e) {
      return inner(e, 'adapters');
    }
    const wanted = new Set(lora!.kernels.flatMap((k) => [`${k}.lora_a`, `${k}.lora_b`]));
    const got = Object.keys(loaded.header.spec);
    if (got.length !== wanted.size || got.some((p) => !wanted.has(p) || loaded.header.spec[p]!.role !== 'adapter')) {
      tf.dispose(Object.values(loaded.params));
      throw new FormatError(`${what}: malformed: the adapter part holds ${got.join(', ') || 'nothing'}, not the adapters of ${lora!.kernels.join(', ')}`);
    }
    adapters = { spec: loaded.header.spec, params: loaded.params };
  }
  return { method, seed, delta, ...(lora ? { lora } : {}), ...(adapters ? { adapters } : {}), ...(meta ? { meta } : {}) };
}
