/**
 * Methods: one call from a method config (plain data such as
 * `{ method: 'gps', k: 1 }`) and a model to what trains ({@link prepare}),
 * the registry of methods with their defaults ({@link METHODS}), and the
 * tuned file that saves a run and reloads it onto a base ({@link saveTuned},
 * {@link loadTuned}).
 * @module
 */
export * from './config.js';
export * from './prepare.js';
export * from './artifact.js';
