/**
 * LoRA: a kernel `W` computes with `W + A·B·(α/r)`, where `A` `[d_in, r]`
 * starts seeded random and `B` `[r, d_out]` starts at zero, so the model's
 * output is unchanged at the start. `mergeLora` folds the adapters into the
 * kernels (no inference cost); `unmergeLora` takes them out again.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { assertMatchesSpec, combine, filterTree, matmul, mapTree, paramSpec, randomUniform, rng, SpecError, tree, type Dim, type ParamSpec, type Params, type Tensor, ConfigError } from '../core/index.js';
import type { ApplyOptions, Model } from '../models/index.js';
import { maskAlgebra, maskOf, type Mask } from '../selection/index.js';

/**
 * Which kernels carry adapters, and how.
 * @category LoRA
 */
export interface LoraConfig {
  /** The adapted kernels (2-D leaves). */
  readonly kernels: readonly string[];
  /** Rank r (default 8). */
  readonly rank: number;
  /** α; the adapter's product is scaled by α/r (default: α = r). */
  readonly alpha: number;
}

/** Paths of a kernel's two adapters. */
const adapterPaths = (kernel: string) => [`${kernel}.lora_a`, `${kernel}.lora_b`] as const;

/**
 * A model with LoRA adapters, its parameters and the config that built them.
 * @category LoRA
 */
export interface LoraModel<I extends readonly (number | string)[], F extends number, K extends number> {
  /** The model: its spec holds the adapters too, its apply uses `W + A·B·α/r`. */
  readonly model: Model<I, F, K>;
  /** The base parameters (the same tensors) plus fresh adapters. */
  readonly params: Params;
  /** Which kernels are adapted, with rank and α. */
  readonly config: LoraConfig;
}

/** The kernels with the adapters' product added in. */
function effective(config: LoraConfig, params: Params): Params {
  const scale = config.alpha / config.rank;
  const base = filterTree(params, (_, p) => !p.endsWith('.lora_a') && !p.endsWith('.lora_b'));
  return mapTree(base, (w, p) => {
    if (!config.kernels.includes(p)) return w;
    const [pa, pb] = adapterPaths(p);
    const a = params[pa] as Tensor<readonly [number, number]> | undefined;
    const b = params[pb] as Tensor<readonly [number, number]> | undefined;
    if (!a || !b) throw new SpecError(`lora: kernel '${p}' has no adapters '${pa}', '${pb}'`);
    return tf.add(w, tf.mul(matmul(a, b), scale));
  });
}

/**
 * Adds LoRA adapters to the given 2-D kernels of a model.
 * @example
 * ```ts
 * const lora = addLora(model, params, ['blocks.0.attn.qkv.kernel', 'blocks.0.mlp.fc1.kernel'], { rank: 4, seed: 0 });
 * const out = lora.model.apply(lora.params, x); // equals model.apply(params, x) at the start
 * ```
 * @category LoRA
 */
export function addLora<I extends readonly (number | string)[], F extends number, K extends number>(
  model: Model<I, F, K>,
  params: Params,
  kernels: readonly string[],
  options: { readonly rank?: number; readonly alpha?: number; readonly seed?: number } = {},
): LoraModel<I, F, K> {
  const rank = options.rank ?? 8;
  const alpha = options.alpha ?? rank;
  checkConfig('addLora', model, kernels, rank);
  const config: LoraConfig = { kernels: [...kernels], rank, alpha };
  const seed = options.seed ?? 0;
  return { model: wrap(model, config, seed), params: combine(params, initAdapters(model.spec, config, seed)), config };
}

/** Fresh adapters for `config`'s kernels: A Kaiming-uniform from `seed`, B zero. */
function initAdapters(spec: ParamSpec, config: LoraConfig, seed: number): Params {
  const r = rng(seed).fork('lora');
  return tree(
    config.kernels.flatMap((k) => {
      const [din, dout] = spec[k]!.shape as [number, number];
      const [pa, pb] = adapterPaths(k);
      // Kaiming-uniform with a = √5 on fan-in d_in, as PEFT: bound 1/√d_in.
      const bound = 1 / Math.sqrt(din);
      return [
        [pa, randomUniform(r.fork(pa), [din, config.rank], -bound, bound)],
        [pb, tf.zeros([config.rank, dout])],
      ] as const;
    }),
  );
}

/** The spec of `config`'s adapters on `spec`'s kernels. */
function adapterSpecOf(spec: ParamSpec, config: LoraConfig): ParamSpec {
  return paramSpec(
    config.kernels.flatMap((k) => {
      const [din, dout] = spec[k]!.shape as [number, number];
      const [pa, pb] = adapterPaths(k);
      return [
        [pa, { shape: [din, config.rank], role: 'adapter', neuronAxis: 1 }],
        [pb, { shape: [config.rank, dout], role: 'adapter', neuronAxis: 1 }],
      ] as const;
    }),
  );
}

/** The model computing with `W + A·B·α/r` on `config`'s kernels; `seed` draws the adapters of `init` and `withClasses`. */
function wrap<I extends readonly (number | string)[], F extends number, K extends number>(model: Model<I, F, K>, config: LoraConfig, seed: number): Model<I, F, K> {
  // Without the base model's applyHead: the head may carry adapters, so its
  // logits are not the base head's on the features.
  const { applyHead: _baseHead, ...base } = model;
  return {
    ...base,
    spec: combine(model.spec, adapterSpecOf(model.spec, config)),
    config: { ...model.config, lora: config },
    init: (s) => combine(model.init(s), initAdapters(model.spec, config, s)),
    apply<B extends Dim>(p: Params, x: Tensor<readonly [B, ...I]>, o?: ApplyOptions) {
      // The merged kernels are temporaries: only features and logits leave the scope.
      return tf.tidy(() => ({ ...model.apply(effective(config, p), x, o) }) as unknown as tf.TensorContainerObject) as unknown as ReturnType<typeof model.apply<B>>;
    },
    // Only the model: no parameters are drawn (and left undisposed) for it.
    withClasses: <K2 extends number>(k2: K2) => wrap(model.withClasses(k2), config, seed),
  };
}

/**
 * A LoRA model around saved adapters: what {@link addLora} returns, with
 * `adapters` (say, read back from a file) in place of fresh ones. The
 * config is checked against the model (2-D kernels, a positive integer
 * rank, a finite positive α) and the adapters against the spec they must
 * have; a mismatch is a {@link SpecError} (a bad config a {@link ConfigError})
 * and nothing is built. The returned parameters are `params` and
 * `adapters`' own tensors.
 * @example
 * ```ts
 * const again = restoreLora(model, base, lora.config, adaptersOf(lora.config, tuned));
 * evaluate(again.model, again.params, task.test);
 * ```
 * @category LoRA
 */
export function restoreLora<I extends readonly (number | string)[], F extends number, K extends number>(model: Model<I, F, K>, params: Params, config: LoraConfig, adapters: Params): LoraModel<I, F, K> {
  checkConfig('restoreLora', model, config.kernels, config.rank);
  if (!(typeof config.alpha === 'number' && Number.isFinite(config.alpha) && config.alpha > 0)) throw new ConfigError(`restoreLora: alpha must be a finite number > 0, got ${String(config.alpha)}`);
  const spec = adapterSpecOf(model.spec, config);
  assertMatchesSpec(spec, adapters, 'restoreLora: adapters');
  const own: LoraConfig = { kernels: [...config.kernels], rank: config.rank, alpha: config.alpha };
  return { model: wrap(model, own, 0), params: combine(params, adapters), config: own };
}

/** A ConfigError for a bad rank, a SpecError for a kernel the model lacks or that is not 2-D. */
function checkConfig(what: string, model: Model<readonly (number | string)[], number, number>, kernels: readonly string[], rank: number): void {
  if (!Number.isInteger(rank) || rank < 1) throw new ConfigError(`${what}: rank must be a positive integer, got ${rank}`);
  for (const k of kernels) {
    const leaf = Object.hasOwn(model.spec, k) ? model.spec[k] : undefined;
    if (!leaf || leaf.shape.length !== 2) throw new SpecError(`${what}: '${k}' is not a 2-D kernel of the model`);
  }
}

/**
 * Folds the adapters into their kernels: parameters of the base model
 * (`W + A·B·α/r`), no adapters. Parameters without adapters come back as they are.
 * @example
 * ```ts
 * const deployed = mergeLora(lora.config, tunedParams); // apply with the base model
 * ```
 * @category LoRA
 */
export function mergeLora(config: LoraConfig, params: Params): Params {
  if (!config.kernels.some((k) => adapterPaths(k)[0] in params)) return params;
  return tf.tidy(() => effective(config, params));
}

/**
 * Takes adapters back out of merged kernels: `W = merged − A·B·α/r`, with
 * the adapters beside them again.
 * @example
 * ```ts
 * const again = unmergeLora(lora.config, deployed, adaptersOf(lora.config, tunedParams));
 * ```
 * @category LoRA
 */
export function unmergeLora(config: LoraConfig, merged: Params, adapters: Params): Params {
  const scale = config.alpha / config.rank;
  const kernels = mapTree(merged, (w, p) => {
    if (!config.kernels.includes(p)) return w;
    const [pa, pb] = adapterPaths(p);
    return tf.tidy(() => tf.sub(w, tf.mul(matmul(adapters[pa] as Tensor<readonly [number, number]>, adapters[pb] as Tensor<readonly [number, number]>), scale)));
  });
  return combine(kernels, adapters);
}

/**
 * The adapter leaves of LoRA parameters.
 * @example
 * ```ts
 * writeCheckpoint('adapters.ckpt', adapterSpec, adaptersOf(lora.config, tuned));
 * ```
 * @category LoRA
 */
export function adaptersOf(config: LoraConfig, params: Params): Params {
  const wanted = new Set<string>(config.kernels.flatMap((k) => adapterPaths(k)));
  return filterTree(params, (_, p) => wanted.has(p));
}

/**
 * The mask that trains the adapters whole and, on the base leaves, what
 * `baseMask` selects — minus the adapted kernels, which LoRA replaces.
 * This is SPT's training set-up: its unstructured mask plus its LoRA kernels.
 * @example
 * ```ts
 * const plan = spt({ budget: fraction(0.01) }).plan(env);
 * const lora = addLora(model, params, plan.lora, { rank: 8 });
 * fineTune({ model: lora.model, params: lora.params, mask: loraMask(lora, plan.mask), train });
 * ```
 * @category LoRA
 */
export function loraMask(lora: LoraModel<readonly (number | string)[], number, number>, baseMask: Mask): Mask {
  const spec = lora.model.spec;
  return maskAlgebra(spec).join(
    maskOf(spec, (leaf, p) => (p in baseMask.spec && !lora.config.kernels.includes(p) ? baseMask.bits[p]! : false)),
    maskOf(spec, (leaf) => leaf.role === 'adapter'),
  );
}

