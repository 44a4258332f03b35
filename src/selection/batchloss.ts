/**
 * The loss one batch of a selection gradient pass differentiates, shared by
 * the in-process pass (scores.ts) and the worker threads of `sparsetune/node`,
 * so both take exactly the same gradient of a batch. Internal: not exported
 * from the package.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Params, Rng, Shape, Tensor } from '../core/index.js';
import { subset, twoViews, type DataSet, type SampleShape } from '../data/index.js';
import { crossEntropy, supConLoss, type Model } from '../models/index.js';

/**
 * Cross-entropy through the head on the batch's samples `x`, or SupCon on
 * the backbone's features of two augmented views of the samples `indices`
 * of `data` (the views from the stream `views`). Call inside a `tf.tidy`.
 */
export function selectionBatchLoss(
  model: Model<Shape, number, number>,
  params: Params,
  data: DataSet<SampleShape>,
  batch: { readonly x: () => tf.Tensor; readonly y: tf.Tensor; readonly indices: Int32Array },
  loss: 'supcon' | 'ce',
  temperature: number | undefined,
  views: Rng,
): tf.Scalar {
  if (loss === 'ce') return crossEntropy(model.apply(params, batch.x() as Tensor<readonly ['B', ...Shape]>).logits as Tensor<readonly ['B', number]>, batch.y as Tensor<readonly ['B']>) as tf.Scalar;
  // Views are made on the host from the batch's samples, not read back from the device.
  const v = twoViews(subset(data, batch.indices), views);
  const x = tf.tensor(v.images, [v.n, ...v.shape]) as Tensor<readonly ['B', ...Shape]>;
  return supConLoss(model.apply(params, x).features, batch.y as Tensor<readonly ['B']>, temperature === undefined ? {} : { temperature }) as tf.Scalar;
}
