// Laws of data sets of any sample shape: batching, splitting, views, building, resizing.
import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { batches, dataSet, resizeImage, rng, splitDataSet, twoViews, type DataSet } from '../src/index.js';
import { seedArb } from '../src/testing/index.js';

const shapeArb = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 5 })),
  fc.tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 4 })),
  fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 2, maxLength: 4 }),
);

/** A data set of `shape` with n in [0, 12], values in [0, 1], int32 classes or float32 targets. */
const setArb = fc
  .tuple(shapeArb, fc.integer({ min: 0, max: 12 }), fc.boolean(), fc.integer({ min: 1, max: 3 }))
  .chain(([shape, n, regression, t]) => {
    const per = shape.reduce((p, d) => p * d, 1);
    return fc
      .tuple(
        fc.float32Array({ min: 0, max: 1, noNaN: true, minLength: n * per, maxLength: n * per }),
        regression
          ? fc.float32Array({ min: -5, max: 5, noNaN: true, noDefaultInfinity: true, minLength: n * t, maxLength: n * t })
          : fc.array(fc.integer({ min: 0, max: 4 }), { minLength: n, maxLength: n }),
      )
      .map(([images, labels]) => dataSet({ images, labels, shape }) as DataSet<readonly number[], Int32Array | Float32Array>);
  });

describe('data sets of any shape', () => {
  test.prop([setArb, fc.integer({ min: 1, max: 5 }), seedArb, fc.boolean()])('batching any shape round-trips every sample and its labels once', (set, size, seed, shuffle) => {
    const per = set.images.length / Math.max(set.n, 1);
    const t = set.n === 0 ? 0 : set.labels.length / set.n;
    const seen = new Set<number>();
    for (const b of batches(set, size, shuffle ? { rng: rng(seed) } : {})) {
      expect(b.x.shape).toEqual([b.indices.length, ...set.shape]);
      const xs = b.x.dataSync();
      const ys = b.y.dataSync();
      b.indices.forEach((j, i) => {
        expect(seen.has(j)).toBe(false);
        seen.add(j);
        expect(Array.from(xs.subarray(i * per, (i + 1) * per))).toEqual(Array.from(set.images.subarray(j * per, (j + 1) * per)));
        expect(Array.from(ys.subarray(i * t, (i + 1) * t))).toEqual(Array.from(set.labels.subarray(j * t, (j + 1) * t)));
      });
    }
    expect(seen.size).toBe(set.n);
  });

  test.prop([setArb, fc.double({ min: 0, max: 0.5, noNaN: true }), fc.double({ min: 0, max: 0.5, noNaN: true }), seedArb])(
    'the split is disjoint, covers every sample once, and is the same for the same seed',
    (set, val, test, seed) => {
      // Tag each sample by its index so the parts can be traced back.
      const tagged = { ...set, images: Float32Array.from({ length: set.n }, (_, i) => i), shape: [1] } as DataSet<readonly number[], Int32Array | Float32Array>;
      const a = splitDataSet(tagged, { val, test, seed });
      const b = splitDataSet(tagged, { val, test, seed });
      const all = [...a.train.images, ...a.val.images, ...a.test.images].sort((x, y) => x - y);
      expect(all).toEqual([...Array(set.n).keys()]);
      expect([a.val.n, a.test.n]).toEqual([Math.round(val * set.n), Math.round(test * set.n)]);
      expect([b.train.images, b.val.images, b.test.images]).toEqual([a.train.images, a.val.images, a.test.images]);
    },
  );

  test.prop([setArb.filter((s) => s.shape.length === 1 || s.shape.length === 3), seedArb])('two views: 2n samples of the same shape, labels repeated, seeded', (set, seed) => {
    const v = twoViews(set, rng(seed));
    expect([v.n, v.shape, v.images.length]).toEqual([2 * set.n, set.shape, 2 * set.images.length]);
    expect(Array.from(v.labels)).toEqual([...set.labels, ...set.labels]);
    expect(twoViews(set, rng(seed)).images).toEqual(v.images);
  });

  test.prop([shapeArb, fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 3 }), fc.constantFrom(Number.NaN, Infinity, -Infinity)])(
    'dataSet refuses any non-finite value, wherever it is',
    (shape, n, at, bad) => {
      const per = shape.reduce((p, d) => p * d, 1);
      const images = new Float32Array(n * per);
      images[at % images.length] = bad;
      expect(() => dataSet({ images, labels: new Int32Array(n), shape })).toThrow('is not finite');
    },
  );

  test.prop([fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 3 })), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.constantFrom('area' as const, 'bilinear' as const)])(
    'resizing stays within the source range; area-enlarging by whole factors and shrinking back is the identity',
    ([h, w, c], oh, ow, method) => {
      const r = rng(h * 100 + w);
      const src = Float32Array.from({ length: h * w * c }, () => r.uniform());
      const out = resizeImage(src, [h, w, c], [oh, ow], method);
      expect(out.length).toBe(oh * ow * c);
      const [lo, hi] = [Math.min(...src), Math.max(...src)];
      for (const v of out) expect(v >= lo - 1e-6 && v <= hi + 1e-6).toBe(true);
      const big = resizeImage(src, [h, w, c], [h * oh, w * ow], 'area');
      const back = resizeImage(big, [h * oh, w * ow, c], [h, w], 'area');
      back.forEach((v, i) => expect(v).toBeCloseTo(src[i]!, 5));
    },
  );
});
