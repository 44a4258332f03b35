/**
 * sparsetune's Node-only helpers (file system access): load and save
 * TensorFlow.js models in a directory. Import from `sparsetune/node`; the
 * root entry stays browser-safe.
 * @module
 */
export { directoryHandler, importLayersModelFromDir, loadLayersModelFromDir, saveLayersModelToDir } from './keras.js';
