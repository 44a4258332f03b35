// Data-parallel gradients over worker threads (workerPool, sparsetune/node):
// results identical for a given worker count, equal to the in-thread ones
// within float tolerance, sparse masks respected, refusals named, no leaks
// and no threads left behind. Kept small (a tiny MLP) because each pool
// starts real threads, and this file runs beside the others.
import * as tfl from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { BackendError, ConfigError, crossEntropy, defineModel, fineTune, gps, gradient, importLayersModel, meanSquaredError, mlp, rng, scoresOf, selectionEnv, sensitivity, sgd, adamw, type Mask, type Params, type WorkerPool } from '../src/index.js';
import { workerPool } from '../src/node/index.js';
import { startThread, threadStarter } from '../src/node/workers.js';
import { createPoolSync, type WorkerInit } from '../src/parallel/index.js';
import { setPoolStarter } from '../src/selection/pools.js';

const model = mlp({ input: [6], hidden: [8], classes: 3 });
let params: Params;
const n = 48;
const images = new Float32Array(n * 6).map((_, i) => Math.sin(i * 0.37));
const train = { images, labels: Int32Array.from({ length: n }, (_, i) => i % 3), n, shape: [6] as const };
const fullMask = (): Mask => ({ spec: model.spec, bits: Object.fromEntries(Object.entries(model.spec).map(([p, s]) => [p, new Uint8Array(s.shape.reduce((a, b) => a * b, 1)).fill(1)])) });
/** Only the head trains: the workers then hold frozen leaves of their own. */
const headMask = (): Mask => ({ spec: model.spec, bits: Object.fromEntries(Object.entries(model.spec).map(([p, s]) => [p, new Uint8Array(s.shape.reduce((a, b) => a * b, 1)).fill(p.startsWith('head') ? 1 : 0)])) });
let two: WorkerPool;
let one: WorkerPool;

beforeAll(async () => {
  params = model.init(0);
  // minShard 1 so a batch of 8 really is split in two.
  [two, one] = await Promise.all([workerPool({ workers: 2, minShard: 1 }), workerPool({ workers: 1 })]);
});
afterAll(async () => {
  await Promise.all([two?.terminate(), one?.terminate()]);
  tf.dispose(Object.values(params));
});

const host = (p: Params) => Object.fromEntries(Object.entries(p).map(([k, t]) => [k, Array.from(t.dataSync())]));
function close(a: Record<string, number[]>, b: Record<string, number[]>, tol: number) {
  expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
  for (const k of Object.keys(a)) a[k]!.forEach((v, i) => expect(Math.abs(v - b[k]![i]!)).toBeLessThanOrEqual(tol * (1 + Math.abs(v))));
}
function tune(parallel: WorkerPool | undefined, mask: Mask, extra: object = {}) {
  const r = fineTune({ model, params, mask, train, epochs: 2, batchSize: 8, optimizer: sgd(0.1), progressBar: false, ...(parallel ? { parallel } : {}), ...extra });
  const out = { params: host(r.params), loss: r.history.map((h) => h.loss) };
  tf.dispose(Object.values(r.params).filter((t) => !Object.values(params).includes(t)));
  return out;
}

test('fine-tuning over 2 workers: identical run to run, equal to one thread within float tolerance; 1 worker equals it exactly', () => {
  const local = tune(undefined, fullMask());
  const a = tune(two, fullMask());
  const b = tune(two, fullMask());
  expect(a).toEqual(b);
  close(local.params, a.params, 1e-5);
  local.loss.forEach((l, i) => expect(Math.abs(l - a.loss[i]!)).toBeLessThan(1e-5));
  expect(tune(one, fullMask())).toEqual(local);
});

test('a GPS selector under parallel: the same scores and mask, frozen entries untouched, only selected entries trained', () => {
  const scores = (parallel?: WorkerPool) => scoresOf(selectionEnv({ model, params, data: train, seed: 3, ...(parallel ? { parallel } : {}) }), gradient({ batchSize: 8 }));
  const [s0, s2] = [scores(), scores(two)];
  close(Object.fromEntries(Object.entries(s0).map(([k, v]) => [k, Array.from(v)])), Object.fromEntries(Object.entries(s2).map(([k, v]) => [k, Array.from(v)])), 1e-4);
  // SPT's sensitivity (squared gradients, cross-entropy, a sample budget) too.
  const sens = (parallel?: WorkerPool) => scoresOf(selectionEnv({ model, params, data: train, seed: 3, ...(parallel ? { parallel } : {}) }), sensitivity({ batchSize: 8, samples: 24 }));
  const [t0, t2] = [sens(), sens(two)];
  for (const k of Object.keys(t0)) t0[k]!.forEach((v, i) => expect(Math.abs(v - t2[k]![i]!)).toBeLessThanOrEqual(1e-4 * (1 + v)));

  const local = fineTune({ model, params, mask: gps({ k: 1 }), train, epochs: 1, batchSize: 8, optimizer: adamw(0.01), progressBar: false });
  const par = fineTune({ model, params, mask: gps({ k: 1 }), train, epochs: 1, batchSize: 8, optimizer: adamw(0.01), progressBar: false, parallel: two });
  expect(par.mask.bits).toEqual(local.mask.bits);
  close(host(local.params), host(par.params), 1e-4);
  const start = host(params);
  const tuned = host(par.params);
  for (const [p, bits] of Object.entries(par.mask.bits)) bits.forEach((b, i) => b || expect(tuned[p]![i]).toBe(start[p]![i]));
  for (const r of [local, par]) tf.dispose(Object.values(r.params).filter((t) => !Object.values(params).includes(t)));
});

test('property: for any small MLP, mask, data, batch size and label smoothing, two workers fine-tune and score identically run to run, equal to this thread within float tolerance, and move no entry outside the mask', () => {
  const config = fc.record({
    input: fc.integer({ min: 1, max: 40 }),
    hidden: fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 2 }),
    classes: fc.integer({ min: 2, max: 4 }),
    n: fc.integer({ min: 2, max: 20 }),
    batchSize: fc.integer({ min: 1, max: 12 }),
    // From nothing to everything selected, so leaves take the no-gradient, sparse (under 1/16), dense-and-gathered and whole-leaf paths.
    density: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 6 }).map((x) => x / 100), fc.integer({ min: 7, max: 99 }).map((x) => x / 100), fc.constant(1)),
    labelSmoothing: fc.option(fc.double({ min: 0, max: 0.3, noNaN: true }), { nil: undefined }),
    seed: fc.nat(1000),
  });
  fc.assert(
    fc.property(config, (c) => {
      const m = mlp({ input: [c.input], hidden: c.hidden, classes: c.classes });
      const p0 = m.init(c.seed);
      const set = { images: new Float32Array(c.n * c.input).map((_, i) => Math.sin(i * 0.37 + c.seed)), labels: Int32Array.from({ length: c.n }, (_, i) => (i * 7 + c.seed) % c.classes), n: c.n, shape: [c.input] as const };
      const draw = rng(c.seed).fork('mask');
      const bits = Object.fromEntries(Object.entries(m.spec).map(([k, s]) => [k, Uint8Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, () => (draw.uniform() < c.density ? 1 : 0))]));
      bits['head.bias']![0] = 1; // a mask must select something
      const mask: Mask = { spec: m.spec, bits };
      const run = (parallel?: WorkerPool) => {
        const r = fineTune({ model: m, params: p0, mask, train: set, epochs: 2, batchSize: c.batchSize, optimizer: sgd(0.1), ...(c.labelSmoothing === undefined ? {} : { labelSmoothing: c.labelSmoothing }), progressBar: false, ...(parallel ? { parallel } : {}) });
        const out = { params: host(r.params), loss: r.history.map((h) => h.loss) };
        tf.dispose(Object.values(r.params).filter((t) => !Object.values(p0).includes(t)));
        const s = scoresOf(selectionEnv({ model: m, params: p0, data: set, seed: c.seed, ...(parallel ? { parallel } : {}) }), gradient({ batchSize: c.batchSize }));
        return { ...out, scores: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Array.from(v)])) };
      };
      try {
        const local = run();
        const a = run(two);
        expect(run(two)).toEqual(a);
        close(local.params, a.params, 1e-4);
        close(local.scores, a.scores, 1e-4);
        local.loss.forEach((l, i) => expect(Math.abs(l - a.loss[i]!)).toBeLessThanOrEqual(1e-4 * (1 + l)));
        const start = host(p0);
        for (const [k, b] of Object.entries(bits)) b.forEach((on, i) => on || expect(a.params[k]![i]).toBe(start[k]![i]));
      } finally {
        tf.dispose(Object.values(p0));
      }
    }),
    { numRuns: 30 },
  );
});

test('a sparse selection of wide kernels takes the sparse-gradient path in the workers too, and equals one thread within float tolerance', () => {
  // Fan-in 48: a top-1 per neuron is few enough entries for the cost model (as fineTune's sparseGradientLeaves shows).
  const wide = mlp({ input: [48], hidden: [8], classes: 3 });
  const wp = wide.init(2);
  const set = { images: new Float32Array(24 * 48).map((_, i) => Math.cos(i * 0.21)), labels: Int32Array.from({ length: 24 }, (_, i) => i % 3), n: 24, shape: [48] as const };
  const mask = gps({ k: 1 });
  const run = (parallel?: WorkerPool) => {
    const r = fineTune({ model: wide, params: wp, mask, train: set, epochs: 2, batchSize: 8, optimizer: adamw(0.05), progressBar: false, ...(parallel ? { parallel } : {}) });
    const out = { params: host(r.params), loss: r.history.map((h) => h.loss), sparse: r.sparseGradientLeaves };
    tf.dispose(Object.values(r.params).filter((t) => !Object.values(wp).includes(t)));
    return out;
  };
  const local = run();
  expect(local.sparse.length).toBeGreaterThan(0);
  const a = run(two);
  expect(run(two)).toEqual(a);
  close(local.params, a.params, 1e-5);
  close(local.params, run(one).params, 1e-5);
  tf.dispose(Object.values(wp));
});

test('regression with meanSquaredError runs in the workers', () => {
  const reg = mlp({ input: [6], hidden: [8], classes: 2 });
  const p = reg.init(1);
  const set = { images, labels: new Float32Array(n * 2).map((_, i) => Math.cos(i)), n, shape: [6] as const };
  const run = (parallel?: WorkerPool) => {
    const r = fineTune({ model: reg, params: p, mask: { spec: reg.spec, bits: Object.fromEntries(Object.entries(reg.spec).map(([k, s]) => [k, new Uint8Array(s.shape.reduce((a, b) => a * b, 1)).fill(1)])) }, train: set, loss: meanSquaredError, epochs: 1, batchSize: 16, optimizer: sgd(0.05), progressBar: false, ...(parallel ? { parallel } : {}) });
    const out = host(r.params);
    tf.dispose(Object.values(r.params).filter((t) => !Object.values(p).includes(t)));
    return out;
  };
  close(run(), run(two), 1e-5);
  tf.dispose(Object.values(p));
});

test('an imported Keras model runs in the workers, BatchNormalization statistics included: equal to one thread within float tolerance', () => {
  const keras = tfl.sequential({
    layers: [tfl.layers.dense({ inputShape: [6], units: 8, activation: 'relu' }), tfl.layers.batchNormalization(), tfl.layers.dense({ units: 4, activation: 'tanh' }), tfl.layers.dense({ units: 3, activation: 'softmax' })],
  });
  // Moving statistics far from the fresh layer's (0 and 1): a worker that lost them would compute other logits.
  const bn = keras.layers[1]!;
  bn.setWeights(bn.getWeights().map((w, i) => tf.tidy(() => tf.add(tf.mul(tf.sin(tf.range(0, 8)), 0.5), i === 3 ? 2 : i))));
  const { model: km, params: kp } = importLayersModel(keras);
  expect(Object.keys(km.buffers).length).toBe(2);
  const run = (parallel?: WorkerPool) => {
    const r = fineTune({ model: km, params: kp, mask: gps({ k: 2 }), train, epochs: 2, batchSize: 8, optimizer: sgd(0.1), seed: 4, progressBar: false, ...(parallel ? { parallel } : {}) });
    const out = { params: host(r.params), loss: r.history.map((h) => h.loss), mask: r.mask.bits };
    tf.dispose(Object.values(r.params).filter((t) => !Object.values(kp).includes(t)));
    return out;
  };
  const local = run();
  const a = run(two);
  expect(a.mask).toEqual(local.mask);
  close(local.params, a.params, 1e-5);
  local.loss.forEach((l, i) => expect(Math.abs(l - a.loss[i]!)).toBeLessThan(1e-5));
  // The workers keep the rebuilt model (its buffers) between runs, and nothing more.
  const kept = two.tensors();
  expect(run(two)).toEqual(a);
  expect(two.tensors()).toEqual(kept);
  keras.dispose();
  km.dispose();
  tf.dispose(Object.values(kp));
});

test('what cannot be sent to a worker is a ConfigError before any step', () => {
  expect(() => fineTune({ model, params, mask: fullMask(), train, epochs: 1, progressBar: false, loss: (l, y) => tf.losses.softmaxCrossEntropy(tf.oneHot(y as tf.Tensor1D, 3), l), parallel: two })).toThrow(ConfigError);
  const probe = defineModel({ name: 'probe', config: {}, input: [6] as const, features: 6, backbone: [], forward: (_p, x) => x }, 3);
  const pp = probe.init(0);
  expect(() => fineTune({ model: probe, params: pp, mask: { spec: probe.spec, bits: { 'head.kernel': new Uint8Array(18).fill(1), 'head.bias': new Uint8Array(3).fill(1) } }, train, epochs: 1, progressBar: false, parallel: two })).toThrow(/cannot be rebuilt in a worker/);
  // A hand-made model under a builder's name, with the same spec but another forward pass, is caught by the probe.
  const fake = { ...model, apply: (p: Params, x: never) => { const o = model.apply(p, x); return { features: o.features, logits: tf.neg(o.logits) }; } } as typeof model;
  expect(() => fineTune({ model: fake, params, mask: fullMask(), train, epochs: 1, progressBar: false, parallel: two })).toThrow(/computes other outputs/);
  tf.dispose(Object.values(pp));
});

test('1,000 steps leak no tensors on either side; a throwing loop leaves the pool usable and clean', () => {
  const before = tf.memory().numTensors;
  const inWorkers = two.tensors();
  // 6 steps an epoch × 167 epochs ≈ 1,000 steps.
  const r = fineTune({ model, params, mask: gps({ k: 2 }), train, epochs: 167, batchSize: 8, optimizer: adamw(1e-3), progressBar: false, parallel: two });
  expect(r.history.length * 6).toBeGreaterThanOrEqual(1000);
  tf.dispose(Object.values(r.params).filter((t) => !Object.values(params).includes(t)));
  expect(tf.memory().numTensors).toBe(before);
  expect(two.tensors()).toEqual(inWorkers);
  const head = fineTune({ model, params, mask: headMask(), train, epochs: 1, batchSize: 8, progressBar: false, parallel: two });
  tf.dispose(Object.values(head.params).filter((t) => !Object.values(params).includes(t)));
  expect(two.tensors()).toEqual(inWorkers);
  expect(() => fineTune({ model, params, mask: headMask(), train, epochs: 2, batchSize: 8, progressBar: false, parallel: two, onStep: (s) => { if (s.step === 3) throw new RangeError('stop'); } })).toThrow('stop');
  expect(tf.memory().numTensors).toBe(before);
  expect(two.tensors()).toEqual(inWorkers);
});

test('a terminated pool refuses work with a BackendError', async () => {
  const p = await workerPool({ workers: 1 });
  await p.terminate();
  await p.terminate();
  expect(() => p.tensors()).toThrow(BackendError);
  expect(() => fineTune({ model, params, mask: fullMask(), train, epochs: 1, progressBar: false, parallel: p })).toThrow(BackendError);
});

describe("fineTune's and selectionEnv's workers option: a pool for the call, started synchronously and stopped after", () => {
  let started = 0;
  let stopped = 0;
  let asked = 0;
  const counting = (cores: number) => ({
    ...threadStarter,
    cores,
    start(n: number, caller: string) {
      started++;
      asked = n;
      const p = threadStarter.start(Math.min(n, 2), caller);
      return { ...p, terminate: () => (stopped++, p.terminate()) };
    },
  });
  beforeAll(() => setPoolStarter(counting(threadStarter.cores)));
  afterAll(() => setPoolStarter(threadStarter));
  const counts = (): [number, number] => [started, stopped];
  const run = (extra: object, mask: Mask = fullMask(), batchSize = 32, epochs = 2) => {
    const r = fineTune({ model, params, mask, train, epochs, batchSize, optimizer: sgd(0.1), progressBar: false, ...extra });
    const out = { params: host(r.params), loss: r.history.map((h) => h.loss) };
    tf.dispose(Object.values(r.params).filter((t) => !Object.values(params).includes(t)));
    return out;
  };

  test('workers: 2 fine-tunes over two threads (equal to this thread within float tolerance, identical run to run) and stops them, a throwing run too', () => {
    const local = run({});
    const [s0, e0] = counts();
    const a = run({ workers: 2 });
    expect(counts()).toEqual([s0 + 1, e0 + 1]);
    close(local.params, a.params, 1e-5);
    expect(run({ workers: 2 })).toEqual(a);
    expect(() => run({ workers: 2, onStep: () => { throw new RangeError('stop'); } })).toThrow('stop');
    expect(counts()).toEqual([s0 + 3, e0 + 3]);
  });

  test("workers: 'auto' starts a pool only where it pays (batch ≥ 32, ≥ 4,096 samples over the run) and the pool can run the model and loss", () => {
    const [s0] = counts();
    expect(run({ workers: 'auto' })).toEqual(run({})); // 96 samples: this thread, bit for bit
    expect(counts()[0]).toBe(s0);
    const long = run({ workers: 'auto' }, fullMask(), 32, 86); // 86 × 48 = 4,128 samples
    expect(counts()[0]).toBe(s0 + 1);
    close(run({}, fullMask(), 32, 86).params, long.params, 1e-4);
    // On a machine of 64 cores, 'auto' starts no more threads than a batch of 32 has shards of 16.
    setPoolStarter(counting(64));
    try {
      run({ workers: 'auto' }, fullMask(), 32, 86);
      expect(asked).toBe(2);
    } finally {
      setPoolStarter(counting(threadStarter.cores));
    }
    // A loss of your own cannot be sent to a worker: 'auto' stays in this thread.
    const own = (l: tf.Tensor, y: tf.Tensor) => crossEntropy(l as never, y as never);
    run({ workers: 'auto', loss: own }, fullMask(), 32, 86);
    expect(counts()[0]).toBe(s0 + 2);
  });

  test('selectionEnv({ workers: 2 }) runs each gradient pass on a pool of its own: the same scores within float tolerance', () => {
    const [s0, e0] = counts();
    const scores = (extra: object) => scoresOf(selectionEnv({ model, params, data: train, seed: 3, ...extra }), gradient({ batchSize: 8 }));
    const [mine, theirs] = [scores({}), scores({ workers: 2 })];
    expect(counts()).toEqual([s0 + 1, e0 + 1]);
    for (const k of Object.keys(mine)) mine[k]!.forEach((v, i) => expect(Math.abs(v - theirs[k]![i]!)).toBeLessThanOrEqual(1e-4 * (1 + v)));
  });

  test('what the option refuses, named before anything starts', () => {
    const [s0] = counts();
    expect(() => run({ workers: 2, parallel: two })).toThrow(new ConfigError('fineTune: give workers or parallel, not both'));
    expect(() => run({ workers: 0 })).toThrow("fineTune: workers must be a positive integer or 'auto', got 0");
    // A bad option is refused before any thread starts.
    expect(() => run({ workers: 2, learningRate: -1 })).toThrow('fineTune: learningRate must be a finite number > 0, got -1');
    expect(() => selectionEnv({ model, params, data: train, workers: 1.5 })).toThrow(ConfigError);
    // Without sparsetune/node (as in a browser) no thread can start: a number is refused, 'auto' stays in this thread.
    setPoolStarter(undefined);
    try {
      expect(() => run({ workers: 2 })).toThrow(/needs `import 'sparsetune\/node'`.*webWorkerPool/);
      expect(run({ workers: 'auto' }, fullMask(), 32, 86)).toEqual(run({}, fullMask(), 32, 86));
    } finally {
      setPoolStarter(counting(threadStarter.cores));
    }
    expect(counts()[0]).toBe(s0);
  });

  test('a worker whose backend cannot start fails the synchronous start with its reason, and every thread is stopped', async () => {
    const entry = new URL('../src/node/worker.ts', import.meta.url).href;
    const threads: Worker[] = [];
    let exited = 0;
    const start = (_k: number, init: WorkerInit) => {
      const w = new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`, { eval: true, workerData: init });
      w.on('error', () => {});
      w.on('exit', () => exited++);
      w.unref();
      threads.push(w);
      return { post: (r: unknown) => w.postMessage(r), terminate: async () => void (await w.terminate()) };
    };
    expect(() => createPoolSync('fineTune', 2, 'tensorflow', {}, start)).toThrow(/fineTune: worker 0 failed to start: BackendError: initBackend\('tensorflow'\)/);
    expect(threads.length).toBe(2);
    await vi.waitFor(() => expect(exited).toBe(2));
  });

  test.each([
    ['exit', /^fineTune: worker [01] exited \(code 9\); the pool is stopped$/],
    ['throw', /^fineTune: worker [01] died: RangeError: injected crash; the pool is stopped$/],
  ])('a worker whose thread ends mid-run (%s) fails the run at once with a BackendError naming it, not after the 10-minute timeout; the pool is stopped', (how, message) => {
    const fixture = new URL('./fixtures/dying-worker.ts', import.meta.url).href;
    const load = `(globalThis.sparsetuneDie = ${JSON.stringify(how)}, import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(fixture)}); }))`;
    // A timeout of a minute: a pool that missed the death would fail with another message, sooner than the test's own timeout.
    const pool = createPoolSync('fineTune', 2, 'wasm', { minShard: 1, timeoutMs: 60_000 }, startThread(load));
    try {
      let error: unknown;
      try {
        tune(pool, fullMask());
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(BackendError);
      expect((error as Error).message).toMatch(message);
      expect(() => pool.tensors()).toThrow('fineTune: the pool has been terminated');
    } finally {
      void pool.terminate();
    }
  });

  test('a worker module that fails to load fails the synchronous start at once, with its reason (a blocked pool cannot see the error event)', () => {
    expect(() => createPoolSync('fineTune', 2, 'wasm', {}, startThread("import('file:///nonexistent/sparsetune-worker.js')"))).toThrow(/fineTune: worker 0 failed to start: Cannot find module/);
  });
});
