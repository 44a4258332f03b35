import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import { checked, paths, randomNormal, rng, SpecError, ShapeError, type Params, type Tensor } from '../src/index.js';
import { cnn, crossEntropy, layers, mlp, replaceHead, vit } from '../src/models/index.js';
import { finiteDifferenceError } from './gradcheck.js';

const tiny = {
  mlp: () => mlp({ input: [6, 6, 1], hidden: [8, 5], classes: 3 }),
  cnn: () => cnn({ input: [6, 6, 1], channels: [3, 4], features: 5, classes: 3 }),
  vit: () => vit({ input: [6, 6, 1], patch: 3, width: 8, depth: 2, heads: 2, classes: 3 }),
};
type AnyModel = ReturnType<(typeof tiny)[keyof typeof tiny]>;
const batch = (n: number, seed = 0) => checked(randomNormal(rng(seed).fork('x'), [n, 6, 6, 1]), ['B', 6, 6, 1]);
const labels = (n: number) => checked(tf.tensor1d(Array.from({ length: n }, (_, i) => i % 3), 'int32'), ['B']);
const lossOf = (m: AnyModel, x: tf.Tensor, y: tf.Tensor) => (p: Params) =>
  crossEntropy(m.apply(p, x as Tensor<readonly ['B', 6, 6, 1]>).logits as Tensor<readonly ['B', number]>, y as Tensor<readonly ['B']>);

describe.each(Object.entries(tiny))('%s', (name, make) => {
  const model = make();

  test('init is reproducible from the seed and matches the spec', () => {
    const a = model.init(1);
    const b = model.init(1);
    const c = model.init(2);
    expect(paths(a)).toEqual(paths(model.spec));
    for (const p of paths(a)) {
      expect(a[p]!.shape).toEqual([...model.spec[p]!.shape]);
      expect(Array.from(a[p]!.dataSync())).toEqual(Array.from(b[p]!.dataSync()));
    }
    const differs = paths(a).some((p) => model.spec[p]!.role === 'kernel' && a[p]!.dataSync().some((v, i) => v !== c[p]!.dataSync()[i]));
    expect(differs).toBe(true);
  });

  test('apply gives features and logits of the declared widths', () => {
    const out = model.apply(model.init(0), batch(4));
    expect(out.features.shape).toEqual([4, model.features]);
    expect(out.logits.shape).toEqual([4, 3]);
  });

  test('apply rejects a wrong input shape and parameters of another spec', () => {
    const p = model.init(0);
    expect(() => model.apply(p, tf.zeros([4, 6, 6, 2]) as never)).toThrow(new ShapeError(`${name}.apply: argument x: expected [B, 6, 6, 1], got [4, 6, 6, 2]`));
    const other = make().withClasses(4).init(0);
    expect(() => model.apply(other, batch(2))).toThrow(SpecError);
  });

  test('gradients of every parameter match finite differences', () => {
    const p = model.init(3);
    const ps = paths(p);
    const x = batch(4, 5);
    const y = labels(4);
    const f = (...ts: tf.Tensor[]) => lossOf(model, x, y)(Object.fromEntries(ps.map((q, i) => [q, ts[i]!])));
    expect(finiteDifferenceError(f, ps.map((q) => p[q]!), 1e-3)).toBeLessThan(2e-3);
  });

  test('a new head leaves the backbone untouched and is seeded', () => {
    const p = model.init(0);
    const task = model.withClasses(7);
    const q = replaceHead(task, p, 9);
    for (const path of paths(p).filter((x) => !x.startsWith('head.'))) expect(q[path]).toBe(p[path]);
    expect(q['head.kernel']!.shape).toEqual([model.features, 7]);
    expect(Array.from(q['head.kernel']!.dataSync())).toEqual(Array.from(replaceHead(task, p, 9)['head.kernel']!.dataSync()));
    expect(task.apply(q, batch(2)).logits.shape).toEqual([2, 7]);
  });

  test('1,000 training steps leave the tensor count where it started', () => {
    const vars = Object.fromEntries(Object.entries(model.init(0)).map(([p, t]) => [p, tf.variable(t)])) as Params;
    const x = batch(8);
    const y = labels(8);
    const loss = lossOf(model, x, y);
    const before = tf.memory().numTensors;
    let first = 0;
    let last = 0;
    for (let i = 0; i < 1000; i++) {
      const value = tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => loss(vars) as tf.Scalar);
        for (const v of Object.values(vars)) (v as tf.Variable).assign(tf.sub(v, tf.mul(grads[(v as tf.Variable).name]!, 0.05)));
        return value.dataSync()[0]!;
      });
      if (i === 0) first = value;
      last = value;
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(last).toBeLessThan(first); // and it trained
  }, 180_000);
});

describe('neuron axes', () => {
  // Perturbing everything that feeds one neuron (one slice along the neuron
  // axis) must change that neuron's output alone; a spec naming a fan-in axis
  // as the neuron axis changes every output and fails.
  const cases = Object.entries(tiny).flatMap(([name, make]) => {
    const m = make();
    return paths(m.spec)
      .filter((p) => m.spec[p]!.shape.length >= 2 && (m.spec[p]!.role === 'kernel' || m.spec[p]!.role === 'head'))
      .map((p) => [`${name} ${p}`, m, p] as const);
  });
  test.each(cases)('%s', (_label, model, path) => {
    const params = model.init(0);
    const leaf = model.spec[path]!;
    const prefix = path.replace(/\.kernel$/, '');
    const rank = leaf.shape.length;
    const run = (p: Params) =>
      rank === 4
        ? layers.conv(p, prefix, randomNormal(rng(1), [2, 5, 5, leaf.shape[2]!]) as Tensor<readonly [number, number, number, number]>)
        : layers.dense(p, prefix, randomNormal(rng(1), [3, leaf.shape[0]!]) as Tensor<readonly [number, number]>);
    const n = leaf.shape[leaf.neuronAxis]! - 1;
    const bump = tf.tidy(() => {
      const ids = tf.range(0, leaf.shape[leaf.neuronAxis]!);
      const shape = leaf.shape.map((_, i) => (i === leaf.neuronAxis ? leaf.shape[i]! : 1));
      return tf.mul(tf.reshape(tf.cast(tf.equal(ids, n), 'float32'), shape), 0.5);
    });
    const moved = { ...params, [path]: tf.add(params[path]!, bump) };
    const diff = tf.abs(tf.sub(run(moved), run(params)));
    const perChannel = Array.from(tf.max(tf.reshape(diff, [-1, diff.shape[diff.rank - 1]!]), 0).dataSync());
    perChannel.forEach((d, c) => (c === n ? expect(d).toBeGreaterThan(0) : expect(d).toBe(0)));
  });
});

describe('dropout', () => {
  const model = mlp({ input: [6, 6, 1], hidden: [16], classes: 3, dropout: 0.5 });
  const p = model.init(0);
  const x = batch(4);
  test('is off in evaluation mode and reproducible from its rng in training mode', () => {
    const evalA = model.apply(p, x).logits.dataSync();
    expect(Array.from(model.apply(p, x, { training: false }).logits.dataSync())).toEqual(Array.from(evalA));
    const t1 = model.apply(p, x, { training: true, rng: rng(3) }).logits.dataSync();
    const t2 = model.apply(p, x, { training: true, rng: rng(3) }).logits.dataSync();
    expect(Array.from(t1)).toEqual(Array.from(t2));
    expect(Array.from(t1)).not.toEqual(Array.from(evalA));
    expect(() => model.apply(p, x, { training: true })).toThrow('dropout: training with dropout needs an rng');
  });
});

describe('configs', () => {
  test('bad configs are errors', () => {
    expect(() => vit({ input: [28, 28, 1], patch: 5, width: 8, depth: 1, heads: 2, classes: 2 })).toThrow('vit: patch 5 does not divide the 28×28 input');
    expect(() => vit({ input: [6, 6, 1], patch: 3, width: 9, depth: 1, heads: 2 as number, classes: 2 })).toThrow('vit: 2 heads do not divide width 9');
    expect(() => mlp({ input: [4], hidden: [], classes: 2 })).toThrow('mlp: hidden needs at least one width');
    expect(() => cnn({ input: [4, 4, 1], channels: [2, 2, 2], features: 3, classes: 2 })).toThrow('cnn: 3 pooling stages shrink the 4×4 input to nothing');
    expect(() => mlp({ input: [4], hidden: [3], classes: 0 })).toThrow('mlp: classes must be a positive integer, got 0');
  });
  test('ViT spec: roles and neuron axes as GPS needs them', () => {
    const m = tiny.vit();
    expect(m.spec['cls']).toMatchObject({ role: 'token', shape: [1, 1, 8] });
    expect(m.spec['pos']).toMatchObject({ role: 'embedding', shape: [1, 5, 8] });
    expect(m.spec['blocks.0.attn.qkv.kernel']).toMatchObject({ role: 'kernel', shape: [8, 24], neuronAxis: 1 });
    expect(m.spec['blocks.1.norm2.scale']).toMatchObject({ role: 'norm' });
    expect(m.spec['patch.kernel']).toMatchObject({ role: 'kernel', shape: [9, 8], neuronAxis: 1 });
    expect(m.spec['head.kernel']).toMatchObject({ role: 'head', neuronAxis: 1 });
    expect(m.spec['head.bias']).toMatchObject({ role: 'head' });
    expect(tiny.cnn().spec['convs.0.kernel']).toMatchObject({ shape: [3, 3, 1, 3], neuronAxis: 3 });
  });
});
