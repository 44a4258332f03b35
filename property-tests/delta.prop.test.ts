// Sparse deltas round-trip exactly and reproduce the tuned parameters bit for bit.
import { fc, test } from '@fast-check/vitest';
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { paramSpec, paths, tree } from '../src/index.js';
import { maskOf } from '../src/selection/index.js';
import { applyDelta, extractDelta, loadDelta, saveDelta } from '../src/formats/index.js';

const setup = fc
  .uniqueArray(fc.tuple(fc.constantFrom('a.w', 'b.bias', 'head.kernel'), fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 2 })), { selector: ([p]) => p, minLength: 1, maxLength: 3 })
  .map((es) => paramSpec(es.map(([p, shape]) => [p, { shape, role: 'kernel', neuronAxis: 0 }] as const)))
  .chain((spec) => {
    const n = (p: string) => spec[p]!.shape.reduce((a, b) => a * b, 1);
    const arr = (p: string, finite = false) => fc.array(fc.oneof(fc.float(finite ? { noNaN: true, noDefaultInfinity: true } : {}), fc.constant(-0)), { minLength: n(p), maxLength: n(p) });
    return fc.record({
      spec: fc.constant(spec),
      base: fc.record(Object.fromEntries(paths(spec).map((p) => [p, arr(p)]))),
      // A delta holds finite values only (saveDelta refuses others); the base may hold anything.
      tunedValues: fc.record(Object.fromEntries(paths(spec).map((p) => [p, arr(p, true)]))),
      bits: fc.record(Object.fromEntries(paths(spec).map((p) => [p, fc.array(fc.boolean(), { minLength: n(p), maxLength: n(p) })]))),
    });
  });

const u32 = (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer));

test.prop([setup])('save → load → apply reproduces the tuned parameters on the selected entries, the base elsewhere, bit for bit', ({ spec, base, tunedValues, bits }) => {
  const b = tree(paths(spec).map((p) => [p, tf.tensor((base as Record<string, number[]>)[p]!, [...spec[p]!.shape])]));
  const mask = maskOf(spec, (_, p) => Uint8Array.from((bits as Record<string, boolean[]>)[p]!, Number));
  // The tuned model differs from the base only where the mask selects.
  const tuned = tree(
    paths(spec).map((p) => {
      const v = Float32Array.from((base as Record<string, number[]>)[p]!);
      mask.bits[p]!.forEach((m, i) => m && (v[i] = (tunedValues as Record<string, number[]>)[p]![i]!));
      return [p, tf.tensor(v, [...spec[p]!.shape])];
    }),
  );
  const delta = loadDelta(saveDelta(extractDelta(spec, b, tuned, mask)));
  const applied = applyDelta(spec, b, delta);
  for (const p of paths(spec)) expect(u32(applied[p]!)).toEqual(u32(tuned[p]!));
});
