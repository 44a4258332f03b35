/**
 * What every model is: a spec, a seeded initialiser, and a pure apply
 * function from parameters and a batch of images to features and logits.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { requireBackend } from '../core/backend.js';
import { checkArgs } from '../core/shape.js';
import {
  assertMatchesSpec,
  combine,
  filterTree,
  paramSpec,
  rng,
  tree,
  type Dim,
  type ParamSpec,
  type Params,
  type Rng,
  type Shape,
  type Tensor, ConfigError } from '../core/index.js';
import { dense, denseLeaves, initLeaves, type Leaf } from './layers.js';

/**
 * Options of {@link Model.apply}.
 * @category Models
 */
export interface ApplyOptions {
  /**
   * Training mode turns on dropout where the model's config asks for it
   * (and then needs `rng`); evaluation mode (the default) is deterministic.
   */
  readonly training?: boolean;
  /** The stream dropout masks come from; required when training with dropout. */
  readonly rng?: Rng;
  /**
   * Called once for every use of a weight kernel (and the head) in the
   * forward pass, with the kernel's leaf path and the tensor it multiplies:
   * how a forward-only criterion ({@link fps}) sees every layer's input
   * without a backward pass or a gradient tape. The tensor belongs to the
   * forward pass (disposed when `apply` returns): keep what you compute
   * from it with `tf.keep`. Every shipped model and every imported Keras
   * model calls it; a model of your own calls it from its forward function.
   */
  readonly tap?: Tap;
}

/**
 * One use of a kernel in a forward pass, as {@link ApplyOptions.tap} sees
 * it. Without `window` the kernel is a product over the input's last axis
 * (a dense layer, a 1×1 convolution): `input` is `[..., fanIn]` and the
 * kernel's leaf is `[fanIn, out]` or `[1, 1, fanIn, out]`. With `window`
 * it is a convolution over `input` `[B, H, W, C]`: a `[KH, KW, C, out]`
 * filter, or a depthwise `[KH, KW, C·M]` leaf when `depthwise`.
 * @category Models
 */
export interface KernelInput {
  /** The kernel's leaf path, e.g. `'blocks.0.mlp.fc1.kernel'`. */
  readonly path: string;
  /** The tensor the kernel multiplies. */
  readonly input: tf.Tensor;
  /** The convolution's window, when the kernel slides over `input`. */
  readonly window?: {
    readonly size: readonly [number, number];
    readonly strides: readonly [number, number];
    readonly padding: 'same' | 'valid';
    readonly depthwise: boolean;
  };
}

/**
 * A forward-pass tap: see {@link ApplyOptions.tap}.
 * @example
 * ```ts
 * const seen: string[] = [];
 * model.apply(params, x, { tap: ({ path, input }) => seen.push(`${path} ${input.shape}`) });
 * ```
 * @category Models
 */
export type Tap = (use: KernelInput) => void;

/**
 * The output of a model on a batch: the backbone's features (what GPS's
 * contrastive loss sees) and the head's logits.
 * @category Models
 */
export interface Output<B extends Dim, F extends number, K extends number> {
  /** Backbone features, `[B, F]`. */
  readonly features: Tensor<[B, F]>;
  /** Class scores, `[B, K]`. */
  readonly logits: Tensor<[B, K]>;
}

/**
 * A model: per-sample input shape `I` (e.g. `[28, 28, 1]`), feature width
 * `F` and class count `K`, all in the type.
 * @category Models
 */
export interface Model<I extends Shape, F extends number, K extends number> {
  /** `'mlp'`, `'cnn'` or `'vit'`. */
  readonly name: string;
  /** The config the model was built from, for checkpoints and reports. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Per-sample input shape. */
  readonly input: I;
  /** Feature width. */
  readonly features: F;
  /** Number of classes the head predicts. */
  readonly classes: K;
  /** Every leaf with its shape, role and neuron axis, in tree order. */
  readonly spec: ParamSpec;
  /** Fresh parameters from a seed. */
  init(seed: number): Params;
  /** Fresh head parameters alone (`head.kernel`, `head.bias`), drawn as {@link Model.init} draws them. */
  initHead(seed: number): Params;
  /**
   * Runs the model on a batch `[B, ...I]`. Parameters must match {@link Model.spec}.
   */
  apply<B extends Dim>(params: Params, x: Tensor<readonly [B, ...I]>, options?: ApplyOptions): Output<B, F, K>;
  /**
   * The head alone, features `[B, F]` to logits `[B, K]`, where the model is
   * a backbone and a dense head (as {@link defineModel} builds): `apply`'s
   * logits are `applyHead(params, apply(params, x).features)`. `fineTune`
   * uses it to train a head-only selection on features computed once.
   */
  applyHead?(params: Params, features: tf.Tensor): tf.Tensor;
  /**
   * The same backbone with a new `classes`-way head. {@link replaceHead}
   * gives matching parameters.
   */
  withClasses<K2 extends number>(classes: K2): Model<I, F, K2>;
}

/** What a concrete model supplies; {@link defineModel} builds the rest. */
export interface ModelParts<I extends Shape, F extends number> {
  readonly name: string;
  readonly config: Readonly<Record<string, unknown>>;
  readonly input: I;
  readonly features: F;
  /** Backbone leaves (the head is added from `features` and the class count). */
  readonly backbone: readonly Leaf[];
  /** Backbone forward pass: a batch `[B, ...I]` to features `[B, F]`. */
  readonly forward: (params: Params, x: tf.Tensor, options: ApplyOptions) => tf.Tensor;
}

/**
 * Builds a {@link Model} from its backbone parts and a class count.
 * @example
 * ```ts
 * const probe = defineModel({ name: 'probe', config: {}, input: [784] as const, features: 784, backbone: [], forward: (_params, x) => x }, 10);
 * const params = probe.init(0); // head.kernel [784, 10], head.bias [10]
 * ```
 */
export function defineModel<I extends Shape, F extends number, K extends number>(parts: ModelParts<I, F>, classes: K): Model<I, F, K> {
  if (!Number.isInteger(classes) || classes < 1) throw new ConfigError(`${parts.name}: classes must be a positive integer, got ${classes}`);
  const head = denseLeaves('head', parts.features, classes, 'head');
  const leaves = [...parts.backbone, ...head];
  const spec = paramSpec(leaves.map((l) => [l.path, l.spec] as const));
  const pattern = ['B', ...parts.input];
  return {
    name: parts.name,
    config: { ...parts.config, classes },
    input: parts.input,
    features: parts.features,
    classes,
    spec,
    init: (seed) => {
      requireBackend(`${parts.name}.init`);
      return tree(initLeaves(leaves, rng(seed).fork(parts.name)));
    },
    initHead: (seed) => {
      requireBackend(`${parts.name}.initHead`);
      return tree(initLeaves(head, rng(seed).fork(parts.name)));
    },
    apply<B extends Dim>(params: Params, x: Tensor<readonly [B, ...I]>, options: ApplyOptions = {}): Output<B, F, K> {
      checkArgs(`${parts.name}.apply`, [['x', x, pattern]]);
      assertMatchesSpec(spec, params, `${parts.name}.apply: params`);
      return tf.tidy(() => {
        const features = parts.forward(params, x, options);
        const logits = dense(params, 'head', features as Tensor<readonly [number, number]>, options.tap);
        return { features, logits };
      }) as unknown as Output<B, F, K>;
    },
    applyHead: (params, features) => dense(params, 'head', features as Tensor<readonly [number, number]>),
    withClasses: <K2 extends number>(k: K2) => defineModel(parts, k),
  };
}

/**
 * Parameters for `model` (a {@link Model.withClasses} of the one `params`
 * came from): the backbone tensors are the same objects, untouched; the head
 * is fresh, drawn from `seed`.
 * @example
 * ```ts
 * const task = backbone.withClasses(4);
 * const taskParams = replaceHead(task, params, 1);
 * ```
 * @category Models
 */
export function replaceHead(model: Model<Shape, number, number>, params: Params, seed: number): Params {
  const backbone = filterTree(params, (_, p) => !p.startsWith('head.'));
  const out = combine(backbone, model.initHead(seed));
  assertMatchesSpec(model.spec, out, 'replaceHead');
  return out;
}
