/**
 * sparsetune: parameter-efficient fine-tuning by parameter selection.
 *
 * @packageDocumentation
 */
export * from './core/index.js';
