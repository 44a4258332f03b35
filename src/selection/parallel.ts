/**
 * The seam through which gradient passes run elsewhere: in worker threads
 * (`workerPool` in `sparsetune/node`) or anything else that computes the
 * same sums. The root entry only declares it, so it stays browser-safe;
 * `fineTune` and `selectionEnv` take one as their `parallel` option.
 *
 * @module
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { ParamSpec, Params, Shape } from '../core/index.js';
import type { DataSet, Labels, SampleShape } from '../data/index.js';
import type { Loss, Model } from '../models/index.js';
import type { Mask } from './mask.js';
import type { Scores, SelectionLoss } from './scores.js';

/**
 * A gradient pass of selection (GPS's {@link gradient}, SPT's
 * {@link sensitivity}) handed to a {@link GradientEngine}.
 * @category Parallel
 */
export interface ScoresJob {
  /** The model. */
  readonly model: Model<Shape, number, number>;
  /** The parameters the gradients are taken at. */
  readonly params: Params;
  /** The leaves to score, in this order. */
  readonly spec: ParamSpec;
  /** The data, with int32 class labels. */
  readonly data: DataSet<SampleShape>;
  /** The batches, as positions in `data`, in the order of the pass. */
  readonly batches: readonly Int32Array[];
  /** The environment's seed and the criterion's name: batch `b`'s two views come from `rng(seed).fork(name).fork('views' + b)`. */
  readonly seed: number;
  /** The criterion's name, e.g. `'gradient:supcon'`. */
  readonly name: string;
  /** The loss differentiated. */
  readonly loss: SelectionLoss;
  /** SupCon temperature (default 0.07). */
  readonly temperature?: number | undefined;
  /** Σ g (GPS) or Σ g² (SPT) over the batches. */
  readonly square: boolean;
  /** Called with the number of batches done so far. */
  readonly onBatch?: ((done: number) => void) | undefined;
}

/**
 * A fine-tuning run handed to a {@link GradientEngine}: what stays the same
 * for every step, sent once.
 * @category Parallel
 */
export interface TrainerJob {
  /** The model. */
  readonly model: Model<Shape, number, number>;
  /** Every leaf's starting value (the frozen ones never change). */
  readonly params: Params;
  /** The mask being trained. */
  readonly mask: Mask;
  /** The leaves with a selected entry, in the order the loop keeps them. */
  readonly trainable: readonly string[];
  /** The training data. */
  readonly train: DataSet<SampleShape, Labels>;
  /** `fineTune`'s `loss` option (absent: cross-entropy). */
  readonly loss?: Loss | undefined;
  /** Label smoothing of the default cross-entropy. */
  readonly labelSmoothing?: number | undefined;
}

/**
 * One fine-tuning run's gradient computation, from {@link GradientEngine.trainer}.
 * @category Parallel
 */
export interface GradientTrainer {
  /**
   * The batch-mean loss and its gradient for each trainable leaf on the
   * samples `indices` of the training set, at the trainable leaves'
   * `current` values. Returns new tensors (a `tf.tidy` around the call
   * collects them); entries the mask does not select may be zero.
   */
  step(current: Params, indices: Int32Array): { readonly value: tf.Scalar; readonly grads: Params };
  /** Releases what the run holds in the engine. */
  dispose(): void;
}

/**
 * Computes the gradient sums of selection and fine-tuning somewhere else,
 * synchronously from the caller's point of view. `workerPool` in
 * `sparsetune/node` is one: data-parallel over worker threads, shards summed
 * in a fixed order.
 * @example
 * ```ts
 * import { workerPool } from 'sparsetune/node';
 * await using pool = await workerPool({ workers: 2 });
 * fineTune({ model, params, mask: gps({ k: 1 }), train: task.train, parallel: pool });
 * ```
 * @category Parallel
 */
export interface GradientEngine {
  /** How many shards a batch (or a pass) is split into. */
  readonly workers: number;
  /** The per-leaf sums of a selection gradient pass, host-side (Σ g, or Σ g² with `square`). */
  scores(job: ScoresJob): Scores;
  /** Starts a fine-tuning run; throws a `ConfigError` for what cannot run in the engine. */
  trainer(job: TrainerJob): GradientTrainer;
}
