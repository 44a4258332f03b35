import * as tf from '@tensorflow/tfjs-core';
import * as E from 'fp-ts/lib/Either.js';
import { describe, expect, test } from 'vitest';
import { BudgetError, MaskError, paths, SpecError, type Params, type Tensor } from '../src/index.js';
import { subset } from '../src/data/index.js';
import { buildTask } from '../src/node/index.js';
import { crossEntropy, vit, cnn } from '../src/models/index.js';
import {
  ablations,
  bitfit,
  byBlock,
  byPath,
  byRole,
  exactly,
  countMask,
  describeMask,
  except,
  fraction,
  fromScores,
  full,
  gps,
  gradient,
  kernelPart,
  linearProbe,
  magnitude,
  maskAlgebra,
  maskFromIndices,
  neuron,
  net,
  only,
  random,
  sameAs,
  scoresOf,
  select,
  selectionEnv,
  sensitivity,
  spt,
  union,
  and,
  or,
  not,
} from '../src/selection/index.js';

const model = vit({ input: [28, 28, 1], patch: 7, width: 8, depth: 2, heads: 2, classes: 4 });
const params = model.init(0);
const data = subset(buildTask('rotation', { testSize: 1 }).train, [...Array(24).keys()]);
const env = (seed = 0) => selectionEnv({ model, params, data, seed });
const trainable = (m: ReturnType<typeof select>, p: string) => m.bits[p]!.reduce((a, b) => a + b, 0);

/** Cross-entropy gradients of every leaf, one image at a time: the reference the criteria are checked against. */
function perImageGrads(set: typeof data): tf.Tensor[][] {
  const ps = paths(model.spec);
  return [...Array(set.n).keys()].map((i) => {
    const one = subset(set, [i]);
    const x = tf.tensor4d(one.images, [1, 28, 28, 1]) as Tensor<readonly ['B', 28, 28, 1]>;
    const y = tf.tensor1d(one.labels, 'int32') as Tensor<readonly ['B']>;
    const loss = (...ts: tf.Tensor[]) => crossEntropy(model.apply(Object.fromEntries(ps.map((p, k) => [p, ts[k]!])) as Params, x).logits as Tensor<readonly ['B', number]>, y) as tf.Scalar;
    return tf.grads(loss)(ps.map((p) => params[p]!));
  });
}

describe('criteria', () => {
  test('gradient is |Σ batch gradients| of SupCon on two views; sensitivity Σ (batch gradient)² of cross-entropy', () => {
    const e = env(3);
    const g = scoresOf(e, gradient({ batchSize: 8 }));
    const s = scoresOf(e, sensitivity({ batchSize: 8, samples: 16 }));
    const leaf = 'blocks.1.mlp.fc2.kernel';
    expect(g[leaf]!.length).toBe(8 * 4 * 8);
    expect(g[leaf]!.every((v) => v >= 0)).toBe(true);
    expect(s[leaf]!.every((v) => v >= 0)).toBe(true);
    // The head gets no gradient from the head-free SupCon loss.
    expect(g['head.kernel']!.every((v) => v === 0)).toBe(true);
    expect(s['head.kernel']!.some((v) => v > 0)).toBe(true);
  });

  test('sensitivity is Σ over batches of (batch gradient)², checked against per-image cross-entropy gradients', () => {
    // With one image per batch the sum does not depend on the (seeded) batch order.
    const four = subset(data, [0, 1, 2, 3]);
    const ours = scoresOf(selectionEnv({ model, params, data: four, seed: 2 }), sensitivity({ batchSize: 1, samples: 4 }));
    const ps = paths(model.spec);
    const perImage = perImageGrads(four);
    for (const path of ['blocks.0.mlp.fc1.kernel', 'head.kernel']) {
      const at = ps.indexOf(path);
      const sumOfSquares = tf.addN(perImage.map((g) => tf.square(g[at]!))).dataSync();
      const squareOfSum = tf.square(tf.addN(perImage.map((g) => g[at]!))).dataSync();
      ours[path]!.forEach((v, i) => expect(v).toBeCloseTo(sumOfSquares[i]!, 6));
      // The reference tells the two apart, so a criterion that squared the sum (or took |·|) would fail.
      expect(sumOfSquares.some((v, i) => Math.abs(v - squareOfSum[i]!) > 1e-6)).toBe(true);
    }
  });

  test('gradient sums signed batch gradients before the absolute value: |Σ ∇|, not Σ |∇|', () => {
    // With one image per batch the sum does not depend on the (seeded) batch order.
    const four = subset(data, [0, 1, 2, 3]);
    const ours = scoresOf(selectionEnv({ model, params, data: four, seed: 1 }), gradient({ loss: 'ce', batchSize: 1 }));
    const ps = paths(model.spec);
    const perImage = perImageGrads(four);
    const leaf = ps.indexOf('blocks.0.mlp.fc1.kernel');
    const absOfSum = tf.abs(tf.addN(perImage.map((g) => g[leaf]!))).dataSync();
    const sumOfAbs = tf.addN(perImage.map((g) => tf.abs(g[leaf]!))).dataSync();
    ours['blocks.0.mlp.fc1.kernel']!.forEach((v, i) => expect(v).toBeCloseTo(absOfSum[i]!, 5));
    expect(absOfSum.some((v, i) => Math.abs(v - sumOfAbs[i]!) > 1e-4)).toBe(true);
  });

  test('scores are computed once per environment and shared', () => {
    const e = env();
    let passes = 0;
    const counted = { ...env(), onProgress: (p: { done: number }) => (passes += p.done === 1 ? 1 : 0) };
    void e;
    const s1 = neuron(1, gradient({ batchSize: 12 }));
    const s2 = net(exactly(10), gradient({ batchSize: 12 }));
    select(union(s1, s2), counted);
    expect(passes).toBe(1);
    expect(counted.cache.size).toBe(1);
  });

  test('computing scores leaves no tensor behind', () => {
    const before = tf.memory().numTensors;
    const e = env(5);
    scoresOf(e, gradient({ batchSize: 12 }));
    scoresOf(e, sensitivity({ batchSize: 12, samples: 24 }));
    scoresOf(e, magnitude());
    expect(tf.memory().numTensors).toBe(before);
  });

  test('gradient criteria need a model and data', () => {
    expect(() => select(neuron(1, gradient()), selectionEnv({ spec: model.spec, params }))).toThrow(new SpecError('gradient:supcon: the selection environment needs a model and training data'));
  });

  test('user scores must cover the spec', () => {
    expect(() => select(neuron(1, fromScores({}, 'empty')), env())).toThrow("criterion 'empty': scores for leaf 'blocks.0.attn.proj.bias' should hold 8 values, got none");
  });
});

describe('presets', () => {
  const e = env();
  let cached: ReturnType<typeof select> | undefined;
  const gpsMask = () => (cached ??= select(gps({ k: 2 }), e));

  test('gps: kernels top-k per neuron, biases and head whole, norms and tokens frozen', () => {
    const g = gpsMask();
    for (const p of paths(model.spec)) {
      const leaf = model.spec[p]!;
      const n = trainable(g, p);
      if (leaf.role === 'kernel') {
        const neurons = leaf.shape[leaf.neuronAxis]!;
        const fanIn = leaf.shape.reduce((a, b) => a * b, 1) / neurons;
        expect(n).toBe(neurons * Math.min(2, fanIn));
      } else if (leaf.role === 'bias' || leaf.role === 'head') expect(n).toBe(g.bits[p]!.length);
      else expect(n).toBe(0);
    }
  });

  test('gps parts are configurable', () => {
    const m = select(gps({ k: 1, biases: false, head: false, norms: true }), e);
    expect(trainable(m, 'head.kernel')).toBe(0);
    expect(trainable(m, 'blocks.0.attn.qkv.bias')).toBe(0);
    expect(trainable(m, 'norm.scale')).toBe(8);
  });

  test('bitfit, linear probing and full', () => {
    const A = maskAlgebra(model.spec);
    const b = select(bitfit(), e);
    expect(paths(model.spec).every((p) => trainable(b, p) === (['bias', 'head'].includes(model.spec[p]!.role) ? b.bits[p]!.length : 0))).toBe(true);
    const l = select(linearProbe(), e);
    expect(countMask(l).trainableNoHead).toBe(0);
    expect(countMask(l).trainable).toBe(8 * 4 + 4);
    expect(A.eq.equals(select(full(), e), A.one)).toBe(true);
  });

  test('ablations match the GPS kernel count exactly and keep biases and head', () => {
    const g = gpsMask();
    const target = countMask(kernelPart(g)).trainable;
    const abl = ablations(g, { k: 2 });
    for (const [name, s] of Object.entries(abl)) {
      const m = select(s, e);
      expect([name, countMask(kernelPart(m)).trainable]).toEqual([name, target]);
      expect(countMask(m).trainable).toBe(countMask(g).trainable);
    }
    // Layer keeps GPS's per-leaf counts; net may move them between leaves.
    const layerMask = select(abl.layer, e);
    for (const p of paths(model.spec)) expect(trainable(layerMask, p)).toBe(trainable(g, p));
  });

  test('spt: LoRA for kernels past r(d_in + d_out)/α, whole vectors past length/β, the rest unstructured', () => {
    // Synthetic sensitivity: the budget of 43 lands on 30 entries of block 0's fc1,
    // all 8 of block 1's norm1.scale and 5 entries of block 1's fc2.
    const hot: Record<string, [number, number]> = { 'blocks.0.mlp.fc1.kernel': [1, 30], 'blocks.1.norm1.scale': [2, 8], 'blocks.1.mlp.fc2.kernel': [0.5, 5] };
    const scores = Object.fromEntries(
      paths(model.spec).map((p) => {
        const size = model.spec[p]!.shape.reduce((a, b) => a * b, 1);
        const [level, n] = hot[p] ?? [0, 0];
        return [p, new Float32Array(size).map((_, i) => (i < n ? level : 1e-3))];
      }),
    );
    const rank = 1;
    const alpha = 2;
    // fc1 [8, 32]: threshold 1·40/2 = 20; norm1.scale [8]: 8/5 = 1.6; budget 8 + 30 + 5 = 43
    const plan = spt({ budget: exactly(8 + 30 + 5), rank, alpha, beta: 5, criterion: fromScores(scores, 'synthetic') }).plan(e);
    expect(plan.lora).toEqual(['blocks.0.mlp.fc1.kernel']);
    expect(plan.vectors).toEqual(['blocks.1.norm1.scale']);
    expect(trainable(plan.mask, 'blocks.0.mlp.fc1.kernel')).toBe(0);
    expect(trainable(plan.mask, 'blocks.1.norm1.scale')).toBe(8);
    expect(trainable(plan.mask, 'blocks.1.mlp.fc2.kernel')).toBe(5); // under its threshold: unstructured
    expect(trainable(plan.mask, 'head.kernel')).toBe(32);
    expect(trainable(plan.mask, 'cls')).toBe(8);
    expect(trainable(plan.mask, 'pos')).toBe(0);
    expect(trainable(plan.mask, 'patch.kernel')).toBe(0);
  });
});

describe('filters and errors', () => {
  const e = env();
  test('only / except with path, role and block filters', () => {
    const m = select(only(and(byPath('blocks.*.attn.**'), byBlock([1])), neuron(1, random())), e);
    expect(paths(model.spec).filter((p) => trainable(m, p) > 0).sort()).toEqual(['blocks.1.attn.proj.bias', 'blocks.1.attn.proj.kernel', 'blocks.1.attn.qkv.bias', 'blocks.1.attn.qkv.kernel']);
    const x = select(except(or(byRole('head'), not(byRole('bias'))), neuron(1, random())), e);
    expect(paths(model.spec).filter((p) => trainable(x, p) > 0).every((p) => model.spec[p]!.role === 'bias')).toBe(true);
  });
  test('budgets that cannot be met are errors that say why', () => {
    expect(() => select(net(exactly(1e9), random()), e)).toThrow(/budget: count 1000000000 is more than the \d+ eligible entries/);
    expect(() => select(net(fraction(2), random()), e)).toThrow(new BudgetError('budget: fraction must be in [0, 1], got 2'));
    const other = cnn({ input: [28, 28, 1], channels: [2], features: 3, classes: 2 });
    const foreign = select(full(), selectionEnv({ spec: other.spec, params: other.init(0) }));
    expect(() => select(net(sameAs(foreign), random()), e)).toThrow(MaskError);
    expect(() => maskFromIndices(model.spec, { 'head.bias': [4] })).toThrow("maskFromIndices: index 4 is outside leaf 'head.bias' of 4 entries");
  });
  test('one error model: a criterion throws, the selector returns Left, select throws it; other exceptions pass unchanged', () => {
    const throwing = fromScores(() => {
      throw new BudgetError('my criterion: no data');
    });
    const ctx = { env: e, eligible: maskAlgebra(model.spec).one };
    const result = union(neuron(1, random()), neuron(1, throwing))(ctx);
    expect(E.isLeft(result) && result.left.message).toBe('my criterion: no data');
    expect(() => select(union(neuron(1, random()), neuron(1, throwing)), e)).toThrow(new BudgetError('my criterion: no data'));
    const bug = fromScores(() => {
      throw new TypeError('a bug in user code');
    });
    expect(() => neuron(1, bug)(ctx)).toThrow(new TypeError('a bug in user code'));
  });
});

describe('reports', () => {
  test('the one-line summary and per-depth counts', () => {
    const m = select(linearProbe(), env());
    const total = paths(model.spec).reduce((s, p) => s + model.spec[p]!.shape.reduce((a, b) => a * b, 1), 0);
    expect(describeMask(m)).toBe(`trainable params: 36 || all params: ${total.toLocaleString('en-US')} || trainable%: ${((100 * 36) / total).toFixed(4)} (without the head: 0 of ${(total - 36).toLocaleString('en-US')}, 0.0000%)`);
    const r = countMask(select(gps({ k: 1 }), env()));
    expect(r.perDepth.map((d) => d.depth)).toEqual([0, 1, null]);
    expect(r.perDepth.reduce((s, d) => s + d.trainable, 0)).toBe(r.trainable);
  });
});

