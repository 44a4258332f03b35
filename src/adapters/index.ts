/**
 * Adapters: LoRA, the one kind of added parameters sparsetune trains (SPT
 * tunes a matrix with LoRA where it holds enough of the budget), merged back
 * into the kernels after training.
 * @module
 */
export * from './lora.js';
