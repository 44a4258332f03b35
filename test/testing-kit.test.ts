// The testing kit: its suites pass on sparsetune's implementations and fail
// on deliberately broken ones, naming the law.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  byRole,
  exactly,
  fraction,
  gradient,
  layer,
  magnitude,
  maskAlgebra,
  net,
  neuron,
  only,
  random,
  selectionEnv,
  type SelectionEnv,
} from '../src/index.js';
import { vit } from '../src/models/index.js';
import { subset } from '../src/data/index.js';
import { buildTask } from '../src/node/index.js';
import { adam, adamw, applyUpdates, momentum, sgd } from '../src/optim/index.js';
import {
  budgetArb,
  checkLaws,
  criterionLaws,
  envArb,
  maskAlgebraLaws,
  optimizerLaws,
  selectorLaws,
  specArb,
} from '../src/testing/index.js';
import { brokenAlgebra, flakySelector, leakySelector, multiplyMasking, positionalSgd } from './fixtures/broken.js';

const quick = { numRuns: 30 };

describe('the suites pass on the real implementations', () => {
  test('mask algebra', () => checkLaws(maskAlgebraLaws(maskAlgebra)));
  test('selectors: neuron, layer and net over magnitude and random', () => {
    checkLaws(selectorLaws(only(byRole('kernel'), neuron(2, magnitude())), { filter: byRole('kernel'), atK: (k) => neuron(k, magnitude()) }), quick);
    checkLaws(selectorLaws(net(exactly(3), random()), { env: envArb({ minDim: 3, maxDim: 4 }), budget: () => 3 }), quick);
    checkLaws(selectorLaws(layer(fraction(0.5), random()), { budget: (env: SelectionEnv) => Object.values(env.spec).reduce((s, l) => s + Math.floor(0.5 * l.shape.reduce((a, b) => a * b, 1) + 0.5), 0) }), quick);
  });
  test('criteria: magnitude and random agree with the reference definitions', () => {
    checkLaws(criterionLaws(magnitude()), quick);
    checkLaws(criterionLaws(random()), quick);
  });
  test.each([
    ['sgd', () => sgd(0.1)],
    ['momentum', () => momentum(0.1, 0.9, true)],
    ['adam', () => adam(0.05)],
    ['adamw', () => adamw(0.05, { weightDecay: 0.1 })],
  ])('optimizer laws: %s', (_name, make) => {
    checkLaws(optimizerLaws(make), quick);
    checkLaws(optimizerLaws(make, { sparseState: true }), quick);
  });
  test('a gradient criterion on a real model, through a custom environment', () => {
    const model = vit({ input: [28, 28, 1], patch: 7, width: 8, depth: 1, heads: 2, classes: 4 });
    const data = subset(buildTask('rotation', { testSize: 1 }).train, [...Array(16).keys()]);
    const params = model.init(0);
    const envs = fc.integer({ min: 0, max: 3 }).map((seed) => selectionEnv({ model, params, data, seed }));
    checkLaws(selectorLaws(neuron(1, gradient({ batchSize: 8 })), { env: envs }), { numRuns: 4 });
  });
  test('arbitraries: invalid budgets are always invalid, specs include empty leaves', () => {
    fc.assert(fc.property(budgetArb(20, { valid: false }), (b) => (b.kind === 'count' ? !Number.isInteger(b.n) || b.n < 0 || b.n > 20 : b.kind === 'fraction' && (b.f < 0 || b.f > 1))));
    const sizes = fc.sample(specArb(), { numRuns: 300, seed: 1 }).flatMap((s) => Object.values(s).map((l) => l.shape.reduce((a, b) => a * b, 1)));
    expect(sizes).toContain(0);
  });
});

describe('the suites catch broken implementations, naming the law', () => {
  test('a complement that drops an entry', () => {
    expect(() => checkLaws(maskAlgebraLaws(brokenAlgebra))).toThrow(/law 'complement \(join\)' failed: .*seed/s);
  });
  test('a selector that picks outside its filter and budget', () => {
    expect(() => checkLaws(selectorLaws(only(byRole('kernel'), leakySelector), { filter: byRole('kernel') }), quick)).toThrow(/law 'selects nothing outside the filter' failed/);
    expect(() => checkLaws(selectorLaws(leakySelector, { budget: (env) => Object.values(env.spec).reduce((s, l) => s + l.shape[l.neuronAxis]! * 0, 0) }), quick)).toThrow(/law 'meets its budget exactly' failed/);
  });
  test('a selector that is not deterministic', () => {
    expect(() => checkLaws(selectorLaws(flakySelector), quick)).toThrow(/law 'deterministic under a seed' failed/);
  });
  test('masking by multiplication lets NaN and −0 through', () => {
    expect(() => checkLaws(optimizerLaws(() => adam(0.05), { maskWith: multiplyMasking, applyWith: (p, u) => applyUpdates(p, u) }), quick)).toThrow(
      /law 'frozen entries stay bit-identical' failed: .*Counterexample/s,
    );
  });
  test('state kept by position', () => {
    expect(() => checkLaws(optimizerLaws(positionalSgd), quick)).toThrow(/law 'independent of the order of the leaves' failed/);
  });
});
