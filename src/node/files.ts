/**
 * Checkpoints, deltas and tuned files on disk: the byte-level functions of
 * the root entry (`saveCheckpoint`/`loadCheckpoint`, `saveDelta`/`loadDelta`,
 * `saveTuned`/`loadTuned`) with a file
 * read or written around them. Writes are atomic (`writeFileAtomic`): a
 * failed write leaves the old file as it was.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import type { ParamSpec, Params, Shape } from '../core/index.js';
import type { Model } from '../models/index.js';
import { loadTuned, saveTuned, type LoadedTuned, type Prepared, type SaveTunedOptions } from '../methods/index.js';
import { loadCheckpoint, saveCheckpoint, type CheckpointHeader, type SaveOptions } from '../formats/checkpoint.js';
import { loadDelta, saveDelta, type Delta } from '../formats/delta.js';
import { writeFileAtomic } from './atomic.js';

/**
 * {@link saveCheckpoint} to a file, atomically: if the write fails (a full
 * disk, a size limit) the file keeps its old contents and no temporary file
 * is left.
 * @example
 * ```ts
 * import { writeCheckpoint } from 'sparsetune/node';
 * writeCheckpoint('tuned.ckpt', model.spec, tuned, { meta: { task: 'digits' } });
 * ```
 * @category Files
 */
export function writeCheckpoint(file: string, spec: ParamSpec, params: Params, options: SaveOptions = {}): void {
  writeFileAtomic(file, saveCheckpoint(spec, params, options));
}

/**
 * {@link loadCheckpoint} from a file.
 * @example
 * ```ts
 * import { readCheckpoint } from 'sparsetune/node';
 * const { params } = readCheckpoint('tuned.ckpt', model.spec);
 * ```
 * @category Files
 */
export function readCheckpoint(file: string, spec?: ParamSpec): { params: Params; header: CheckpointHeader } {
  return loadCheckpoint(new Uint8Array(readFileSync(file)), spec);
}

/**
 * {@link saveDelta} to a file, atomically, as {@link writeCheckpoint}.
 * @example
 * ```ts
 * import { writeDelta } from 'sparsetune/node';
 * writeDelta('digits.delta', extractDelta(model.spec, pretrained, tuned, mask));
 * ```
 * @category Files
 */
export function writeDelta(file: string, delta: Delta): void {
  writeFileAtomic(file, saveDelta(delta));
}

/**
 * {@link loadDelta} from a file.
 * @example
 * ```ts
 * import { readDelta } from 'sparsetune/node';
 * const taskParams = applyDelta(model.spec, pretrained, readDelta('digits.delta'));
 * ```
 * @category Files
 */
export function readDelta(file: string): Delta {
  return loadDelta(new Uint8Array(readFileSync(file)));
}

/**
 * {@link saveTuned} to a file, atomically, as {@link writeCheckpoint}: the
 * method's config, the delta and LoRA's adapters in one file.
 * @example
 * ```ts
 * import { writeTuned } from 'sparsetune/node';
 * writeTuned('digits.tuned', tuned, result.params, { meta: { task: 'digits' } });
 * ```
 * @category Files
 */
export function writeTuned<I extends Shape, F extends number, K extends number>(file: string, prepared: Prepared<I, F, K>, tuned: Params, options: SaveTunedOptions = {}): void {
  writeFileAtomic(file, saveTuned(prepared, tuned, options));
}

/**
 * {@link loadTuned} from a file: the tuned model and parameters on `base`.
 * @example
 * ```ts
 * import { readTuned } from 'sparsetune/node';
 * const { model: tunedModel, params } = readTuned('digits.tuned', { model, params: base });
 * ```
 * @category Files
 */
export function readTuned<I extends Shape, F extends number, K extends number>(file: string, base: { readonly model: Model<I, F, K>; readonly params: Params }): LoadedTuned<I, F, K> {
  return loadTuned(new Uint8Array(readFileSync(file)), base);
}
