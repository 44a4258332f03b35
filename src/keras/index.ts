/**
 * Your own TensorFlow.js / Keras model: import a `LayersModel` as a
 * sparsetune model, and write tuned parameters back into one.
 * @module
 */
export { importLayersModel, KerasImportError, SUPPORTED_LAYERS, type Imported, type ImportedModel, type ImportOptions } from './import.js';
export { saveLayersModel, toLayersModel, writeLayersModelWeights } from './export.js';
