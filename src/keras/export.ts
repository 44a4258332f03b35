/**
 * Back to TensorFlow.js: tuned parameters written into a `LayersModel`, and
 * saved in tfjs's own format for stock `tf.loadLayersModel`.
 *
 * @module
 */
import * as tfl from '@tensorflow/tfjs';
import type * as tf from '@tensorflow/tfjs-core';
import type { Params } from '../core/index.js';
import { KerasImportError, weightName, type ImportedModel } from './import.js';


/**
 * Writes `params` (and the model's buffers) into `target`, a `LayersModel`
 * of the same topology as the one `model` was imported from (the original
 * itself, say), with `layer.setWeights`.
 * @example
 * ```ts
 * const { model, params } = importLayersModel(keras);
 * // … select and fine-tune `params` into `tuned` …
 * writeLayersModelWeights(keras, model, tuned);
 * keras.predict(x); // the tuned network
 * ```
 * @category Keras
 */
export function writeLayersModelWeights(target: tfl.LayersModel, model: ImportedModel, params: Params): void {
  const weights = model.kerasWeights(params);
  try {
    for (const [name, values] of weights) {
      const layer = target.getLayer(name);
      const list = layer.weights.map((w) => {
        const v = values.get(weightName(w));
        if (v === undefined) throw new KerasImportError(`writeLayersModelWeights: layer '${name}' of the target has a weight '${weightName(w)}' the imported model lacks`);
        const same = v.shape.length === w.shape.length && v.shape.every((d, i) => d === w.shape[i]);
        if (!same) throw new KerasImportError(`writeLayersModelWeights: layer '${name}', weight '${weightName(w)}': the target has [${w.shape.join(', ')}], the params [${v.shape.join(', ')}]`);
        return v;
      });
      layer.setWeights(list);
    }
  } finally {
    for (const values of weights.values()) for (const t of values.values()) t.dispose();
  }
}

/**
 * A new `LayersModel` of the imported graph (with the head resized to
 * `model.classes`, after {@link ImportedModel.withClasses}) holding `params`.
 * @example
 * ```ts
 * const keras = await toLayersModel(model, tuned);
 * keras.predict(x); // equals model.predict(tuned, x)
 * ```
 * @category Keras
 */
export async function toLayersModel(model: ImportedModel, params: Params): Promise<tfl.LayersModel> {
  const out = await tfl.models.modelFromJSON(model.topology as unknown as tfl.serialization.ConfigDict);
  writeLayersModelWeights(out, model, params);
  return out;
}

/**
 * Saves `params` as a tfjs LayersModel (topology + weights) through any
 * `tf.io` handler or URL scheme (`'localstorage://…'`, `'indexeddb://…'`,
 * `tf.io.browserHTTPRequest(…)`, `tf.io.withSaveHandler(…)`); a stock
 * `tf.loadLayersModel` serves it. In Node, `saveLayersModelToDir` from
 * `sparsetune/node` writes a directory.
 * @example
 * ```ts
 * await saveLayersModel(model, tuned, 'indexeddb://my-model');
 * const served = await tf.loadLayersModel('indexeddb://my-model');
 * ```
 * @category Keras
 */
export async function saveLayersModel(model: ImportedModel, params: Params, destination: string | tf.io.IOHandler): Promise<tf.io.SaveResult> {
  const keras = await toLayersModel(model, params);
  try {
    return await keras.save(destination);
  } finally {
    keras.dispose();
  }
}
