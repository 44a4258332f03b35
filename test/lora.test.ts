import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import { checked, paths, randomNormal, rng, SpecError, type Params } from '../src/index.js';
import { subset } from '../src/data/index.js';
import { buildTask } from '../src/node/index.js';
import { vit } from '../src/models/index.js';
import { exactly, fromScores, selectionEnv, spt } from '../src/selection/index.js';
import { fineTune } from '../src/optim/index.js';
import { addLora, adaptersOf, loraMask, mergeLora, unmergeLora } from '../src/adapters/index.js';

const model = vit({ input: [28, 28, 1], patch: 7, width: 8, depth: 2, heads: 2, classes: 4 });
const params = model.init(0);
const x = checked(randomNormal(rng(1), [3, 28, 28, 1]), ['B', 28, 28, 1]);
const kernels = ['blocks.0.attn.qkv.kernel', 'blocks.1.mlp.fc1.kernel'];
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!;
/** LoRA parameters with non-zero B, as after training. */
const trained = (p: Params) => Object.fromEntries(paths(p).map((q) => [q, q.endsWith('.lora_b') ? randomNormal(rng(2).fork(q), p[q]!.shape, 0.1) : p[q]!])) as Params;

describe('LoRA', () => {
  const lora = addLora(model, params, kernels, { rank: 2, alpha: 4, seed: 3 });

  test('adds A [d_in, r] (seeded) and B [r, d_out] (zero) per kernel, role adapter', () => {
    expect(lora.model.spec['blocks.0.attn.qkv.kernel.lora_a']).toMatchObject({ shape: [8, 2], role: 'adapter' });
    expect(lora.model.spec['blocks.0.attn.qkv.kernel.lora_b']).toMatchObject({ shape: [2, 24], role: 'adapter' });
    expect(tf.max(tf.abs(lora.params['blocks.1.mlp.fc1.kernel.lora_b']!)).dataSync()[0]).toBe(0);
    expect(tf.max(tf.abs(lora.params['blocks.1.mlp.fc1.kernel.lora_a']!)).dataSync()[0]).toBeGreaterThan(0);
    expect(lora.params['blocks.0.attn.qkv.kernel']).toBe(params['blocks.0.attn.qkv.kernel']);
  });

  test('is a no-op at initialisation', () => {
    expect(maxDiff(lora.model.apply(lora.params, x).logits, model.apply(params, x).logits)).toBe(0);
  });

  test('merged and unmerged outputs agree; merging twice changes nothing; unmerge restores the kernels', () => {
    const p = trained(lora.params);
    const merged = mergeLora(lora.config, p);
    expect(paths(merged)).toEqual(paths(model.spec));
    expect(maxDiff(model.apply(merged, x).logits, lora.model.apply(p, x).logits)).toBeLessThan(1e-5);
    expect(maxDiff(model.apply(merged, x).logits, model.apply(params, x).logits)).toBeGreaterThan(1e-4);
    expect(mergeLora(lora.config, merged)).toBe(merged);
    const back = unmergeLora(lora.config, merged, adaptersOf(lora.config, p));
    expect(paths(back)).toEqual(paths(lora.model.spec));
    for (const k of kernels) expect(maxDiff(back[k]!, params[k]!)).toBeLessThan(1e-6);
  });

  test('only 2-D kernels of the model take adapters', () => {
    expect(() => addLora(model, params, ['blocks.0.attn.qkv.bias'])).toThrow(new SpecError("addLora: 'blocks.0.attn.qkv.bias' is not a 2-D kernel of the model"));
    expect(() => addLora(model, params, ['nope'])).toThrow("addLora: 'nope' is not a 2-D kernel of the model");
    expect(() => addLora(model, params, kernels, { rank: 0 })).toThrow('addLora: rank must be a positive integer, got 0');
  });

  test('the SPT path trains its unstructured entries and its LoRA kernels together', () => {
    const train = subset(buildTask('rotation', { testSize: 10 }).train, [...Array(32).keys()]);
    // Synthetic sensitivity: fc1 of block 1 takes most of the budget (→ LoRA); 3 entries of block 0's fc2 stay unstructured.
    const scores = Object.fromEntries(
      paths(model.spec).map((p) => {
        const n = model.spec[p]!.shape.reduce((a, b) => a * b, 1);
        const hot = p === 'blocks.1.mlp.fc1.kernel' ? 40 : p === 'blocks.0.mlp.fc2.kernel' ? 3 : 0;
        return [p, new Float32Array(n).map((_, i) => (i < hot ? 1 : 0))];
      }),
    );
    const plan = spt({ budget: exactly(43), rank: 2, alpha: 4, criterion: fromScores(scores, 'synthetic-spt') }).plan(selectionEnv({ model, params }));
    expect(plan.lora).toEqual(['blocks.1.mlp.fc1.kernel']);
    const lora2 = addLora(model, params, plan.lora, { rank: 2, seed: 0 });
    const mask = loraMask(lora2, plan.mask);
    const r = fineTune({ model: lora2.model, params: lora2.params, mask, train, epochs: 1, batchSize: 16, learningRate: 1e-2, progressBar: false });
    const changed = (p: string) => maxDiff(r.params[p]!, lora2.params[p]!) > 0;
    expect(changed('blocks.1.mlp.fc1.kernel.lora_b')).toBe(true);
    expect(changed('blocks.1.mlp.fc1.kernel')).toBe(false); // LoRA replaces it
    expect(changed('blocks.0.mlp.fc2.kernel')).toBe(true); // unstructured entries
    expect(changed('blocks.0.attn.qkv.kernel')).toBe(false);
    expect(mask.bits['blocks.0.mlp.fc2.kernel']!.reduce((a, b) => a + b, 0)).toBe(3);
  });
});
