/**
 * The three backbones of the benchmark, their standard configs, and the
 * checkpoints pre-trained on Fashion-MNIST that ship in `checkpoints/`.
 *
 * @module
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Params } from '../core/index.js';
import { readCheckpoint, type CheckpointHeader } from './checkpoint.js';
import { cnn } from './cnn.js';
import { mlp } from './mlp.js';
import { vit } from './vit.js';

/**
 * The standard backbones, each with a 10-way head (Fashion-MNIST's classes).
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

/**
 * Where a backbone's shipped checkpoint lives.
 * @category Models
 */
export function checkpointPath(name: BackboneName): string {
  return fileURLToPath(new URL(`../../checkpoints/${name}.ckpt`, import.meta.url));
}

/**
 * A standard backbone with its pre-trained parameters from `checkpoints/`.
 * @example
 * ```ts
 * const { model, params } = loadBackbone('vit');
 * const task = model.withClasses(4);
 * const taskParams = replaceHead(task, params, 0);
 * ```
 * @category Models
 */
export function loadBackbone<N extends BackboneName>(name: N): { model: ReturnType<(typeof BACKBONES)[N]>; params: Params; header: CheckpointHeader } {
  const factory = BACKBONES[name] as (() => ReturnType<(typeof BACKBONES)[N]>) | undefined;
  if (factory === undefined) throw new RangeError(`unknown backbone '${String(name)}'; known: ${Object.keys(BACKBONES).join(', ')}`);
  const file = checkpointPath(name);
  if (!existsSync(file)) throw new Error(`loadBackbone: no checkpoint at ${file}; run \`npm run pretrain -- --model ${name}\``);
  const model = factory();
  const { params, header } = readCheckpoint(file, model.spec);
  return { model, params, header };
}
