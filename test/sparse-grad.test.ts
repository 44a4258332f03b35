// Gradients that follow the selection: sparse weight gradients against the
// dense ones, and lazy per-input gradients (no frozen filter's gradient, no
// input gradient below what trains), counted in kernels run.
import * as tf from '@tensorflow/tfjs-core';
import { expect, test } from 'vitest';
import { describeOnBackends } from './gradcheck.js';
import { conv2d, depthwiseConv2d, keepBasePacked, linear, stridedConv2d, usedOnlyAsWeights, matmul, randomNormal, rng, sparseGradEntries, SPARSE_ENTRY_COST, withSparseWeightGrads, type Tensor } from '../src/index.js';

const r = rng(11);
let draws = 0;
const rand = (shape: number[]) => randomNormal(r.fork(draws++), shape);
const any = (t: tf.Tensor) => t as Tensor;
type T2 = Tensor<[number, number]>;
type T3 = Tensor<[number, number, number]>;
type T4 = Tensor<[number, number, number, number]>;

/** `count` distinct flat indices of a [k, n] weight, seeded. */
function pick(k: number, n: number, count: number, seed: number): Int32Array {
  const all = [...Array(k * n).keys()];
  const g = rng(seed);
  for (let i = all.length - 1; i > 0; i--) {
    const j = g.int(i + 1);
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return Int32Array.from(all.slice(0, count).sort((a, b) => a - b));
}

/** The sparse gradient equals the dense one at the wanted flat entries (to 1e-6 of the largest) and is zero elsewhere; returns its values. */
function expectAtEntries(sparseGrad: tf.Tensor, denseGrad: tf.Tensor, flat: Int32Array): Float32Array {
  const sparse = sparseGrad.dataSync() as Float32Array;
  const dense = denseGrad.dataSync();
  const scale = Math.max(...dense.map(Math.abs));
  const wanted = new Set(flat);
  for (let i = 0; i < dense.length; i++) {
    if (wanted.has(i)) expect(Math.abs(sparse[i]! - dense[i]!)).toBeLessThanOrEqual(1e-6 * scale);
    else expect(sparse[i]).toBe(0);
  }
  return sparse;
}

/** Kernels run while computing f, by name. */
async function kernelsOf(f: () => void): Promise<Record<string, number>> {
  const info = await tf.profile(() => {
    f();
  });
  const out: Record<string, number> = {};
  for (const k of info.kernels) out[k.name] = (out[k.name] ?? 0) + 1;
  return out;
}

describeOnBackends((backend) => {

  test.each([
    ['linear, leading dims', [4, 5, 24], [24, 40], 30],
    ['matmul', [17, 64], [64, 96], 96],
    ['one entry', [8, 3], [3, 2], 1],
  ] as const)('sparse weight gradient of %s equals the dense one at the wanted entries, zeros elsewhere', (_name, xs, ws, count) => {
    const x = rand([...xs]);
    const w = rand([...ws]);
    const R = rand([...xs.slice(0, -1), ws[1]]);
    const loss = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(a.rank === 2 ? matmul(any(a) as T2, any(b) as T2) : linear(any(a) as T3, any(b) as T2), R));
    const flat = pick(ws[0], ws[1], count, count);
    const entries = sparseGradEntries(ws, flat, true)!;
    const before = tf.memory().numTensors;
    const [dx, dw] = withSparseWeightGrads(new Map([[w, entries]]), () => tf.grads(loss)([x, w]));
    const [dxDense, dwDense] = tf.grads(loss)([x, w]);
    expectAtEntries(dw!, dwDense!, flat);
    // The input's gradient does not change.
    expect(dx!.dataSync()).toEqual(dxDense!.dataSync());
    tf.dispose([dx!, dw!, dxDense!, dwDense!]);
    expect(tf.memory().numTensors).toBe(before);
    entries.dispose();
  });

  // A convolution filter [kh, kw, C, O]: every stride and padding the forward pass takes,
  // output positions that are and are not a multiple of eight.
  test.each([
    ['3×3 same, stride 1', [2, 5, 6, 3], [3, 3, 3, 4], { strides: 1, padding: 'same' }, 20],
    ['3×3 same, stride 2', [3, 7, 6, 2], [3, 3, 2, 5], { strides: 2, padding: 'same' }, 12],
    ['2×3 valid, strides [2, 1]', [2, 6, 5, 2], [2, 3, 2, 3], { strides: [2, 1], padding: 'valid' }, 7],
    ['1×1, one entry', [1, 3, 3, 4], [1, 1, 4, 2], { strides: 1, padding: 'valid' }, 1],
  ] as const)('sparse filter gradient of a %s convolution equals the dense one at the wanted entries, and so does its probe', (_name, xs, fs, options, count) => {
    const x = rand([...xs]);
    const f = rand([...fs]);
    const conv = (a: tf.Tensor, b: tf.Tensor) => stridedConv2d(any(a) as T4, any(b) as T4, options);
    const R = tf.tidy(() => rand([...conv(x, f).shape]));
    const loss = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(conv(a, b), R));
    const flat = pick(fs[0] * fs[1] * fs[2], fs[3], count, count);
    const entries = sparseGradEntries(fs, flat, true);
    if (backend !== 'wasm' && backend !== 'cpu') return expect(entries).toBeUndefined();
    expect(entries!.weightShape).toEqual(fs);
    const before = tf.memory().numTensors;
    const [dx, df] = withSparseWeightGrads(new Map([[f, entries!]]), () => tf.grads(loss)([x, f]));
    const [values] = withSparseWeightGrads(new Map([[f, entries!]]), () => tf.grads(() => loss(x, f))([entries!.probe]));
    const [dxDense, dfDense] = tf.grads(loss)([x, f]);
    const sparse = expectAtEntries(df!, dfDense!, flat);
    Array.from(values!.dataSync()).forEach((v, q) => expect(v).toBe(sparse[flat[q]!]));
    expect(dx!.dataSync()).toEqual(dxDense!.dataSync());
    tf.dispose([dx!, df!, values!, dxDense!, dfDense!]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, f, R]);
    entries!.dispose();
  });

  test('on a frozen base (keepBasePacked), the forward product and the input gradient equal the plain ones, with no transpose of the weight', async () => {
    const w0 = rand([40, 24]);
    const flat = pick(40, 24, 6, 6);
    const entries = sparseGradEntries([40, 24], flat, true)!;
    // The trained weight: the base with its six entries moved.
    const w = tf.tidy(() => tf.add(w0, tf.reshape(tf.scatterND(entries.coords, rand([6]), [40, 24]), [40, 24])));
    const x = rand([5, 40]);
    const R = rand([5, 24]);
    const loss = (a: tf.Tensor) => tf.sum(tf.mul(matmul(any(a) as T2, any(w) as T2), R));
    const before = tf.memory().numTensors;
    const kept = keepBasePacked(entries, w0, 5);
    if (backend !== 'wasm' && backend !== 'cpu') return expect(kept).toBeUndefined();
    // Many rows against a small weight: the cost model keeps the plain product.
    expect(keepBasePacked(entries, w0, 10_000)).toBeUndefined();
    kept!.update(w);
    const marks = new Map([[w, entries]]);
    const { value, grads } = withSparseWeightGrads(marks, () => tf.valueAndGrads(() => loss(x) as tf.Scalar)([x, entries.probe]));
    const { value: plainValue, grads: plain } = tf.valueAndGrads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(matmul(any(a) as T2, any(b) as T2), R)) as tf.Scalar)([x, w]);
    const close = (a: tf.Tensor, b: tf.Tensor | Float32Array) => {
      const u = a.dataSync();
      const v = b instanceof tf.Tensor ? b.dataSync() : b;
      const scale = Math.max(...Array.from(v, Math.abs));
      Array.from(u).forEach((x, i) => expect(Math.abs(x - v[i]!)).toBeLessThanOrEqual(1e-6 * scale));
    };
    close(value, plainValue);
    close(grads[0]!, plain[0]!);
    close(grads[1]!, Float32Array.from(flat, (f) => plain[1]!.dataSync()[f]!));
    tf.dispose([value, plainValue, ...grads, ...plain]);
    // The input gradient multiplies by the base's transpose made once, not by a new one.
    const kernels = await kernelsOf(() => tf.dispose(withSparseWeightGrads(marks, () => tf.grad((a: tf.Tensor) => loss(a))(x))));
    expect(kernels['Transpose']).toBeUndefined();
    // Another weight under the same marks (not the one update saw) takes the plain product, not the base's stale delta.
    const other = tf.tidy(() => tf.mul(w, 2));
    const [got, want] = [withSparseWeightGrads(new Map([[other, entries]]), () => matmul(any(x) as T2, any(other) as T2)), matmul(any(x) as T2, any(other) as T2)];
    expect(got.dataSync()).toEqual(want.dataSync());
    tf.dispose([got, want, other]);
    kept!.dispose();
    expect(tf.memory().numTensors).toBe(before);
    // Once a marked product has had many rows, the base is not kept: it would never be the cheaper.
    const many = rand([10_000, 40]);
    tf.dispose(withSparseWeightGrads(marks, () => matmul(any(many) as T2, any(w) as T2)));
    expect(keepBasePacked(entries, w0, 5)).toBeUndefined();
    tf.dispose([w0, w, x, R, many]);
    entries.dispose();
  });

  test('a marked filter used through a reshaped view (a 1×1 convolution as a matmul) takes the plain gradient, and is not probed', () => {
    const x = rand([6, 4]);
    const f = rand([1, 1, 4, 3]);
    const loss = (b: tf.Tensor) => tf.sum(tf.square(matmul(any(x) as T2, any(tf.reshape(b, [4, 3])) as T2)));
    const entries = sparseGradEntries([1, 1, 4, 3], [1, 5], true);
    if (entries === undefined) return expect(backend).not.toMatch(/^(wasm|cpu)$/);
    const [g] = withSparseWeightGrads(new Map([[f, entries]]), () => tf.grads(loss)([f]));
    const [dense] = tf.grads(loss)([f]);
    expect(g!.shape).toEqual([1, 1, 4, 3]);
    expect(g!.dataSync()).toEqual(dense!.dataSync());
    expect(withSparseWeightGrads(new Map([[f, entries]]), () => usedOnlyAsWeights([f], () => loss(f)))).toEqual([false]);
    tf.dispose([g!, dense!, x, f]);
    entries.dispose();
  });

  test('the probe\'s gradient is the dense gradient at the wanted entries, in their order, and the weight gets none', async () => {
    const x = rand([4, 5, 24]);
    const w = rand([24, 40]);
    const R = rand([4, 5, 40]);
    const flat = pick(24, 40, 30, 3);
    const entries = sparseGradEntries([24, 40], flat, true)!;
    const loss = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(linear(any(a) as T3, any(b) as T2), R));
    const before = tf.memory().numTensors;
    // Two uses of the weight: their shares add up in the probe's gradient.
    const twice = (a: tf.Tensor) => tf.add(loss(a, w), loss(tf.mul(a, 2), w));
    const [values] = withSparseWeightGrads(new Map([[w, entries]]), () => tf.grads(() => twice(x))([entries.probe]));
    const dense = tf.grads((b: tf.Tensor) => tf.add(loss(x, b), loss(tf.mul(x, 2), b)))([w])[0]!;
    expect(values!.shape).toEqual([30]);
    const d = dense.dataSync();
    const v = values!.dataSync();
    const scale = Math.max(...d.map(Math.abs));
    flat.forEach((f, q) => expect(Math.abs(v[q]! - d[f]!)).toBeLessThanOrEqual(1e-6 * scale));
    tf.dispose([values!, dense]);
    expect(tf.memory().numTensors).toBe(before);
    // The forward product alone: none for the weight's gradient, none for the data's.
    const k = await kernelsOf(() => withSparseWeightGrads(new Map([[w, entries]]), () => tf.grads(() => loss(x, w))([entries.probe])[0]!.dataSync()));
    expect(k['SparsetuneMatMul']).toBe(1);
    entries.dispose();
  });

  test('usedOnlyAsWeights: a weight used as a matmul weight only, or also otherwise', () => {
    const x = rand([6, 5]);
    const w = rand([5, 4]);
    const v = rand([5, 4]);
    const u = rand([5, 4]);
    const before = tf.memory().numTensors;
    const ok = usedOnlyAsWeights([w, v, u], () => tf.add(tf.sum(matmul(any(x) as T2, any(w) as T2)), tf.add(tf.sum(matmul(any(x) as T2, any(v) as T2)), tf.sum(v))));
    // w: matmul only; v: also summed; u: not used at all.
    expect(ok).toEqual([true, false, false]);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('outside withSparseWeightGrads, and for other weights, gradients are dense', () => {
    const x = rand([6, 5]);
    const w = rand([5, 4]);
    const v = rand([5, 4]);
    const entries = sparseGradEntries([5, 4], [0, 7], true)!;
    const loss = (a: tf.Tensor) => tf.sum(matmul(any(x) as T2, any(a) as T2));
    const dense = tf.grads(loss)([w])[0]!.dataSync();
    const other = withSparseWeightGrads(new Map([[v, entries]]), () => tf.grads(loss)([w])[0]!.dataSync());
    expect(other).toEqual(dense);
    expect(dense.filter((d) => d === 0).length).toBe(0);
    entries.dispose();
  });

  test('the cost model keeps dense gradients for many entries (a first-layer filter: only when whole), and rejects bad indices', () => {
    // At the threshold (entries · SPARSE_ENTRY_COST = K · N) the dense gradient is kept; one fewer goes sparse.
    const at = (8 * 8) / SPARSE_ENTRY_COST;
    expect(sparseGradEntries([8, 8], pick(8, 8, at, 1))).toBeUndefined();
    const below = sparseGradEntries([8, 8], pick(8, 8, at - 1, 1));
    expect(below?.count).toBe(at - 1);
    below?.dispose();
    expect(sparseGradEntries([4, 4, 4], [1])).toBeUndefined();
    // A first layer's filter (≤ 4 input channels) goes sparse whenever it is partly selected (its dense gradient is a
    // slow convolution): a 3×3×1×8 filter at 8 of its 72 entries, and at all but one; whole, it stays dense.
    const filter = sparseGradEntries([3, 3, 1, 8], pick(9, 8, 8, 1));
    expect(filter?.count).toBe(8);
    filter?.dispose();
    const most = sparseGradEntries([3, 3, 1, 8], [...Array(71).keys()]);
    expect(most?.count).toBe(71);
    most?.dispose();
    expect(sparseGradEntries([3, 3, 1, 8], [...Array(72).keys()])).toBeUndefined();
    // A wider filter takes the matrices' rule: a 3×3×8×8 one ([72, 8]) at 36 of 576 entries stays dense.
    expect(sparseGradEntries([3, 3, 8, 8], pick(72, 8, 36, 2))).toBeUndefined();
    const wide = sparseGradEntries([3, 3, 8, 8], pick(72, 8, 35, 2));
    expect(wide?.count).toBe(35);
    wide?.dispose();
    const few = sparseGradEntries([256, 256], [3, 9]);
    expect(few?.count).toBe(2);
    few?.dispose();
    expect(() => sparseGradEntries([2, 2], [4], true)).toThrow(RangeError);
  });

  test('a frozen filter gets no gradient, and nor does the data under the first conv', async () => {
    const x = rand([2, 6, 6, 3]);
    const f = rand([3, 3, 3, 4]);
    const conv = (a: tf.Tensor, b: tf.Tensor) => tf.sum(conv2d(any(a) as T4, any(b) as T4));
    // One forward convolution and one for the gradient asked for, not two.
    expect((await kernelsOf(() => tf.grads(conv)([x, f]).forEach((g) => g.dataSync())))['SparsetuneConv2D']).toBe(1);
    const onlyX = await kernelsOf(() => tf.grad((a: tf.Tensor) => conv(a, f))(x).dataSync());
    const onlyF = await kernelsOf(() => tf.grad((b: tf.Tensor) => conv(x, b))(f).dataSync());
    expect(onlyX['SparsetuneConv2D']).toBe(1);
    expect(onlyX['Conv2D']).toBe(1);
    expect(onlyF['SparsetuneConv2D']).toBe(1);
    expect(onlyF['Conv2D']).toBe(1);
    const dw = (b: tf.Tensor) => tf.sum(depthwiseConv2d(any(x) as T4, any(b) as T4, { padding: 'same' }));
    const onlyDw = await kernelsOf(() => tf.grad(dw)(rand([3, 3, 3, 2])).dataSync());
    expect(onlyDw['SparsetuneDepthwiseConv2D']).toBe(1);
    expect(onlyDw['DepthwiseConv2dNative']).toBe(1);
  });

  test('a frozen dense weight gets no gradient product', async () => {
    const x = rand([8, 5]);
    const w = rand([5, 4]);
    const k = await kernelsOf(() => tf.grad((a: tf.Tensor) => tf.sum(matmul(any(x) as T2, any(a) as T2)))(w).dataSync());
    // The forward product and the weight's gradient; no gradient for the data x.
    expect(k['SparsetuneMatMul']).toBe(2);
  });
});
