/**
 * Losses: softmax cross-entropy and the supervised contrastive loss GPS
 * selects with; and accuracy.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '../core/errors.js';
import { checkArgs } from '../core/shape.js';
import { l2Normalize, logSoftmax, matmul, transpose, type Dim, type Tensor, ConfigError } from '../core/index.js';
import { fastCrossEntropy, stockGradients } from '../core/kernels.js';

/**
 * Options of {@link crossEntropy}.
 * @category Losses
 */
export interface CrossEntropyOptions {
  /** Mixes the one-hot target with the uniform distribution: `(1 − ε)·onehot + ε/K`. Default 0. */
  readonly labelSmoothing?: number;
}

/**
 * Mean softmax cross-entropy of `logits` `[B, K]` against int32 `labels`
 * `[B]`, computed through a stable log-softmax.
 * @example
 * ```ts
 * const loss = crossEntropy(logits, labels, { labelSmoothing: 0.1 });
 * ```
 * @category Losses
 */
export function crossEntropy<B extends Dim, K extends Dim>(
  logits: Tensor<readonly [B, K]>,
  labels: Tensor<readonly [NoInfer<B>]>,
  options: CrossEntropyOptions = {},
): Tensor<[]> {
  checkArgs('crossEntropy', [
    ['logits', logits, ['B', 'K']],
    ['labels', labels, ['B']],
  ]);
  if (labels.dtype !== 'int32') throw new ShapeError(`crossEntropy: argument labels: expected dtype int32, got ${labels.dtype}`);
  const eps = options.labelSmoothing ?? 0;
  if (!(eps >= 0 && eps < 1)) throw new ConfigError(`crossEntropy: labelSmoothing must be in [0, 1), got ${eps}`);
  const k = logits.shape[1]!;
  // One kernel of our own (loss and gradient on the host), or, with stock gradients, tfjs's ops.
  if (!stockGradients()) return tf.tidy(() => fastCrossEntropy(logits, labels, eps)) as Tensor<[]>;
  return tf.tidy(() => {
    let target = tf.cast(tf.oneHot(labels as tf.Tensor1D, k), 'float32');
    if (eps > 0) target = tf.add(tf.mul(target, 1 - eps), eps / k);
    return tf.neg(tf.mean(tf.sum(tf.mul(target, logSoftmax(logits)), -1)));
  }) as Tensor<[]>;
}

/**
 * A training loss for `fineTune`: the model's outputs `[B, K]` and a
 * batch's labels (int32 `[B]` classes, or float32 `[B, T]` regression
 * targets) to a scalar, differentiable with respect to the outputs.
 * @category Losses
 */
export type Loss = (logits: Tensor<readonly ['B', number]>, labels: tf.Tensor) => tf.Tensor;

/**
 * Mean squared error of `outputs` `[B, T]` against float32 `targets`
 * `[B, T]`, averaged over every entry: the loss of regression, where the
 * model's "classes" are its `T` outputs.
 * @example
 * ```ts
 * fineTune({ model, params, mask, train, loss: meanSquaredError }); // train.labels: Float32Array of n × T targets
 * ```
 * @category Losses
 */
export function meanSquaredError<B extends Dim, T extends Dim>(outputs: Tensor<readonly [B, T]>, targets: tf.Tensor): Tensor<[]> {
  checkArgs('meanSquaredError', [
    ['outputs', outputs, ['B', 'T']],
    ['targets', targets, ['B', 'T']],
  ]);
  if (targets.dtype !== 'float32') throw new ShapeError(`meanSquaredError: argument targets: expected dtype float32 (regression targets), got ${targets.dtype}`);
  return tf.tidy(() => tf.mean(tf.squaredDifference(outputs, targets))) as Tensor<[]>;
}

/**
 * Fraction of rows whose arg-max logit is the label (read back to the host).
 * @example
 * ```ts
 * const acc = accuracy(model.apply(params, x).logits, y); // a number in [0, 1]
 * ```
 * @category Losses
 */
export function accuracy<B extends Dim, K extends Dim>(logits: Tensor<readonly [B, K]>, labels: Tensor<readonly [NoInfer<B>]>): number {
  checkArgs('accuracy', [
    ['logits', logits, ['B', 'K']],
    ['labels', labels, ['B']],
  ]);
  const n = labels.shape[0]!;
  if (n === 0) return Number.NaN;
  const hits = tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(logits, -1), tf.cast(labels, 'int32')), 'int32')));
  const h = hits.dataSync()[0]!;
  hits.dispose();
  return h / n;
}

/**
 * Options of {@link supConLoss}.
 * @category Losses
 */
export interface SupConOptions {
  /** Softmax temperature τ (default 0.07, as GPS). */
  readonly temperature?: number;
}

/**
 * Supervised contrastive loss (Khosla et al. 2020, the "out" form GPS uses).
 * `features` holds two views of each of B images, `[2B, F]`: rows `0…B−1`
 * are the first views and rows `B…2B−1` the second, in the same order as
 * `labels` `[B]`. Features are L2-normalised; every view is an anchor; its
 * positives are all other views with its label (so the other view of the
 * same image always is one); the loss is
 * `mean_i −1/|P(i)| Σ_{p∈P(i)} log( exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ) )`.
 * @example
 * ```ts
 * const loss = supConLoss(concat([f1, f2], 0), labels, { temperature: 0.07 }); // f1, f2: [B, F], labels: [B]
 * ```
 * @category Losses
 */
export function supConLoss<N extends Dim, F extends Dim, B extends Dim>(
  features: Tensor<readonly [N, F]>,
  labels: Tensor<readonly [B]>,
  options: SupConOptions = {},
): Tensor<[]> {
  checkArgs('supConLoss', [
    ['features', features, ['N', 'F']],
    ['labels', labels, ['B']],
  ]);
  const b = labels.shape[0]!;
  const n = features.shape[0]!;
  if (n !== 2 * b) throw new ShapeError(`supConLoss: argument features: expected [2·B=${2 * b}, F] (two views per label), got [${features.shape.join(', ')}]`);
  if (labels.dtype !== 'int32') throw new ShapeError(`supConLoss: argument labels: expected dtype int32, got ${labels.dtype}`);
  const tau = options.temperature ?? 0.07;
  if (!(tau > 0)) throw new ConfigError(`supConLoss: temperature must be positive, got ${tau}`);
  return tf.tidy(() => {
    const z = l2Normalize(features);
    const zt = z as Tensor<readonly [number, number]>;
    const sim = tf.div(matmul(zt, transpose(zt, [1, 0])), tau);
    const self = tf.cast(tf.eye(n), 'bool');
    // Exclude each anchor from its own denominator with a large negative, not −Inf (0·−Inf is NaN).
    const logits = tf.where(self, tf.fill([n, n], -1e9), sim);
    const logProb = tf.logSoftmax(logits);
    const both = tf.concat([labels, labels]);
    const positives = tf.logicalAnd(tf.equal(tf.expandDims(both, 1), tf.expandDims(both, 0)), tf.logicalNot(self));
    const pos = tf.cast(positives, 'float32');
    const perAnchor = tf.div(tf.sum(tf.mul(pos, logProb), 1), tf.sum(pos, 1));
    return tf.neg(tf.mean(perAnchor));
  }) as Tensor<[]>;
}
