/**
 * The three backbones of the benchmark and their standard configs. Their
 * checkpoints, pre-trained on Fashion-MNIST, ship in the package's
 * `checkpoints/` folder: `loadBackbone` in `sparsetune/node` reads them from
 * disk, {@link backboneFromBytes} takes the bytes from anywhere (a `fetch` in
 * the browser).
 *
 * @module
 */
import { ConfigError, type Params } from '../core/index.js';
import { loadCheckpoint, type CheckpointHeader } from './checkpoint.js';
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

/**
 * A loaded backbone: the model, its pre-trained parameters, and the
 * checkpoint's header (how it was trained, its accuracy).
 * @category Models
 */
export interface Backbone<N extends BackboneName> {
  /** The model with its 10-way Fashion-MNIST head. */
  readonly model: ReturnType<(typeof BACKBONES)[N]>;
  /** The pre-trained parameters. */
  readonly params: Params;
  /** The checkpoint's header. */
  readonly header: CheckpointHeader;
}

/**
 * A standard backbone with its pre-trained parameters read from the bytes of
 * its checkpoint (`checkpoints/<name>.ckpt` in the package), for code that
 * cannot read files, such as a page in a browser. The checkpoint is checked
 * against the backbone's spec.
 * @example
 * ```ts
 * const bytes = new Uint8Array(await (await fetch('vit.ckpt')).arrayBuffer());
 * const { model, params } = backboneFromBytes('vit', bytes);
 * ```
 * @category Models
 */
export function backboneFromBytes<N extends BackboneName>(name: N, bytes: Uint8Array): Backbone<N> {
  const factory = BACKBONES[name] as (() => ReturnType<(typeof BACKBONES)[N]>) | undefined;
  if (factory === undefined) throw new ConfigError(`unknown backbone '${String(name)}'; known: ${Object.keys(BACKBONES).join(', ')}`);
  const model = factory();
  const { params, header } = loadCheckpoint(bytes, model.spec);
  return { model, params, header };
}
