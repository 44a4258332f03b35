// Tuned files: for any method config and any tuned values on what its mask
// selects (adapters included), save → load reproduces the tuned parameters
// bit for bit on the base; any truncation or bit flip is a FormatError that
// leaves no tensor behind. The seed is printed at the start of every run;
// FC_SEED=<seed> replays it.
import { fc, test } from '@fast-check/vitest';
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { FormatError, paths, type Params } from '../src/index.js';
import { mlp } from '../src/models/index.js';
import { floatsArb } from '../src/testing/index.js';
import { mergeLora } from '../src/adapters/index.js';
import { loadTuned, prepare, saveTuned, type MethodConfig } from '../src/methods/index.js';

const model = mlp({ input: [2, 2, 1], hidden: [3], classes: 2 });
const base = model.init(0);
const data = { images: Float32Array.from({ length: 8 * 4 }, (_, i) => ((i * 7) % 11) / 10), labels: Int32Array.from({ length: 8 }, (_, i) => i % 2), n: 8, shape: [2, 2, 1] as const };

const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
const lr = opt(fc.constantFrom(1e-3, 3e-2));
// Absent, not undefined: a config holds only the fields it sets.
const drop = (o: object): MethodConfig => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as MethodConfig;
const configArb: fc.Arbitrary<MethodConfig> = fc.oneof(
  fc.record({ method: fc.constant('gps' as const), k: opt(fc.integer({ min: 1, max: 3 })), loss: opt(fc.constantFrom('supcon' as const, 'ce' as const)), norms: opt(fc.boolean()), head: opt(fc.boolean()), learningRate: lr }).map(drop),
  fc.record({ method: fc.constant('gps-ablation' as const), ablation: fc.constantFrom('net' as const, 'layer' as const, 'neuron-random' as const, 'net-random' as const, 'magnitude' as const, 'head-ce' as const), k: opt(fc.integer({ min: 1, max: 2 })) }).map(drop),
  fc.record({ method: fc.constant('spt-lora' as const), budget: opt(fc.constantFrom(0.1, 0.5, 1)), rank: opt(fc.integer({ min: 1, max: 3 })), alpha: opt(fc.constantFrom(1, 10)) }).map(drop),
  fc.record({ method: fc.constant('lora' as const), rank: opt(fc.integer({ min: 1, max: 3 })), alpha: opt(fc.constantFrom(0.5, 4)), head: opt(fc.boolean()) }).map(drop),
  fc.constantFrom({ method: 'bitfit' as const }, { method: 'linear' as const }, { method: 'full' as const }),
);

const bits = (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer));

/** A run's stand-in: random finite values on every entry the mask selects, the starting values elsewhere. */
function tunedFor(t: ReturnType<typeof prepare<readonly [2, 2, 1], readonly [2, 2, 1], number, 2>>, values: Float32Array): Params {
  let at = 0;
  return Object.fromEntries(
    paths(t.model.spec).map((p) => {
      const v = Float32Array.from(t.params[p]!.dataSync() as Float32Array);
      t.mask.bits[p]!.forEach((m, i) => m && (v[i] = values[at++ % values.length]!));
      return [p, tf.tensor(v, t.params[p]!.shape)];
    }),
  );
}

test.prop([configArb, fc.nat(1000), floatsArb(64), fc.constantFrom('separate' as const, 'merged' as const)])(
  'save → load onto the base reproduces the tuned parameters bit for bit (merged: the merged ones)',
  (config, seed, values, lora) => {
    const before = tf.memory().numTensors;
    const t = prepare(config, { model, params: base, data, seed });
    const tuned = tunedFor(t, values);
    const back = loadTuned(saveTuned(t, tuned, { lora }), { model, params: base });
    const merged = t.lora && lora === 'merged';
    expect(back.merged).toBe(!!merged);
    expect(back.config).toEqual(t.config);
    expect(back.seed).toBe(seed);
    if (merged) {
      const want = mergeLora(t.lora!, tuned);
      for (const p of paths(model.spec)) expect(bits(back.params[p]!)).toEqual(bits(want[p]!));
      tf.dispose(t.lora!.kernels.map((k) => want[k]!));
    } else {
      for (const p of paths(t.model.spec)) expect(bits(back.params[p]!)).toEqual(bits(tuned[p]!));
    }
    tf.dispose([...Object.values(tuned), ...Object.values(t.params).filter((x) => !Object.values(base).includes(x)), ...Object.values(back.params).filter((x) => !Object.values(base).includes(x))]);
    expect(tf.memory().numTensors).toBe(before);
  },
);

test.prop([configArb, floatsArb(64), fc.nat(), fc.nat(7), fc.boolean()])('any truncation or bit flip is a FormatError and leaves no tensor behind', (config, values, at, bit, truncate) => {
  const t = prepare(config, { model, params: base, data });
  const tuned = tunedFor(t, values);
  const bytes = saveTuned(t, tuned);
  tf.dispose([...Object.values(tuned), ...Object.values(t.params).filter((x) => !Object.values(base).includes(x))]);
  const before = tf.memory().numTensors;
  const bad = truncate ? bytes.subarray(0, at % bytes.length) : bytes.slice();
  if (!truncate) bad[at % bytes.length]! ^= 1 << bit;
  expect(() => loadTuned(bad, { model, params: base })).toThrow(FormatError);
  expect(tf.memory().numTensors).toBe(before);
});
