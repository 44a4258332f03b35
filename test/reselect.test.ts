// Re-selection during training: fineTune's `reselect` and carryState, against hand-written references.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import { BudgetError, ConfigError, paths, rng, tree, type Params } from '../src/index.js';
import { batches, dataSet } from '../src/data/index.js';
import { mlp, type Model } from '../src/models/index.js';
import { byRole, countOnes, fromScores, magnitude, maskAlgebra, maskOf, net, neuron, only, random, select, selectionEnv, exactly, except, type Mask, type Selector } from '../src/selection/index.js';
import { adafactor, adam, adamw, applyUpdates, carryState, disposeReplaced, fineTune, flatten, trainOnly, trainStep, type GradientTransformation, type MaskedState, type OptState } from '../src/optim/index.js';
import fc from 'fast-check';
import { maskFor, scoresFor, specArb, toParams } from '../src/testing/index.js';
import { applyDelta, extractDelta } from '../src/formats/index.js';

const model = mlp({ input: [4, 4, 1], hidden: [6], classes: 3 });
const base = model.init(0);
const g = rng(1);
const train = dataSet({ images: Float32Array.from({ length: 40 * 16 }, () => g.normal()), labels: Array.from({ length: 40 }, (_, i) => i % 3), shape: [4, 4, 1], classes: 3 });
const val = dataSet({ images: Float32Array.from({ length: 12 * 16 }, () => g.normal()), labels: Array.from({ length: 12 }, (_, i) => i % 3), shape: [4, 4, 1], classes: 3 });
const total = (m: Mask) => paths(m.spec).reduce((n, p) => n + countOnes(m.bits[p]!), 0);
const bitsOf = (p: Params) => Object.fromEntries(paths(p).map((k) => [k, new Uint32Array(Float32Array.from(p[k]!.dataSync()).buffer)]));

/** `m` that records a bit copy of the parameters of every forward pass: those a training step starts from. */
function recording(m: Model<readonly [4, 4, 1], number, number>) {
  const seen: Record<string, Uint32Array>[] = [];
  const apply = ((p: Params, x: tf.Tensor, options?: object) => {
    seen.push(bitsOf(p));
    return (m.apply as (...a: unknown[]) => unknown)(p, x, options);
  }) as typeof m.apply;
  return { model: { ...m, apply }, seen };
}

/**
 * Entries outside the mask in force during a step that moved in that step
 * (`starts[k]`: the parameters step k+1 began from; `end`: the returned ones).
 */
function movedWhileFrozen(starts: Record<string, Uint32Array>[], end: Params, first: Mask, events: { step: number; mask: Mask }[]): number {
  const snaps = [...starts, bitsOf(end)];
  let moved = 0;
  for (let k = 0; k < starts.length; k++) {
    const m = [...events].reverse().find((e) => e.step <= k)?.mask ?? first;
    for (const p of paths(m.spec)) snaps[k]![p]!.forEach((v, i) => void (!m.bits[p]![i] && v !== snaps[k + 1]![p]![i] && moved++));
  }
  return moved;
}

/** 8 entries of the head, then 8 of the backbone, and so on: whole trained leaves are dropped at every re-selection. */
function alternating(): Selector {
  let calls = 0;
  return (ctx) => (calls++ % 2 === 0 ? only(byRole('head'), net(exactly(8), random())) : except(byRole('head'), net(exactly(8), random())))(ctx);
}

const noise = { progressBar: false, sparseGradients: false, cacheFeatures: false } as const;

describe('fineTune with reselect', () => {
  // neuron keeps every leaf partly selected; net's few entries move between leaves, so whole leaves are dropped and taken up.
  test.each([
    ['neuron(2, random())', neuron(2, random())],
    ['net(exactly(6), random())', net(exactly(6), random())],
    ['head and backbone in turn', alternating()],
  ] as const)('%s: keeps the budget over every re-selection, and no entry outside the current mask moves (bit for bit); dropped entries keep their trained values', (_name, selector) => {
    const { model: rec, seen } = recording(model);
    const events: { step: number; mask: Mask }[] = [];
    const first = select(selector, selectionEnv({ model, params: base, seed: 0 }));
    const r = fineTune({ ...noise, model: rec, params: base, mask: first, train, epochs: 3, batchSize: 8, learningRate: 0.05, reselect: { every: 4, selector }, onStep: (s) => s.reselection && events.push(s.reselection) });
    // 15 steps, re-selecting after 4, 8 and 12 (never after the last).
    expect(seen).toHaveLength(15);
    expect(r.reselections.map((x) => x.step)).toEqual([4, 8, 12]);
    for (const e of events) expect(total(e.mask)).toBe(total(first));
    for (const x of r.reselections) {
      expect(x.selected).toBe(total(first));
      expect(x.kept + x.added).toBe(x.selected);
      expect(x.dropped).toBe(x.added);
      expect(x.added).toBeGreaterThan(0); // a new seed each time: the mask does change
    }
    expect(movedWhileFrozen(seen, r.params, first, events)).toBe(0);
    const leaves = (m: Mask) => paths(m.spec).filter((p) => countOnes(m.bits[p]!) > 0).join();
    if (!_name.startsWith('neuron')) expect(new Set([first, ...events.map((e) => e.mask)].map(leaves)).size).toBeGreaterThan(1);
    // r.mask is every entry that trained; entries it lacks are the base's, and some dropped ones kept trained values.
    const end = bitsOf(r.params);
    const start = bitsOf(base);
    const last = events.at(-1)!.mask;
    let keptTrained = 0;
    for (const p of paths(model.spec)) {
      end[p]!.forEach((v, i) => {
        if (!r.mask.bits[p]![i]) expect(v).toBe(start[p]![i]);
        if (r.mask.bits[p]![i] && !last.bits[p]![i] && v !== start[p]![i]) keptTrained++;
      });
    }
    expect(keptTrained).toBeGreaterThan(0);
    // The delta over r.mask restores the tuned parameters exactly.
    const restored = applyDelta(model.spec, base, extractDelta(model.spec, base, r.params, r.mask));
    for (const p of paths(model.spec)) expect(bitsOf(restored)[p]).toEqual(end[p]);
  });

  test('equals a hand-written loop of trainStep and carryState, bit for bit', () => {
    const selector = neuron(1, magnitude());
    const inner = () => adam(0.05);
    const r = fineTune({ ...noise, model, params: base, mask: selector, train, epochs: 2, batchSize: 8, optimizer: inner(), seed: 3, reselect: { every: 3 } });
    // By hand: fineTune's shuffling, and the same selector on the current weights every 3 steps.
    let mask = select(selector, selectionEnv({ model, params: base }));
    let optimizer = trainOnly(inner(), mask);
    let params: Params = base;
    let state: OptState | undefined;
    let step = 0;
    const adds: number[] = [];
    for (let epoch = 1; epoch <= 2; epoch++) {
      for (const { x, y } of batches(train, 8, { rng: rng(3).fork('fineTune').fork(`epoch${epoch}`) })) {
        ({ params, state } = trainStep({ model, params, optimizer, state, x, y, trainable: mask }));
        if (++step % 3 === 0 && step < 10) {
          const next = select(selector, selectionEnv({ model, params }));
          ({ optimizer, state } = carryState({ inner: inner(), state: state!, from: mask, to: next, params }));
          adds.push(total(maskAlgebra(model.spec).meet(next, maskAlgebra(model.spec).not(mask))));
          mask = next;
        }
      }
    }
    tf.dispose(state);
    expect(r.reselections.map((x) => x.added)).toEqual(adds);
    const [a, b] = [bitsOf(r.params), bitsOf(params)];
    for (const p of paths(model.spec)) expect(a[p], p).toEqual(b[p]);
  });

  test('leaks nothing: flat across steps and re-selections, and when the selector throws mid-training', () => {
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    const r = fineTune({ ...noise, model, params: base, mask: neuron(2, random()), train, epochs: 2, batchSize: 8, reselect: { every: 2 }, onStep: () => counts.push(tf.memory().numTensors) });
    expect(new Set(counts.slice(1)).size).toBe(1);
    expect(tf.memory().numTensors - before).toBe(paths(r.params).filter((p) => r.params[p] !== base[p]).length);
    tf.dispose(paths(r.params).filter((p) => r.params[p] !== base[p]).map((p) => r.params[p]!));
    let calls = 0;
    const throwing = neuron(
      2,
      fromScores(() => {
        if (++calls === 3) throw new Error('criterion failed');
        return Object.fromEntries(paths(model.spec).map((p) => [p, Float32Array.from(base[p]!.dataSync(), Math.abs)]));
      }),
    );
    expect(() => fineTune({ ...noise, model, params: base, mask: throwing, train, val, keepBest: true, epochs: 3, batchSize: 8, reselect: { every: 3 } })).toThrow('criterion failed');
    expect(calls).toBe(3);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('a budget that changes is a BudgetError naming the step; a fixed Mask needs a selector; nothing leaks', () => {
    const before = tf.memory().numTensors;
    let n = 10;
    const growing = () => net(exactly(n++), random());
    expect(() => fineTune({ ...noise, model, params: base, mask: select(growing(), selectionEnv({ model, params: base })), train, epochs: 1, batchSize: 8, reselect: { every: 2, selector: (ctx) => growing()(ctx) } })).toThrow(
      new BudgetError(
        'fineTune: re-selection 1 (after step 2) selected 11 entries where the first mask selected 10; re-selection keeps the budget fixed, so its selector must select a fixed count (neuron, layer or net with exactly, fraction or sameAs)',
      ),
    );
    expect(tf.memory().numTensors).toBe(before);
    const fixed = maskOf(model.spec, (l) => l.role === 'head');
    expect(() => fineTune({ ...noise, model, params: base, mask: fixed, train, reselect: { every: 2 } })).toThrow(new ConfigError('fineTune: reselect needs a selector (reselect.selector) when mask is a fixed Mask'));
    expect(() => fineTune({ ...noise, model, params: base, mask: fixed, train, reselect: { every: 0, selector: random as never } })).toThrow('fineTune: reselect: every must be a positive integer, got 0');
  });

  test('keepBest returns the best epoch\'s parameters and the entries trained up to it', () => {
    const r = fineTune({ ...noise, model, params: base, mask: neuron(2, random()), train, val, epochs: 3, batchSize: 8, learningRate: 0.05, keepBest: true, reselect: { every: 3 } });
    const scores = r.history.map((h) => h.valAccuracy!);
    expect(scores[r.epoch - 1]).toBe(Math.max(...scores));
    const end = bitsOf(r.params);
    const start = bitsOf(base);
    for (const p of paths(model.spec)) end[p]!.forEach((v, i) => !r.mask.bits[p]![i] && expect(v).toBe(start[p]![i]));
    // Every re-selection up to the returned epoch is in its mask.
    expect(total(r.mask)).toBeGreaterThanOrEqual(total(select(neuron(2, random()), selectionEnv({ model, params: base }))));
    tf.dispose(paths(r.params).filter((p) => r.params[p] !== base[p]).map((p) => r.params[p]!));
  });

  test('head-only features stay cached while the mask stays on the head, and give way to the images when it leaves', () => {
    const n = total(maskOf(model.spec, (l) => l.role === 'head'));
    const run = (cacheFeatures: boolean) =>
      fineTune({ ...noise, cacheFeatures, model, params: base, mask: only(byRole('head'), net(exactly(n), random())), train, val, epochs: 2, batchSize: 8, reselect: { every: 3, selector: net(exactly(n), random()) } });
    const [cached, plain] = [run(true), run(false)];
    expect(cached.cachedFeatures).toBe(true);
    expect(plain.cachedFeatures).toBe(false);
    expect(cached.reselections).toEqual(plain.reselections);
    // The same steps on the same batches: equal up to float rounding (features computed apart).
    for (const p of paths(model.spec)) {
      const [a, b] = [cached.params[p]!.dataSync(), plain.params[p]!.dataSync()];
      a.forEach((v, i) => expect(v).toBeCloseTo(b[i]!, 4));
    }
  });
});

describe('carryState', () => {
  // Adam by hand: one step count, moments per entry; a re-selection keeps the moments of
  // entries in both masks, drops the others', and starts new entries at zero.
  const lr = 0.1;
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  const masks = [
    [1, 1, 0, 0, 1, 0],
    [0, 1, 1, 0, 1, 0], // drops 0, adds 2
    [1, 1, 0, 0, 0, 1], // entry 0 comes back: its state starts at zero again
  ];
  const grads = Array.from({ length: 9 }, (_, t) => Array.from({ length: 6 }, (_, i) => Math.sin(t * 6 + i + 1)));
  const p0 = [0.5, -1, 2, 0.25, -0.5, 1.5];
  function reference(): number[] {
    const p = [...p0];
    let m = [0, 0, 0, 0, 0, 0];
    let v = [0, 0, 0, 0, 0, 0];
    let sel = masks[0]!;
    grads.forEach((gs, t) => {
      if (t > 0 && t % 3 === 0) {
        const next = masks[t / 3]!;
        m = m.map((x, i) => (sel[i] && next[i] ? x : 0));
        v = v.map((x, i) => (sel[i] && next[i] ? x : 0));
        sel = next;
      }
      for (let i = 0; i < 6; i++) {
        if (!sel[i]) continue;
        m[i] = b1 * m[i]! + (1 - b1) * gs[i]!;
        v[i] = b2 * v[i]! + (1 - b2) * gs[i]! ** 2;
        // The count carries on over re-selections (t + 1 for every entry).
        p[i] = p[i]! - (lr * (m[i]! / (1 - b1 ** (t + 1)))) / (Math.sqrt(v[i]! / (1 - b2 ** (t + 1))) + eps);
      }
    });
    return p;
  }
  const spec = { w: { shape: [2, 3], dtype: 'float32', role: 'kernel', neuronAxis: 1 } } as const;
  const maskAt = (i: number): Mask => maskOf(spec, () => Uint8Array.from(masks[i]!));

  test.each([
    [true, 'adam', () => adam(lr)],
    [false, 'adam', () => adam(lr)],
    [true, 'flatten(adam)', () => flatten(adam(lr))],
    [false, 'flatten(adam, { maxLeafSize: 2 })', () => flatten(adam(lr), { maxLeafSize: 2 })],
  ])('equals Adam by hand over two re-selections (sparse state: %s, %s), and leaks nothing', (sparseState, _name, make) => {
    const want = reference();
    const before = tf.memory().numTensors;
    let params: Params = tree([['w', tf.tensor(p0, [2, 3])]]);
    let optimizer = trainOnly(make(), maskAt(0), { sparseState });
    let state = tf.tidy(() => optimizer.init(params, spec));
    grads.forEach((gs, t) => {
      if (t > 0 && t % 3 === 0) ({ optimizer, state } = carryState({ inner: make(), state, from: maskAt(t / 3 - 1), to: maskAt(t / 3), params }));
      const out = tf.tidy(() => {
        const [u, s] = optimizer.update({ w: tf.tensor(gs, [2, 3]) }, state, params);
        return { p: applyUpdates(params, u), s };
      });
      disposeReplaced(state, out.s);
      params['w']!.dispose();
      params = out.p;
      state = out.s;
    });
    Array.from(params['w']!.dataSync()).forEach((x, i) => expect(x).toBeCloseTo(want[i]!, 5));
    tf.dispose(state);
    params['w']!.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('the state of kept entries is the old state bit for bit; dropped entries lose theirs; added entries start at zero', () => {
    const params = tree([['w', tf.tensor(p0, [2, 3])]]);
    const tx = trainOnly(adam(lr), maskAt(0));
    let state = tx.init(params, spec);
    for (const gs of grads.slice(0, 3)) state = tx.update({ w: tf.tensor(gs, [2, 3]) }, state, params)[1];
    // adam is chain(scaleByAdam, scaleByLearningRate): the moments are in the first link's state.
    const adamState = (s: OptState) => (s as unknown as { inner: [{ count: number; mu: Record<string, tf.Tensor> }] }).inner[0];
    const mu = (s: OptState) => Array.from(adamState(s).mu['w']!.dataSync());
    const old = mu(state);
    const count = adamState(state).count;
    expect(count).toBe(3);
    const carried = carryState({ inner: adam(lr), state, from: maskAt(0), to: maskAt(1), params });
    // Old slots: entries 0, 1, 4; new slots: entries 1, 2, 4.
    expect(mu(carried.state)).toEqual([old[1], 0, old[2]]);
    expect(adamState(carried.state).count).toBe(count);
    tf.dispose(carried.state);
  });

  test('a state that is not one value per entry (Adafactor, a matrix selected whole) is a ConfigError, and nothing is freed or left', () => {
    const params = tree([['w', tf.tensor(p0, [2, 3])]]);
    const whole = maskOf(spec, () => true);
    const tx = trainOnly(adafactor(0.1, { minDimSizeToFactor: 2 }), whole);
    const state = tf.tidy(() => tx.init(params, spec));
    const before = tf.memory().numTensors;
    expect(() => carryState({ inner: adafactor(0.1, { minDimSizeToFactor: 2 }), state, from: whole, to: maskAt(0), params })).toThrow(ConfigError);
    expect(() => carryState({ inner: adafactor(0.1, { minDimSizeToFactor: 2 }), state, from: whole, to: maskAt(0), params })).toThrow(/carryState: the optimizer state at inner\[0\]\.v\.w \(leaf 'w'\) has no counterpart under the old mask/);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(state);
  });

  // Flattened state carries exactly as unflattened: the same parameters, bit for bit, after
  // steps on one mask, a re-selection to another and steps on that, whichever leaves are
  // flattened (a leaf can move between the vector and a leaf of its own with the mask).
  test.each([true, false])('flatten(adamw) carries over as adamw does, bit for bit (sparse state: %s)', (sparseState) => {
    const setup = specArb({ maxLeaves: 3, maxRank: 2, minDim: 1, maxDim: 3 }).chain((spec) =>
      fc.record({
        spec: fc.constant(spec),
        params: scoresFor(spec, { ties: false }),
        grads: fc.array(scoresFor(spec, { ties: false }), { minLength: 4, maxLength: 4 }),
        from: maskFor(spec),
        to: maskFor(spec),
        maxLeafSize: fc.constantFrom(0, 2, 4, Infinity),
      }),
    );
    fc.assert(
      fc.property(setup, ({ spec, params, grads, from, to, maxLeafSize }) => {
        const before = tf.memory().numTensors;
        const run = (make: () => GradientTransformation) => {
          let p = toParams(spec, params);
          let optimizer = trainOnly(make(), from, { sparseState });
          let state: MaskedState = tf.tidy(() => optimizer.init(p, spec));
          grads.forEach((gs, t) => {
            if (t === 2) ({ optimizer, state } = carryState({ inner: make(), state, from, to, params: p, spec }));
            const out = tf.tidy(() => {
              const [u, s] = optimizer.update(toParams(spec, gs), state, p);
              return { p: applyUpdates(p, u), s };
            });
            disposeReplaced(state, out.s);
            tf.dispose(Object.values(p));
            [p, state] = [out.p, out.s];
          });
          tf.dispose(state);
          const out = paths(spec).map((k) => Array.from(new Uint32Array(Float32Array.from(p[k]!.dataSync()).buffer)).join());
          tf.dispose(Object.values(p));
          return out;
        };
        const a = run(() => flatten(adamw(0.05, { weightDecay: 0.1 }), { maxLeafSize }));
        const b = run(() => adamw(0.05, { weightDecay: 0.1 }));
        return a.join('|') === b.join('|') && tf.memory().numTensors === before;
      }),
    );
  });
});
