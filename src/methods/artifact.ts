/**
 * The artifact of a fine-tuning run: one tuned file holding the method's
 * config, the sparse delta on the base and the LoRA adapters, saved from
 * what {@link prepare} set up and reloaded onto a base in one call.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { assertMatchesSpec, ConfigError, filterTree, FormatError, MaskError, paths, type Params, type Shape } from '../core/index.js';
import type { Model } from '../models/index.js';
import { maskOf } from '../selection/index.js';
import { mergeLora, adaptersOf, restoreLora, type LoraConfig } from '../adapters/index.js';
import { applyDelta, extractDelta, loadTunedFile, saveTunedFile, type TunedFile } from '../formats/index.js';
import { resolveMethod, type ResolvedMethodConfig } from './config.js';
import type { Prepared } from './prepare.js';

/**
 * Options of {@link saveTuned}.
 * @category Methods
 */
export interface SaveTunedOptions {
  /**
   * LoRA's adapters: `'separate'` (the default) stores them beside the
   * delta, small, and reloads a LoRA model; `'merged'` folds them into their
   * kernels first, so the delta holds those kernels whole (larger) and
   * reloads onto the plain base model with no adapters. The file says which.
   */
  readonly lora?: 'separate' | 'merged';
  /** Anything to keep beside it (task, accuracy, …): plain JSON. */
  readonly meta?: Readonly<Record<string, unknown>>;
}

/**
 * Saves a run as one tuned file: the method's config and seed, the delta of
 * the tuned values on the base's own leaves, and LoRA's adapters (see
 * {@link SaveTunedOptions}). `tuned` are the parameters `fineTune` returned
 * for `prepared`. Since the delta keeps only what the mask selects, tuned
 * values that differ from the base outside the mask would be lost: that is a
 * `MaskError` rather than a file that reloads to something else.
 * @example
 * ```ts
 * const tuned = prepare({ method: 'gps', k: 1 }, { model, params, data: task.train });
 * const result = fineTune({ ...tuned, train: task.train, epochs: 8 });
 * writeFileSync('digits.tuned', saveTuned(tuned, result.params, { meta: { task: 'digits' } }));
 * ```
 * @category Methods
 */
export function saveTuned<I extends Shape, F extends number, K extends number>(prepared: Prepared<I, F, K>, tuned: Params, options: SaveTunedOptions = {}): Uint8Array {
  const mode = options.lora ?? 'separate';
  if (mode !== 'separate' && mode !== 'merged') throw new ConfigError(`saveTuned: lora must be 'separate' or 'merged', got ${String(mode)}`);
  assertMatchesSpec(prepared.model.spec, tuned, 'saveTuned: tuned');
  const { model, params: base } = prepared.base;
  const spec = model.spec;
  const lora = prepared.lora;
  const merged = lora && mode === 'merged';
  // The base's own leaves as trained; merging folds A·B·α/r into every entry of the adapted kernels.
  const tunedBase = merged ? mergeLora(lora, tuned) : filterTree(tuned, (_, p) => Object.hasOwn(spec, p));
  try {
    const mask = maskOf(spec, (_, p) => (merged && lora.kernels.includes(p) ? true : prepared.mask.bits[p]!));
    checkUnchangedOutside(spec, base, tunedBase, mask);
    const delta = extractDelta(spec, base, tunedBase, mask);
    const file: TunedFile = {
      method: prepared.config,
      seed: prepared.seed,
      delta,
      ...(lora ? { lora: { kernels: lora.kernels, rank: lora.rank, alpha: lora.alpha, merged: !!merged } } : {}),
      ...(lora && !merged ? { adapters: { spec: filterTree(prepared.model.spec, (leaf) => leaf.role === 'adapter'), params: adaptersOf(lora, tuned) } } : {}),
      ...(options.meta ? { meta: options.meta } : {}),
    };
    return saveTunedFile(file);
  } finally {
    // mergeLora's kernels are new tensors; every other leaf is the caller's.
    if (merged) for (const k of lora.kernels) tunedBase[k]!.dispose();
  }
}

/** A MaskError naming the first entry outside `mask` where `tuned` differs from `base` (bit for bit). */
function checkUnchangedOutside(spec: Model<Shape, number, number>['spec'], base: Params, tuned: Params, mask: { readonly bits: Readonly<Record<string, Uint8Array>> }): void {
  for (const p of paths(spec)) {
    if (tuned[p] === base[p]) continue; // the same tensor: nothing changed
    const bits = mask.bits[p]!;
    if (bits.every((b) => b === 1)) continue;
    const a = new Uint32Array(Float32Array.from(base[p]!.dataSync() as Float32Array).buffer);
    const b = new Uint32Array(Float32Array.from(tuned[p]!.dataSync() as Float32Array).buffer);
    for (let i = 0; i < a.length; i++) {
      if (!bits[i] && a[i] !== b[i]) throw new MaskError(`saveTuned: '${p}' entry ${i} differs from the base but the mask does not select it, so the file would lose it; save the parameters fineTune returned for this prepared method`);
    }
  }
}

/**
 * A tuned file reloaded onto its base.
 * @category Methods
 */
export interface LoadedTuned<I extends Shape, F extends number, K extends number> {
  /** The method's config, as saved (every default filled in). */
  readonly config: ResolvedMethodConfig;
  /** The run's seed. */
  readonly seed: number;
  /** The model to run: the base model, or it with LoRA adapters when they were saved separately. */
  readonly model: Model<I, F, K>;
  /** The tuned parameters, bit-identical to those saved (merged ones, when saved merged). */
  readonly params: Params;
  /** LoRA's config, when the method added adapters (also when they were merged). */
  readonly lora?: LoraConfig;
  /** Whether the adapters were merged into the kernels before saving. */
  readonly merged: boolean;
  /** What was saved beside it. */
  readonly meta?: Readonly<Record<string, unknown>>;
}

/**
 * Reloads a tuned file onto a base in one call: checks the file (a
 * `FormatError` if truncated, corrupted or malformed, its config
 * included), applies its delta to `params` (a `SpecError` for another model
 * or other base weights) and, when its adapters were saved separately,
 * wraps `model` with them again. Nothing is left behind on failure; on
 * success the returned parameters are new tensors where the delta or the
 * adapters are, the base's own elsewhere.
 * @example
 * ```ts
 * const { model: tunedModel, params } = loadTuned(bytes, { model, params: base });
 * evaluate(tunedModel, params, task.test);
 * ```
 * @category Methods
 */
export function loadTuned<I extends Shape, F extends number, K extends number>(bytes: Uint8Array, base: { readonly model: Model<I, F, K>; readonly params: Params }): LoadedTuned<I, F, K> {
  const file = loadTunedFile(bytes);
  const made: tf.Tensor[] = file.adapters ? Object.values(file.adapters.params) : [];
  try {
    let config: ResolvedMethodConfig;
    try {
      config = resolveMethod(file.method);
    } catch (e) {
      if (e instanceof ConfigError) throw new FormatError(`tuned file: malformed header: 'method': ${e.message}`);
      throw e;
    }
    const rank = config.method === 'lora' || config.method === 'spt-lora' ? config.rank : undefined;
    const adds = rank !== undefined;
    if (adds !== (file.lora !== undefined)) throw new FormatError(`tuned file: malformed header: method '${config.method}' ${adds ? 'adds' : 'adds no'} LoRA adapters, but the file ${file.lora ? 'records' : 'records no'} LoRA config`);
    if (file.lora && file.lora.rank !== rank) throw new FormatError(`tuned file: malformed header: LoRA rank ${file.lora.rank} differs from the method's rank ${rank}`);
    const params = applyDelta(base.model.spec, base.params, file.delta);
    made.push(...paths(params).filter((p) => params[p] !== base.params[p]).map((p) => params[p]!));
    const common = { config, seed: file.seed, merged: file.lora?.merged ?? false, ...(file.meta ? { meta: file.meta } : {}) };
    if (!file.lora) return { ...common, model: base.model, params };
    const lora: LoraConfig = { kernels: file.lora.kernels, rank: file.lora.rank, alpha: file.lora.alpha };
    if (file.lora.merged) return { ...common, model: base.model, params, lora };
    const restored = restoreLora(base.model, params, lora, file.adapters!.params);
    return { ...common, model: restored.model, params: restored.params, lora: restored.config };
  } catch (e) {
    tf.dispose(made);
    throw e;
  }
}
