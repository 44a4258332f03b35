/**
 * Models (MLP, CNN, ViT) and losses as typed pure functions, and the shipped backbones' architectures.
 * @module
 */
export * as layers from './layers.js';
export { defineModel, replaceHead, type ApplyOptions, type KernelInput, type Tap, type Model, type ModelParts, type Output } from './model.js';
export { mlp, type MlpConfig } from './mlp.js';
export { cnn, type CnnConfig } from './cnn.js';
export { vit, type VitConfig } from './vit.js';
export * from './losses.js';
export * from './backbones.js';
