/**
 * The shipped backbones, read from the package's `checkpoints/` folder.
 *
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BACKBONES, type BackboneName } from '../models/backbones.js';
import { backboneFromBytes, type Backbone } from '../formats/checkpoint.js';
import { ConfigError } from '../core/index.js';

/**
 * Where a backbone's shipped checkpoint lives: `checkpoints/<name>.ckpt` in
 * the installed package (or the repository).
 * @example
 * ```ts
 * import { checkpointPath } from 'sparsetune/node';
 * checkpointPath('vit'); // '…/node_modules/sparsetune/checkpoints/vit.ckpt'
 * ```
 * @category Models
 */
export function checkpointPath(name: BackboneName): string {
  // This file sits two folders below the package root both as src/node/*.ts
  // and as dist/node/*.js, so one relative URL serves the repo and the package.
  return fileURLToPath(new URL(`../../checkpoints/${name}.ckpt`, import.meta.url));
}

/**
 * A standard backbone with its pre-trained parameters from the package's
 * `checkpoints/` folder.
 * @example
 * ```ts
 * import { loadBackbone } from 'sparsetune/node';
 * const { model, params } = loadBackbone('vit');
 * const task = model.withClasses(4);
 * const taskParams = replaceHead(task, params, 0);
 * ```
 * @category Models
 */
export function loadBackbone<N extends BackboneName>(name: N): Backbone<N> {
  if (!(name in BACKBONES)) throw new ConfigError(`unknown backbone '${String(name)}'; known: ${Object.keys(BACKBONES).join(', ')}`);
  const file = checkpointPath(name);
  if (!existsSync(file)) {
    throw new Error(`loadBackbone: no checkpoint at ${file}; the package ships checkpoints/${name}.ckpt, so this install is incomplete (in the repository, \`npm run pretrain -- --model ${name}\` re-creates it)`);
  }
  return backboneFromBytes(name, new Uint8Array(readFileSync(file)));
}
