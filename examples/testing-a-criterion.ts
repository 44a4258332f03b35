// A criterion of your own, property-tested with the kit: the pruning world's "Taylor" score |W·∇W|.
import fc from 'fast-check';
import {
  fromScores,
  gradient,
  initBackend,
  magnitude,
  mapTree,
  neuron,
  scoresOf,
  selectionEnv,
  subset,
  vit,
} from 'sparsetune';
import { buildTask } from 'sparsetune/node';
import { checkLaws, criterionLaws, selectorLaws } from 'sparsetune/testing';

await initBackend();
const taylor = fromScores((env) => {
  const g = scoresOf(env, gradient({ loss: 'ce' })); // |Σ ∇W|, cached and shared
  const w = scoresOf(env, magnitude()); //                |W|
  return mapTree(g, (gs, path) => gs.map((v, i) => v * w[path]![i]!));
}, 'taylor');

// Environments to test in: a small ViT on a few images, under many seeds.
const model = vit({ input: [28, 28, 1], patch: 7, width: 8, depth: 1, heads: 2, classes: 10 });
const data = subset(buildTask('digits', { testSize: 1 }).train, [...Array(16).keys()]);
const envs = fc.nat(1000).map((seed) => selectionEnv({ model, params: model.init(seed), data, seed }));

checkLaws(selectorLaws(neuron(1, taylor), { env: envs, atK: (k) => neuron(k, taylor) }), { numRuns: 5 });
checkLaws(criterionLaws(taylor, envs), { numRuns: 5 });
console.log('taylor: selector and criterion laws hold');
