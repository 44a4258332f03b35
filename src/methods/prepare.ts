/**
 * One call from a method config and a model to what trains: the selection
 * run on the data, LoRA adapters added where the method adds them, the mask,
 * and the method's learning rate — sparsetune's `get_peft_model`.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, type Params, type Shape } from '../core/index.js';
import type { DataFits, DataSet, Labels, SampleShape } from '../data/index.js';
import type { Model } from '../models/index.js';
import { ablations, bitfit, fps, fraction, full, gps, linearProbe, maskOf, select, selectionEnv, spt, type Mask, type Progress, type SelectionEnv } from '../selection/index.js';
import { addLora, adaptersOf, loraMask, type LoraConfig } from '../adapters/index.js';
import { resolveMethod, type GpsAblation, type MethodConfig, type ResolvedMethodConfig } from './config.js';

/**
 * What {@link prepare} needs beside the config: the model with the task's
 * head, its parameters (the base), and the environment selection runs in.
 * @category Methods
 */
export interface PrepareOptions<I extends Shape, S extends SampleShape, F extends number, K extends number> {
  /** The base model, with the task's head. */
  readonly model: Model<I, F, K>;
  /** Its parameters: the base the tuned file's delta is taken against. */
  readonly params: Params;
  /** The training data selection scores are computed on (not needed by `full`, `linear`, `bitfit`, `lora`). */
  readonly data?: DataSet<S, Labels> & DataFits<I, S>;
  /** A selection environment to reuse instead of `data` (its score cache is shared): made by `selectionEnv` on this model and these params. */
  readonly env?: SelectionEnv;
  /** Seed of selection's randomness, the adapters' initialisation and (passed on to fineTune) shuffling; default 0. */
  readonly seed?: number;
  /** Selection's progress (score passes), when `prepare` makes the environment. */
  readonly onProgress?: (p: Progress) => void;
}

/**
 * What trains, as {@link prepare} sets it up. Its `model`, `params`, `mask`,
 * `learningRate` and `seed` are {@link fineTune}'s options of those names,
 * so `fineTune({ ...tuned, train, val, epochs })` trains it; the rest says
 * how it was made, for {@link saveTuned}.
 * @category Methods
 */
export interface Prepared<I extends Shape, F extends number, K extends number> {
  /** The config with every default filled in (LoRA's kernels included). */
  readonly config: ResolvedMethodConfig;
  /** The model that trains: the base model, or it with LoRA adapters. */
  readonly model: Model<I, F, K>;
  /** Its starting parameters: the base's own tensors, plus fresh adapters where LoRA was added. */
  readonly params: Params;
  /** What trains, over `model.spec`. */
  readonly mask: Mask;
  /** The method's peak learning rate for fineTune's default optimizer (AdamW, weight decay 1e-4, warm-up then cosine decay). */
  readonly learningRate: number;
  /** The seed selection and the adapters used; fineTune shuffles with it. */
  readonly seed: number;
  /** The base model and parameters it was prepared on. */
  readonly base: { readonly model: Model<I, F, K>; readonly params: Params };
  /** LoRA's config, when the method added adapters. */
  readonly lora?: LoraConfig;
}

/** The blocks' 2-D kernels: LoRA's default targets (the head is trained whole; the patch embedding stays frozen, as SPT keeps it). */
const defaultLoraKernels = (model: Model<readonly (number | string)[], number, number>) =>
  Object.entries(model.spec)
    .filter(([p, l]) => l.role === 'kernel' && l.shape.length === 2 && !p.startsWith('patch.'))
    .map(([p]) => p);

const ABLATION_KEYS: Readonly<Record<GpsAblation, keyof ReturnType<typeof ablations>>> = {
  net: 'net',
  layer: 'layer',
  'neuron-random': 'neuronRandom',
  'net-random': 'netRandom',
  magnitude: 'magnitude',
  'head-ce': 'headCE',
};

/**
 * Sets up a method on a model in one call: checks the config and fills its
 * defaults, runs the method's selection on the data, adds LoRA adapters
 * where the method has them (SPT-LoRA's rank serves both its threshold and
 * the adapters), and builds the mask over what trains. Train it with
 * `fineTune({ ...tuned, train, val, epochs })`; save the result with
 * {@link saveTuned}. A bad config is a `ConfigError` before any work; a
 * method that selects by score without `data` or `env` is one too.
 * Everything `prepare` makes but does not return is disposed; what it
 * returns owns only the adapters (`adaptersOf(tuned.lora, tuned.params)`).
 *
 * Compare PEFT: `get_peft_model(model, LoraConfig(r=8))`.
 * @example
 * ```ts
 * const tuned = prepare({ method: 'spt-lora', budget: 0.01, rank: 8 }, { model, params, data: task.train });
 * const result = fineTune({ ...tuned, train: task.train, val: task.val, epochs: 8 });
 * const bytes = saveTuned(tuned, result.params);
 * ```
 * @category Methods
 */
export function prepare<I extends Shape, S extends SampleShape, F extends number, K extends number>(config: MethodConfig, options: PrepareOptions<I, S, F, K>): Prepared<I, F, K> {
  const resolved = resolveMethod(config);
  const { model, params } = options;
  const seed = options.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new ConfigError(`prepare: seed must be a non-negative integer, got ${String(seed)}`);
  const scored = resolved.method === 'gps' || resolved.method === 'fps' || resolved.method === 'gps-ablation' || resolved.method === 'spt-lora';
  if (scored && !options.env && !options.data) throw new ConfigError(`prepare: '${resolved.method}' selects by scores computed on data; give data (the training set) or env`);
  let envMemo: SelectionEnv | undefined;
  // Made only when needed: `full` and `linear` read no scores, and a given env keeps its cache.
  const env = () => (envMemo ??= options.env ?? selectionEnv({ model, params, seed, ...(options.data ? { data: options.data } : {}), ...(options.onProgress ? { onProgress: options.onProgress } : {}) }));
  const common = { learningRate: resolved.learningRate, seed, base: { model, params } };
  switch (resolved.method) {
    case 'gps': {
      const { k, loss, biases, head, norms, tokens } = resolved;
      return { ...common, config: resolved, model, params, mask: select(gps({ k, loss, biases, head, norms, tokens }), env()) };
    }
    case 'fps': {
      const { k, biases, head } = resolved;
      return { ...common, config: resolved, model, params, mask: select(fps({ k, biases, head }), env()) };
    }
    case 'gps-ablation': {
      const { k, loss, ablation } = resolved;
      const gpsMask = select(gps({ k, loss }), env());
      return { ...common, config: resolved, model, params, mask: select(ablations(gpsMask, { k, loss })[ABLATION_KEYS[ablation]], env()) };
    }
    case 'bitfit':
      return { ...common, config: resolved, model, params, mask: select(bitfit(), env()) };
    case 'linear':
      return { ...common, config: resolved, model, params, mask: select(linearProbe(), env()) };
    case 'full':
      return { ...common, config: resolved, model, params, mask: select(full(), env()) };
    case 'spt-lora': {
      const plan = spt({ budget: fraction(resolved.budget), rank: resolved.rank, alpha: resolved.alpha, beta: resolved.beta }).plan(env());
      const lora = addLora(model, params, plan.lora, { rank: resolved.rank, alpha: resolved.loraAlpha, seed });
      return withAdapters(lora, () => ({ ...common, config: resolved, model: lora.model, params: lora.params, mask: loraMask(lora, plan.mask), lora: lora.config }));
    }
    case 'lora': {
      const kernels = resolved.kernels ?? defaultLoraKernels(model);
      if (kernels.length === 0) throw new ConfigError("prepare: 'lora' found no 2-D kernels to adapt; name them with kernels: [...]");
      const lora = addLora(model, params, kernels, { rank: resolved.rank, alpha: resolved.alpha, seed });
      const base = maskOf(model.spec, (leaf) => resolved.head && leaf.role === 'head');
      return withAdapters(lora, () => ({ ...common, config: { ...resolved, kernels: [...kernels] }, model: lora.model, params: lora.params, mask: loraMask(lora, base), lora: lora.config }));
    }
  }
}

/** Runs `make`; should it throw, the fresh adapters go with the error. */
function withAdapters<T>(lora: { readonly config: LoraConfig; readonly params: Params }, make: () => T): T {
  try {
    return make();
  } catch (e) {
    tf.dispose(Object.values(adaptersOf(lora.config, lora.params)));
    throw e;
  }
}
