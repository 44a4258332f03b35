// LoRA is a no-op at initialisation, and merging twice changes nothing.
import { fc, test } from '@fast-check/vitest';
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { checked, paths, randomNormal, rng } from '../src/index.js';
import { mlp } from '../src/models/index.js';
import { addLora, mergeLora } from '../src/adapters/index.js';

test.prop([fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 }), fc.nat(), fc.subarray(['layers.0.kernel', 'layers.1.kernel', 'head.kernel'], { minLength: 1 })])(
  'no-op at initialisation; merge is idempotent',
  (rank, width, seed, kernels) => {
    const model = mlp({ input: [3, 3, 1], hidden: [width, 4], classes: 3 });
    const params = model.init(seed);
    const x = checked(randomNormal(rng(seed).fork('x'), [2, 3, 3, 1]), ['B', 3, 3, 1]);
    const lora = addLora(model, params, kernels, { rank, alpha: 2 * rank, seed });
    const diff = tf.max(tf.abs(tf.sub(lora.model.apply(lora.params, x).logits, model.apply(params, x).logits))).dataSync()[0];
    expect(diff).toBe(0);
    const once = mergeLora(lora.config, lora.params);
    const twice = mergeLora(lora.config, once);
    expect(twice).toBe(once);
    for (const p of paths(model.spec)) expect(Array.from(once[p]!.dataSync())).toEqual(Array.from(params[p]!.dataSync()));
  },
);
