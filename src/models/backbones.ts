/**
 * The three backbones of the benchmark and their standard configs. Their
 * checkpoints, pre-trained on Fashion-MNIST, ship in the package's
 * `checkpoints/` folder: `loadBackbone` in `sparsetune/node` reads them from
 * disk, {@link backboneFromBytes} takes the bytes from anywhere (a `fetch` in
 * the browser).
 *
 * @module
 */
import { cnn } from './cnn.js';
import { mlp } from './mlp.js';
import { vit } from './vit.js';

/**
 * The standard backbones, each with a 10-way head (Fashion-MNIST's classes).
 * @example
 * ```ts
 * const model = BACKBONES.vit(); // the architecture, without weights
 * ```
 * @category Models
 */
export const BACKBONES = {
  /** ViT: patch 7 (16 tokens + class token), width 64, depth 4, 4 heads, MLP 256: about 0.2M parameters. */
  vit: () => vit({ input: [28, 28, 1], patch: 7, width: 64, depth: 4, heads: 4, classes: 10 }),
  /** CNN: two 3×3 conv stages (32, 64 channels) with 2×2 average pooling, a 128-wide dense layer. */
  cnn: () => cnn({ input: [28, 28, 1], channels: [32, 64], features: 128, classes: 10 }),
  /** MLP: 784-256-256. */
  mlp: () => mlp({ input: [28, 28, 1], hidden: [256, 256], classes: 10 }),
} as const;

/**
 * A backbone's name.
 * @category Models
 */
export type BackboneName = keyof typeof BACKBONES;
