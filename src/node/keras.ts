/**
 * Node-only: TensorFlow.js models in a directory (`model.json` + weight
 * shards), for loading a saved Keras / tfjs model into sparsetune and for
 * saving tuned weights where stock `tf.loadLayersModel` (with a file
 * handler) or a web server picks them up. Kept out of the root entry,
 * which stays browser-safe.
 *
 * @module
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import * as tfl from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import type { Params, Shape } from '../core/index.js';
import { crc32 } from '../formats/binary.js';
import { saveLayersModel } from '../keras/export.js';
import { importLayersModel, type Imported, type ImportedModel, type ImportOptions } from '../keras/import.js';
import { writeFileAtomic } from './atomic.js';

/** The weights file {@link directoryHandler} writes, named by its CRC-32 (see `save`). */
const weightsName = (bytes: Uint8Array) => `weights.${crc32(bytes).toString(16).padStart(8, '0')}.bin`;
const OUR_WEIGHTS = /^weights\.[0-9a-f]{8}\.bin$/;

/**
 * A `tf.io` handler for a directory holding `model.json` and its weight
 * shards (the layout `tensorflowjs_converter` and `model.save('file://…')`
 * write): `load` reads every shard the manifest names, `save` writes
 * `model.json` and one `weights.<crc32>.bin`. A save never leaves a
 * `model.json` beside weights it does not describe: the weights go to a new
 * file named by their checksum, then `model.json` is replaced atomically,
 * then the weights file the old `model.json` named (if this handler wrote
 * it) is removed. A failure midway leaves the previous model loadable.
 * @example
 * ```ts
 * const keras = await tf.loadLayersModel(directoryHandler('models/mobilenet'));
 * await keras.save(directoryHandler('models/copy'));
 * ```
 * @category Node
 */
export function directoryHandler(dir: string): tf.io.IOHandler {
  const root = resolve(dir);
  return {
    async load() {
      const json = JSON.parse(await readFile(join(root, 'model.json'), 'utf8')) as tf.io.ModelJSON;
      return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const specs = manifest.flatMap((group) => group.weights);
        const shards = await Promise.all(manifest.flatMap((group) => group.paths.map((p) => readFile(join(root, p)))));
        // One buffer for all shards: a weight may straddle two of them.
        const data = new Uint8Array(shards.reduce((n, b) => n + b.byteLength, 0));
        let at = 0;
        for (const b of shards) {
          data.set(b, at);
          at += b.byteLength;
        }
        return [specs, data.buffer];
      });
    },
    async save(artifacts) {
      if (artifacts.modelTopology instanceof ArrayBuffer) throw new Error('directoryHandler: binary topologies (GraphModel protobufs) are not supported');
      const weights = artifacts.weightData === undefined ? new ArrayBuffer(0) : tf.io.CompositeArrayBuffer.join(artifacts.weightData);
      const bytes = new Uint8Array(weights);
      const name = weightsName(bytes);
      const json: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology as object,
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tfl.version.tfjs}`,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: [`./${name}`], weights: artifacts.weightSpecs ?? [] }],
        ...(artifacts.trainingConfig ? { trainingConfig: artifacts.trainingConfig } : {}),
        ...(artifacts.userDefinedMetadata ? { userDefinedMetadata: artifacts.userDefinedMetadata } : {}),
      };
      await mkdir(root, { recursive: true });
      const previous = await readFile(join(root, 'model.json'), 'utf8').then(
        (text) => ((JSON.parse(text) as tf.io.ModelJSON).weightsManifest ?? []).flatMap((g) => g.paths.map((p) => p.replace(/^\.\//, ''))),
        () => [] as string[],
      );
      writeFileAtomic(join(root, name), bytes);
      writeFileAtomic(join(root, 'model.json'), new TextEncoder().encode(JSON.stringify(json)));
      for (const old of previous) if (old !== name && OUR_WEIGHTS.test(old)) await rm(join(root, old), { force: true });
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
  };
}

/**
 * Loads a tfjs LayersModel from a directory (`model.json` + shards) with
 * stock `tf.loadLayersModel`.
 * @example
 * ```ts
 * const keras = await loadLayersModelFromDir('models/mobilenet');
 * ```
 * @category Node
 */
export async function loadLayersModelFromDir(dir: string): Promise<tfl.LayersModel> {
  return tfl.loadLayersModel(directoryHandler(dir));
}

/**
 * Loads a saved tfjs LayersModel from a directory and imports it (see
 * `importLayersModel`); the LayersModel itself is disposed.
 * @example
 * ```ts
 * const { model, params } = await importLayersModelFromDir('models/mobilenet');
 * ```
 * @category Node
 */
export async function importLayersModelFromDir<I extends Shape = Shape, F extends number = number, K extends number = number>(
  dir: string,
  options: ImportOptions<I> = {},
): Promise<Imported<I, F, K>> {
  const keras = await loadLayersModelFromDir(dir);
  try {
    return importLayersModel<I, F, K>(keras, options);
  } finally {
    keras.dispose();
  }
}

/**
 * Saves `params` of an imported model as a tfjs LayersModel in `dir`
 * (`model.json` + `weights.<crc32>.bin`), for stock `tf.loadLayersModel`.
 * @example
 * ```ts
 * await saveLayersModelToDir(model, tuned, 'models/tuned');
 * const served = await tf.loadLayersModel(directoryHandler('models/tuned'));
 * ```
 * @category Node
 */
export async function saveLayersModelToDir(model: ImportedModel, params: Params, dir: string): Promise<tf.io.SaveResult> {
  await mkdir(dirname(resolve(dir)), { recursive: true });
  return saveLayersModel(model, params, directoryHandler(dir));
}
