// Properties of the core: trees, shape checks, seeded randomness and the
// custom gradients, over random inputs. The seed is printed at the start of
// every run; FC_SEED=<seed> replays it.
import { fc, test } from '@fast-check/vitest';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect } from 'vitest';
import {
  checked,
  combine,
  comparePaths,
  conv2d,
  matmul,
  partitionTree,
  pathMatcher,
  paths,
  randomNormal,
  rng,
  ShapeError,
  tree,
  type Tensor,
} from '../src/index.js';
import { cpuReferenceGrads, grads, relErr } from '../test/gradcheck.js';

const segment = fc.oneof(fc.constantFrom('blocks', 'attn', 'mlp', 'kernel', 'bias', 'head', 'a', 'b'), fc.nat(12).map(String));
const path = fc.array(segment, { minLength: 2, maxLength: 4 }).map((s) => s.join('.'));
const entries = fc.uniqueArray(fc.tuple(path, fc.integer()), { selector: ([p]) => p, maxLength: 12 });

describe('trees', () => {
  test.prop([entries, fc.func(fc.boolean())])('combine(partitionTree(t)) = t, in the same order', (es, keep) => {
    const t = tree(es);
    const [a, b] = partitionTree(t, (v, p) => keep(v, p));
    const back = combine(a, b);
    expect(paths(back)).toEqual(paths(t));
    expect(back).toEqual(t);
    expect(paths(a).length + paths(b).length).toBe(paths(t).length);
  });

  test.prop([entries])('the order does not depend on the order entries come in', (es) => {
    const t = tree(es);
    expect(paths(tree([...es].reverse()))).toEqual(paths(t));
    const ps = paths(t);
    for (let i = 1; i < ps.length; i++) {
      expect(comparePaths(ps[i - 1]!, ps[i]!)).toBeLessThan(0);
      expect(comparePaths(ps[i]!, ps[i - 1]!)).toBeGreaterThan(0);
    }
  });

  test.prop([path])('a path matches itself and the ** glob', (p) => {
    expect(pathMatcher(p)(p)).toBe(true);
    expect(pathMatcher('**')(p)).toBe(true);
    expect(pathMatcher(p.split('.').map(() => '*').join('.'))(p)).toBe(true);
  });
});

describe('shape checks', () => {
  const dims = fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 });
  test.prop([dims, fc.array(fc.boolean(), { minLength: 4, maxLength: 4 })])('checked accepts its own shape, literal or symbolic', (shape, symbolic) => {
    const t = tf.zeros(shape);
    const pattern = shape.map((d, i) => (symbolic[i] ? `D${i}` : d));
    expect(checked(t, pattern)).toBe(t);
    t.dispose();
  });

  test.prop([dims, fc.nat(3), fc.integer({ min: 1, max: 3 })])('checked rejects any changed dim with a ShapeError naming it', (shape, at, delta) => {
    const i = at % shape.length;
    const actual = shape.map((d, j) => (j === i ? d + delta : d));
    const t = tf.zeros(actual);
    expect(() => checked(t, shape, 'x')).toThrow(ShapeError);
    expect(() => checked(t, shape, 'x')).toThrow(`checked: argument x: expected [${shape.join(', ')}], got [${actual.join(', ')}]`);
    t.dispose();
  });
});

describe('seeded randomness', () => {
  test.prop([fc.integer(), fc.string()])('one seed, one stream; a fork ignores the parent\'s draws', (seed, label) => {
    const a = rng(seed);
    const b = rng(seed);
    const xs = [a.uniform(), a.normal(), a.uniform()];
    expect([b.uniform(), b.normal(), b.uniform()]).toEqual(xs);
    expect(a.fork(label).uniform()).toBe(rng(seed).fork(label).uniform());
  });
});

describe('custom gradients over random shapes', () => {
  const conv = fc.record({
    b: fc.integer({ min: 1, max: 2 }),
    h: fc.integer({ min: 3, max: 6 }),
    w: fc.integer({ min: 3, max: 6 }),
    cin: fc.integer({ min: 1, max: 3 }),
    cout: fc.integer({ min: 1, max: 3 }),
    kh: fc.integer({ min: 1, max: 3 }),
    kw: fc.integer({ min: 1, max: 3 }),
    padding: fc.constantFrom('same' as const, 'valid' as const),
    seed: fc.nat(),
  });
  type T4 = Tensor<[number, number, number, number]>;
  test.prop([conv], { numRuns: 25 })('conv2d matches tfjs cpu gradients', async ({ b, h, w, cin, cout, kh, kw, padding, seed }) => {
    const r = rng(seed);
    const x = randomNormal(r.fork('x'), [b, h, w, cin]);
    const f = randomNormal(r.fork('f'), [kh, kw, cin, cout]);
    const ours = grads((a, c) => conv2d(a as T4, c as T4, padding), [x, f]);
    const ref = await cpuReferenceGrads((a, c) => tf.conv2d(a as tf.Tensor4D, c as tf.Tensor4D, 1, padding), [x, f]);
    expect(relErr(ours, ref)).toBeLessThan(1e-3);
  });

  const mm = fc.record({ m: fc.integer({ min: 1, max: 9 }), k: fc.integer({ min: 1, max: 9 }), n: fc.integer({ min: 1, max: 9 }), seed: fc.nat() });
  type T2 = Tensor<[number, number]>;
  test.prop([mm], { numRuns: 25 })('matmul matches tfjs cpu gradients', async ({ m, k, n, seed }) => {
    const r = rng(seed);
    const x = randomNormal(r.fork('x'), [m, k]);
    const w = randomNormal(r.fork('w'), [k, n]);
    const ours = grads((a, c) => matmul(a as T2, c as T2), [x, w]);
    const ref = await cpuReferenceGrads((a, c) => tf.matMul(a, c), [x, w]);
    expect(relErr(ours, ref)).toBeLessThan(1e-3);
  });
});
