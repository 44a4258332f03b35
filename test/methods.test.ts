// One call per method: prepare sets up what the presets, addLora and
// loraMask would, fineTune trains it, and the tuned file reloads it bit for bit.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import { ConfigError, FormatError, MaskError, paths, SpecError, type Params } from '../src/index.js';
import { subset } from '../src/data/index.js';
import { buildTask } from '../src/node/index.js';
import { replaceHead, vit } from '../src/models/index.js';
import { ablations, bitfit, countMask, fraction, fps, full, gps, kernelPart, linearProbe, maskOf, countOnes, select, selectionEnv, spt } from '../src/selection/index.js';
import { fineTune } from '../src/optim/index.js';
import { addLora, adaptersOf, loraMask, mergeLora } from '../src/adapters/index.js';
import { loadTunedFile, saveTunedFile } from '../src/formats/index.js';
import { loadTuned, METHODS, prepare, resolveMethod, saveTuned, type MethodConfig, type MethodName } from '../src/methods/index.js';

const model = vit({ input: [28, 28, 1], patch: 7, width: 8, depth: 2, heads: 2, classes: 4 });
const base = model.init(0);
const task = buildTask('rotation', { testSize: 16 });
const train = subset(task.train, [...Array(32).keys()]);
const bits = (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer));
const sameMask = (a: { bits: Record<string, Uint8Array> }, b: { bits: Record<string, Uint8Array> }) => expect(Object.fromEntries(Object.entries(a.bits).map(([p, v]) => [p, Array.from(v)]))).toEqual(Object.fromEntries(Object.entries(b.bits).map(([p, v]) => [p, Array.from(v)])));

/** One config per method; SPT's budget is large enough on this tiny model that some kernels switch to LoRA. */
const CONFIGS: Record<MethodName, MethodConfig> = {
  gps: { method: 'gps', k: 2 },
  fps: { method: 'fps', k: 2 },
  'gps-ablation': { method: 'gps-ablation', ablation: 'net', k: 2 },
  'spt-lora': { method: 'spt-lora', budget: 0.2, rank: 2 },
  lora: { method: 'lora', rank: 2 },
  bitfit: { method: 'bitfit' },
  linear: { method: 'linear' },
  full: { method: 'full' },
};

test('every method of the registry has a config here', () => {
  expect(Object.keys(CONFIGS).sort()).toEqual(Object.keys(METHODS).sort());
});

describe('prepare sets up what the presets do', () => {
  const env = selectionEnv({ model, params: base, data: train, seed: 0 });

  test('gps: the preset’s mask, k connections per neuron of each kernel', () => {
    const t = prepare({ method: 'gps', k: 2 }, { model, params: base, data: train });
    sameMask(t.mask, select(gps({ k: 2 }), env));
    const fc1 = t.mask.bits['blocks.0.mlp.fc1.kernel']!; // [8, 32]: 32 neurons of fan-in 8
    expect(countOnes(fc1)).toBe(2 * 32);
    expect(t.model).toBe(model);
    expect(t.learningRate).toBe(METHODS.gps.defaults['learningRate']);
    expect(t.config).toEqual({ method: 'gps', k: 2, loss: 'supcon', biases: true, head: true, norms: false, tokens: false, learningRate: 1e-2 });
  });

  test('fps: the preset’s mask from a forward pass, k connections per neuron', () => {
    const t = prepare({ method: 'fps', k: 2 }, { model, params: base, env });
    sameMask(t.mask, select(fps({ k: 2 }), env));
    expect(countOnes(t.mask.bits['blocks.0.mlp.fc1.kernel']!)).toBe(2 * 32);
    expect(t.config).toEqual({ method: 'fps', k: 2, biases: true, head: true, learningRate: 1e-2 });
  });

  test('gps-ablation: as many kernel entries as GPS, chosen otherwise', () => {
    const t = prepare({ method: 'gps-ablation', ablation: 'net', k: 2 }, { model, params: base, env });
    const g = select(gps({ k: 2 }), env);
    sameMask(t.mask, select(ablations(g, { k: 2 }).net, env));
    expect(countMask(kernelPart(t.mask)).trainable).toBe(countMask(kernelPart(g)).trainable);
  });

  test('spt-lora: the plan’s LoRA kernels with the config’s rank, the plan’s mask plus the adapters', () => {
    const t = prepare({ method: 'spt-lora', budget: 0.2, rank: 2 }, { model, params: base, env });
    const plan = spt({ budget: fraction(0.2), rank: 2 }).plan(env);
    expect(plan.lora.length).toBeGreaterThan(0);
    expect(t.lora).toEqual({ kernels: plan.lora, rank: 2, alpha: 2 });
    const lora = addLora(model, base, plan.lora, { rank: 2, seed: 0 });
    sameMask(t.mask, loraMask(lora, plan.mask));
    for (const p of paths(lora.params)) expect(bits(t.params[p]!)).toEqual(bits(lora.params[p]!));
  });

  test('lora: adapters on every block kernel (not the patch embedding), plus the head', () => {
    const t = prepare({ method: 'lora', rank: 2 }, { model, params: base });
    expect(t.lora!.kernels).toEqual(paths(model.spec).filter((p) => p.startsWith('blocks.') && model.spec[p]!.role === 'kernel' && model.spec[p]!.shape.length === 2));
    expect(t.config).toMatchObject({ kernels: t.lora!.kernels, alpha: 2, head: true });
    sameMask(t.mask, loraMask(addLora(model, base, t.lora!.kernels, { rank: 2 }), maskOf(model.spec, (l) => l.role === 'head')));
  });

  test.each([
    ['bitfit', bitfit()],
    ['linear', linearProbe()],
    ['full', full()],
  ] as const)('%s: the preset’s mask', (name, selector) => {
    const t = prepare({ method: name }, { model, params: base });
    sameMask(t.mask, select(selector, env));
  });
});

describe('the tuned file reloads exactly what was trained', () => {
  test.each(Object.values(CONFIGS))('%o', (config) => {
    const before = tf.memory().numTensors;
    const t = prepare(config, { model, params: base, data: train });
    const result = fineTune({ ...t, train, epochs: 1, batchSize: 16, progressBar: false });
    const bytes = saveTuned(t, result.params, { meta: { note: 'test' } });
    const back = loadTuned(bytes, { model, params: base });
    expect(back.config).toEqual(t.config);
    expect(back.meta).toEqual({ note: 'test' });
    expect(back.merged).toBe(false);
    expect(paths(back.params)).toEqual(paths(t.model.spec));
    for (const p of paths(t.model.spec)) expect(bits(back.params[p]!), p).toEqual(bits(result.params[p]!));
    const x = tf.tensor(train.images.subarray(0, 4 * 28 * 28), [4, 28, 28, 1]) as never;
    const [a, b] = [back.model.apply(back.params, x), t.model.apply(result.params, x)];
    expect(bits(a.logits)).toEqual(bits(b.logits));
    tf.dispose([a, b] as never);
    // What remains is what the caller owns: the run's trained leaves, the adapters, the reloaded leaves.
    const owned = new Set([...Object.values(result.params), ...Object.values(t.params), ...Object.values(back.params)].filter((v) => !Object.values(base).includes(v)));
    expect(tf.memory().numTensors - before).toBe(owned.size + 1); // + x
    tf.dispose([...owned, x as unknown as tf.Tensor]);
  });

  test("LoRA saved merged: the base model runs it, the delta holds the adapted kernels whole", () => {
    const t = prepare({ method: 'spt-lora', budget: 0.2, rank: 2 }, { model, params: base, data: train });
    const result = fineTune({ ...t, train, epochs: 1, batchSize: 16, progressBar: false });
    const separate = saveTuned(t, result.params);
    const merged = saveTuned(t, result.params, { lora: 'merged' });
    const back = loadTuned(merged, { model, params: base });
    expect(back.merged).toBe(true);
    expect(back.model).toBe(model);
    expect(back.lora).toEqual(t.lora);
    const want = mergeLora(t.lora!, result.params);
    for (const p of paths(model.spec)) expect(bits(back.params[p]!), p).toEqual(bits(want[p]!));
    const file = loadTunedFile(merged);
    for (const k of t.lora!.kernels) expect(file.delta.leaves[k]!.indices.length).toBe(model.spec[k]!.shape.reduce((a, b) => a * b, 1));
    expect(loadTunedFile(separate).adapters).toBeDefined();
  });
});

describe('refusals', () => {
  test.each([
    [{ method: 'gpss' }, /unknown method "gpss"; known: gps, fps, gps-ablation, spt-lora, lora, bitfit, linear, full/],
    [{ method: 'lora', rnak: 4 }, /unknown field 'rnak'/],
    [{ method: 'gps', k: 0 }, /'k' must be a positive integer, got 0/],
    [{ method: 'spt-lora', budget: 2 }, /'budget' must be a fraction in \(0, 1\]/],
    [{ method: 'gps-ablation' }, /'ablation' is required/],
    [{ method: 'gps', loss: 'mse' }, /'loss' must be 'supcon' or 'ce'/],
    ['gps', /expected an object/],
  ])('%o', (config, message) => {
    expect(() => resolveMethod(config)).toThrow(ConfigError);
    expect(() => resolveMethod(config)).toThrow(message);
  });

  test('a method that selects by scores needs data', () => {
    expect(() => prepare({ method: 'gps' }, { model, params: base })).toThrow(ConfigError);
  });

  test('another base is a SpecError, a corrupted file a FormatError, and neither leaves a tensor behind', () => {
    const t = prepare({ method: 'lora', rank: 2 }, { model, params: base });
    const result = fineTune({ ...t, train, epochs: 1, batchSize: 16, progressBar: false });
    const bytes = saveTuned(t, result.params);
    const other = replaceHead(model, base, 1);
    const before = tf.memory().numTensors;
    expect(() => loadTuned(bytes, { model, params: other })).toThrow(SpecError);
    const flipped = bytes.slice();
    flipped[bytes.length - 5]! ^= 1;
    expect(() => loadTuned(flipped, { model, params: base })).toThrow(FormatError);
    expect(() => loadTuned(bytes.subarray(0, bytes.length - 1), { model, params: base })).toThrow(FormatError);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('a config the file records but this build does not know is a FormatError', () => {
    const t = prepare({ method: 'linear' }, { model, params: base });
    const result = fineTune({ ...t, train, epochs: 1, batchSize: 16, progressBar: false });
    const file = loadTunedFile(saveTuned(t, result.params));
    const bad = saveTunedFile({ ...file, method: { method: 'linear', learningRate: -1 } });
    expect(() => loadTuned(bad, { model, params: base })).toThrow(/tuned file: malformed header: 'method': .*'learningRate' must be a finite number > 0/);
    const claimsLora = saveTunedFile({ ...file, method: { method: 'lora' } });
    expect(() => loadTuned(claimsLora, { model, params: base })).toThrow(FormatError);
  });

  test('tuned values outside the mask would be lost: a MaskError, not a file that reloads to something else', () => {
    const t = prepare({ method: 'linear' }, { model, params: base });
    const moved: Params = { ...base, 'blocks.0.mlp.fc1.bias': tf.add(base['blocks.0.mlp.fc1.bias']!, 1) };
    expect(() => saveTuned(t, moved)).toThrow(MaskError);
  });

  test('prepare owns exactly the adapters it makes; a kernel that is not 2-D is a SpecError before anything is made', () => {
    const before = tf.memory().numTensors;
    const t = prepare({ method: 'lora', rank: 2, kernels: ['blocks.0.mlp.fc1.kernel'] }, { model, params: base });
    expect(tf.memory().numTensors - before).toBe(2);
    tf.dispose(Object.values(adaptersOf(t.lora!, t.params)));
    expect(() => prepare({ method: 'lora', kernels: ['blocks.0.mlp.fc1.bias'] }, { model, params: base })).toThrow(SpecError);
    expect(tf.memory().numTensors).toBe(before);
  });
});
