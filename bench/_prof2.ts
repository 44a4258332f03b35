import { initBackend, paramSpec, paths, leafSize, rng, tree, type Params } from '../src/index.js';
import { fromScores, neuron, select, selectionEnv } from '../src/selection/index.js';
await initBackend('cpu');
const d = 768;
const entries: any[] = [['patch.kernel', { shape: [768, d], role: 'kernel', neuronAxis: 1 }], ['pos', { shape: [1, 197, d], role: 'embedding', neuronAxis: 2 }], ['head.kernel', { shape: [d, 1000], role: 'head', neuronAxis: 1 }]];
for (let b = 0; b < 12; b++) { entries.push([`blocks.${b}.attn.qkv.kernel`, { shape: [d, 3 * d], role: 'kernel', neuronAxis: 1 }]); entries.push([`blocks.${b}.attn.proj.kernel`, { shape: [d, d], role: 'kernel', neuronAxis: 1 }]); entries.push([`blocks.${b}.mlp.fc1.kernel`, { shape: [d, 4 * d], role: 'kernel', neuronAxis: 1 }]); entries.push([`blocks.${b}.mlp.fc2.kernel`, { shape: [4 * d, d], role: 'kernel', neuronAxis: 1 }]); }
const spec = paramSpec(entries);
const r = rng(0);
const scores = tree(paths(spec).map((p) => [p, Float32Array.from({ length: leafSize(spec[p]!) }, () => r.uniform())]));
const env = selectionEnv({ spec, params: {} as Params });
const crit = fromScores(scores, 's');
for (let i = 0; i < 6; i++) { const t0 = performance.now(); select(neuron(8, crit), env); console.log('select k8', (performance.now() - t0).toFixed(0)); }
