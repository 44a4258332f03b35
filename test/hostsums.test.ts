// The sums behind sparse weight gradients (src/core/hostsums.ts): the
// WebAssembly function on tfjs's heap against a float64 reference and
// against the same loop in JavaScript.
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, expect, test } from 'vitest';
import { batchMatmul, biasAdd, initBackend, layerNorm, mergeHeads, splitHeads, useStockGradients } from '../src/index.js';
import { fastMergeHeads, fastSplitHeads } from '../src/core/kernels.js';
import { adamRunsOn, batchMatMulInto, batchMatMulRunsOn, columnSumsInto, copyRunsOn, layerNormRunsOn, columnSumsInWasm, entrySums, matrixOrigins, sumsInWasm } from '../src/core/hostsums.js';

afterAll(async () => {
  await initBackend('wasm');
});

const problem = fc
  .record({ r: fc.integer({ min: 1, max: 21 }), k: fc.integer({ min: 1, max: 9 }), n: fc.integer({ min: 1, max: 9 }) })
  .chain(({ r, k, n }) =>
    fc.record({
      r: fc.constant(r),
      k: fc.constant(k),
      n: fc.constant(n),
      a: fc.array(fc.float({ min: -4, max: 4, noNaN: true }), { minLength: r * k, maxLength: r * k }),
      // Where each row starts in a: a matrix's r·k, or anywhere (a convolution's window corners overlap).
      origins: fc.oneof(fc.constant(undefined), fc.array(fc.nat((r - 1) * k), { minLength: r, maxLength: r })),
      g: fc.array(fc.float({ min: -4, max: 4, noNaN: true }), { minLength: r * n, maxLength: r * n }),
      entries: fc.array(fc.tuple(fc.nat(k - 1), fc.nat(n - 1)), { maxLength: 12 }),
    }),
  );

/** Σ_t a[origins[t] + i]·g[t, j] in float64, row by row. */
function reference(a: Float32Array, g: Float32Array, origins: Int32Array, n: number, entries: readonly (readonly [number, number])[]): number[] {
  return entries.map(([i, j]) => {
    let s = 0;
    for (let t = 0; t < origins.length; t++) s += a[origins[t]! + i]! * g[t * n + j]!;
    return s;
  });
}

test.each(['wasm', 'cpu'] as const)('on %s, the sums equal a float64 reference (the rows of a matrix or rows starting anywhere, any row count, a tail of rows past a multiple of 8, repeated entries), with nothing left behind', async (backend) => {
  await initBackend(backend);
  // On wasm the WebAssembly function must really run: a silent fall-back to JavaScript would pass the rest.
  expect(sumsInWasm()).toBe(backend === 'wasm');
  fc.assert(
    fc.property(problem, ({ r, k, n, a, g, origins: given, entries }) => {
      const origins = given ? Int32Array.from(given) : matrixOrigins(r, k);
      const before = tf.memory().numTensors;
      const at = tf.tensor2d(Float32Array.from(a), [r, k]);
      const gt = tf.tensor2d(Float32Array.from(g), [r, n]);
      const rows = Int32Array.from(entries, ([i]) => i);
      const cols = Int32Array.from(entries, ([, j]) => j);
      const want = reference(at.dataSync() as Float32Array, gt.dataSync() as Float32Array, origins, n, entries);
      for (const wasm of [true, false]) {
        const got = entrySums(at, gt, origins, n, rows, cols, tf.backend(), wasm);
        expect(got.length).toBe(entries.length);
        got.forEach((v, q) => expect(Math.abs(v - want[q]!)).toBeLessThanOrEqual(1e-12 * (1 + Math.abs(want[q]!))));
      }
      tf.dispose([at, gt]);
      expect(tf.memory().numTensors).toBe(before);
    }),
  );
});

test("the heap scratch is freed: 200 calls (320 KB of scratch each) leave wasm's heap where it was", async () => {
  await initBackend('wasm');
  const a = tf.randomNormal([64, 32]);
  const g = tf.randomNormal([64, 16]);
  const rows = Int32Array.from({ length: 20000 }, (_, q) => q % 32);
  const cols = Int32Array.from({ length: 20000 }, (_, q) => (q * 7) % 16);
  const heap = () => ((tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength);
  const origins = matrixOrigins(64, 32);
  const first = entrySums(a, g, origins, 16, rows, cols);
  const size = heap();
  let last = first;
  for (let i = 0; i < 200; i++) last = entrySums(a, g, origins, 16, rows, cols);
  expect(heap()).toBe(size);
  expect(last).toEqual(first);
  tf.dispose([a, g]);
});

test('a shared heap (the threaded wasm build of a cross-origin-isolated page) falls back to JavaScript instead of failing', () => {
  const shared = { wasm: { asm: { memory: new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }) } } } as unknown as tf.KernelBackend;
  expect(sumsInWasm(shared)).toBe(false);
  expect(sumsInWasm({} as tf.KernelBackend)).toBe(false);
  // The SIMD modules too: column sums then take tfjs's Sum, and Adam its ops (kernels.ts adamIsOneKernel).
  expect(columnSumsInWasm(shared)).toBe(false);
  expect(adamRunsOn(shared)).toBe(false);
});

// The column sums behind bias and layer-norm gradients (columnSumsInto, the
// SparsetuneColumnSum and SparsetuneBiasAdd kernels): tfjs's own Sum over the
// leading axes is the reference, bit for bit.
const bitsOf = (x: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(x).buffer));
const columns = fc
  .record({ lead: fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 3 }), c: fc.integer({ min: 1, max: 11 }) })
  .chain(({ lead, c }) => {
    const size = lead.reduce((a, b) => a * b, 1) * c;
    return fc.record({ shape: fc.constant([...lead, c] as number[]), values: fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: size, maxLength: size }) });
  });

test("on wasm, the SIMD column sums equal tfjs's Sum over the leading axes bit for bit (any leading shape, empty ones included, a tail of columns past a multiple of 4), and free their scratch", async () => {
  await initBackend('wasm');
  expect(columnSumsInWasm()).toBe(true);
  const heap = () => ((tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength);
  fc.assert(
    fc.property(columns, ({ shape, values }) => {
      const x = tf.tensor(values, shape);
      const ref = tf.sum(x, [...Array(shape.length - 1).keys()]);
      const out = new Float32Array(shape.at(-1)!);
      expect(columnSumsInto(x, out)).toBe(true);
      // Over no rows the sum is 0 (tfjs's wasm Sum then returns memory it never wrote).
      expect(bitsOf(out)).toEqual(values.length === 0 ? bitsOf(out.map(() => 0)) : bitsOf(ref.dataSync()));
      tf.dispose([x, ref]);
    }),
  );
  const x = tf.randomNormal([300, 67]);
  const out = new Float32Array(67);
  columnSumsInto(x, out);
  const size = heap();
  for (let i = 0; i < 200; i++) columnSumsInto(x, out);
  expect(heap()).toBe(size);
  x.dispose();
  expect(columnSumsInWasm({} as tf.KernelBackend)).toBe(false);
  const z = tf.zeros([2, 2]);
  expect(columnSumsInto(z, new Float32Array(2), {} as tf.KernelBackend)).toBe(false);
  z.dispose();
  // biasAdd of another dtype goes through tf.add, which casts (a kernel called directly would read int32 bits as floats).
  const sum = biasAdd(tf.ones([2, 3]) as never, tf.tensor1d([1, 2, 3], 'int32') as never);
  expect(Array.from(sum.dataSync())).toEqual([2, 3, 4, 2, 3, 4]);
  sum.dispose();
});

test.each(['wasm', 'cpu'] as const)("on %s, biasAdd's gradients equal tfjs's own Add's, and layerNorm's scale and shift gradients tfjs's Sum of theirs, bit for bit; nothing leaks", async (backend) => {
  await initBackend(backend);
  fc.assert(
    fc.property(columns, fc.integer(), ({ shape, values }, seed) => {
      const c = shape.at(-1)!;
      const x = tf.tensor(values.map((v) => Math.max(-1e6, Math.min(1e6, v))), shape);
      const b = tf.tensor1d(Array.from({ length: c }, (_, i) => Math.sin(seed + i)));
      const gamma = tf.tensor1d(Array.from({ length: c }, (_, i) => Math.cos(seed + 2 * i)));
      const dy = tf.tensor(Array.from({ length: values.length }, (_, i) => Math.sin(seed * 3 + i)), shape);
      const lead = [...Array(shape.length - 1).keys()];
      const biasGrads = (stock: boolean) => {
        useStockGradients(stock);
        try {
          return tf.tidy(() => tf.grads((xx: tf.Tensor, bb: tf.Tensor) => biasAdd(xx as never, bb as never))([x, b], dy).map((t) => bitsOf(t.dataSync())));
        } finally {
          useStockGradients(false);
        }
      };
      const before = tf.memory().numTensors;
      // (Over no rows tfjs's wasm Sum returns memory it never wrote: compared where there are rows.)
      if (values.length > 0) expect(biasGrads(false)).toEqual(biasGrads(true));
      const [dGamma, dBeta, expected] = tf.tidy(() => {
        const [, dg, db] = tf.grads((xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => layerNorm(xx as never, gg as never, bb as never))([x, gamma, b], dy);
        // x̂ as layerNorm computes it (kernels.ts fastLayerNorm), and tfjs's Sum over the leading axes.
        const centred = tf.sub(x, tf.mean(x, -1, true));
        const xhat = tf.mul(centred, tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), 1e-5)));
        return [bitsOf(dg!.dataSync()), bitsOf(db!.dataSync()), [tf.sum(tf.mul(dy, xhat), lead), tf.sum(dy, lead)].map((t) => bitsOf(t.dataSync()))];
      });
      // (On wasm a width that is a multiple of 4 takes layerNorm's SIMD kernels, whose x̂ rounds otherwise: tested below.)
      if (values.length > 0 && (backend === 'cpu' || c % 4 !== 0)) expect([dGamma, dBeta]).toEqual(expected);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, b, gamma, dy]);
    }),
  );
});

/** Σ_t a[p][i, t]·b[p][t, j] (a[p][t, i] transposed), each sum in float32 in t's order: what the SIMD function computes. */
function batchReference(a: Float32Array, b: Float32Array, batch: number, m: number, k: number, n: number, transposeA: boolean): Float32Array {
  const out = new Float32Array(batch * m * n);
  for (let p = 0; p < batch; p++)
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let t = 0; t < k; t++) s = Math.fround(s + Math.fround(a[p * m * k + (transposeA ? t * m + i : i * k + t)]! * b[p * k * n + t * n + j]!));
        out[(p * m + i) * n + j] = s;
      }
  return out;
}

const products = fc
  .record({ batch: fc.integer({ min: 1, max: 5 }), m: fc.integer({ min: 1, max: 9 }), k: fc.integer({ min: 0, max: 9 }), n: fc.integer({ min: 1, max: 11 }), transposeA: fc.boolean() })
  .chain((d) =>
    fc.record({
      d: fc.constant(d),
      a: fc.array(fc.float({ min: -4, max: 4, noNaN: true }), { minLength: d.batch * d.m * d.k, maxLength: d.batch * d.m * d.k }),
      b: fc.array(fc.float({ min: -4, max: 4, noNaN: true }), { minLength: d.batch * d.k * d.n, maxLength: d.batch * d.k * d.n }),
    }),
  );

test("on wasm, the batched product equals each sum taken in float32 in order, bit for bit (any shape, a's transpose, a column tail past a multiple of 4, no inner dimension)", async () => {
  await initBackend('wasm');
  expect(batchMatMulRunsOn()).toBe(true);
  fc.assert(
    fc.property(products, ({ d: { batch, m, k, n, transposeA }, a, b }) => {
      const ta = tf.tensor(a, [batch, ...(transposeA ? [k, m] : [m, k])]);
      const tb = tf.tensor(b, [batch, k, n]);
      const out = tf.fill([batch, m, n], Number.NaN);
      expect(batchMatMulInto(ta, tb, out, transposeA)).toBe(true);
      expect(bitsOf(out.dataSync())).toEqual(bitsOf(batchReference(Float32Array.from(a), Float32Array.from(b), batch, m, k, n, transposeA)));
      tf.dispose([ta, tb, out]);
    }),
  );
  expect(batchMatMulRunsOn({} as tf.KernelBackend)).toBe(false);
});

test.each(['wasm', 'cpu'] as const)("on %s, batchMatmul of several matrices (our SIMD product on wasm) equals tfjs's matMul to float rounding, values and gradients, with nothing leaked", async (backend) => {
  await initBackend(backend);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 19 }), fc.integer({ min: 1, max: 19 }), fc.integer({ min: 1, max: 19 }), fc.integer(), (l0, l1, m, k, n, seed) => {
      const x = tf.tensor(Array.from({ length: l0 * l1 * m * k }, (_, i) => Math.sin(seed + i)), [l0, l1, m, k]);
      const w = tf.tensor(Array.from({ length: l0 * l1 * k * n }, (_, i) => Math.cos(seed + 3 * i)), [l0, l1, k, n]);
      const dy = tf.tensor(Array.from({ length: l0 * l1 * m * n }, (_, i) => Math.sin(seed * 7 + i)), [l0, l1, m, n]);
      const before = tf.memory().numTensors;
      const run = (f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor) =>
        tf.tidy(() => [f(x, w), ...tf.grads((a: tf.Tensor, b: tf.Tensor) => f(a, b))([x, w], dy)].map((t) => Array.from(t.dataSync())));
      const ours = run((a, b) => batchMatmul(a as never, b as never));
      const theirs = run((a, b) => tf.matMul(a, b));
      expect(tf.memory().numTensors).toBe(before);
      for (let o = 0; o < 3; o++) for (let i = 0; i < ours[o]!.length; i++) expect(Math.abs(ours[o]![i]! - theirs[o]![i]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(theirs[o]![i]!)) * k);
      tf.dispose([x, w, dy]);
    }),
  );
});

test.each(['wasm', 'cpu'] as const)("on %s, the heads kernels (one part or a fused q/k/v's three) give tfjs's split, reshape and transpose, values and gradients bit for bit, and a part without gradient counts as zeros; nothing leaks", async (backend) => {
  await initBackend(backend);
  // On wasm the runs are copied in WebAssembly (a fall-back to JavaScript would pass the rest).
  expect(copyRunsOn()).toBe(backend === 'wasm');
  const heads = fc.record({ b: fc.integer({ min: 1, max: 3 }), t: fc.integer({ min: 1, max: 6 }), h: fc.integer({ min: 1, max: 4 }), e: fc.integer({ min: 1, max: 5 }), p: fc.constantFrom(1, 3), used: fc.integer({ min: 1, max: 7 }), seed: fc.integer() });
  fc.assert(
    fc.property(heads, ({ b, t, h, e, p, used, seed }) => {
      const x = tf.tensor(Array.from({ length: b * t * p * h * e }, (_, i) => Math.sin(seed + i)), [b, t, p * h * e]);
      const dys = Array.from({ length: p }, (_, q) => tf.tensor(Array.from({ length: b * h * t * e }, (_, i) => Math.cos(seed + 5 * i + q)), [b, h, t, e]));
      // The loss reaches the parts in `used` (a bit per part; at least one).
      const reached = (q: number) => p === 1 || ((used >> q) & 1) === 1;
      const run = (stock: boolean) => {
        useStockGradients(stock);
        try {
          return tf.tidy(() => {
            const parts = fastSplitHeads(x, h, p);
            // Ours leaves the other parts out of the loss (no gradient reaches them); the reference multiplies them by 0.
            const terms = (zs: tf.Tensor[]) => zs.flatMap((z, q) => (reached(q) ? [tf.sum(tf.mul(z, dys[q]!))] : stock ? [tf.sum(tf.mul(z, 0))] : []));
            const [dx] = tf.grads((xx: tf.Tensor) => tf.addN(terms(fastSplitHeads(xx, h, p))))([x]);
            const merged = fastMergeHeads(parts);
            const [dm] = tf.grads((...zs: tf.Tensor[]) => tf.sum(tf.mul(fastMergeHeads(zs), x)))(parts);
            return [...parts, dx!, merged, dm!].map((z) => bitsOf(z.dataSync()));
          });
        } finally {
          useStockGradients(false);
        }
      };
      const before = tf.memory().numTensors;
      const ours = run(false);
      expect(ours).toEqual(run(true));
      // The merge of the split is x itself.
      expect(ours[p + 1]).toEqual(bitsOf(x.dataSync()));
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, ...dys]);
    }),
  );
  // splitHeads and mergeHeads take the kernels too.
  const x = tf.tensor(Array.from({ length: 2 * 3 * 8 }, (_, i) => i), [2, 3, 8]);
  const q = splitHeads(x as never, 4);
  expect(q.shape).toEqual([2, 4, 3, 2]);
  expect(Array.from(mergeHeads(q).dataSync())).toEqual(Array.from(x.dataSync()));
  tf.dispose([x, q]);
});

test("on wasm, layerNorm's SIMD kernels give the ops' values and gradients to float rounding (any leading shape, widths that are multiples of 4, others through the ops), and nothing leaks, gradient or not", async () => {
  await initBackend('wasm');
  expect(layerNormRunsOn()).toBe(true);
  const dims = fc.record({ lead: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }), d: fc.integer({ min: 1, max: 24 }), scale: fc.double({ min: 0.1, max: 100, noNaN: true }), seed: fc.integer() });
  fc.assert(
    fc.property(dims, ({ lead, d, scale, seed }) => {
      const shape = [...lead, d];
      const n = shape.reduce((a, b) => a * b, 1);
      const x = tf.tensor(Array.from({ length: n }, (_, i) => scale * Math.sin(seed + 1.3 * i) + Math.cos(seed)), shape);
      const gamma = tf.tensor1d(Array.from({ length: d }, (_, i) => Math.cos(seed + 2 * i)));
      const beta = tf.tensor1d(Array.from({ length: d }, (_, i) => Math.sin(seed - i)));
      const dy = tf.tensor(Array.from({ length: n }, (_, i) => Math.sin(seed * 3 + i)), shape);
      const run = (stock: boolean) => {
        useStockGradients(stock);
        try {
          return tf.tidy(() => {
            const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => layerNorm(a as never, g as never, b as never);
            return [f(x, gamma, beta), ...tf.grads(f)([x, gamma, beta], dy)].map((t) => Array.from(t.dataSync()));
          });
        } finally {
          useStockGradients(false);
        }
      };
      const before = tf.memory().numTensors;
      const ours = run(false);
      const theirs = run(true);
      // Without a tape the kernel's extra outputs are freed too.
      tf.dispose(layerNorm(x as never, gamma as never, beta as never));
      expect(tf.memory().numTensors).toBe(before);
      const rows = n / d;
      for (let o = 0; o < 4; o++) {
        // dγ and dβ sum over the rows: their rounding grows with them (and at least 16 terms' worth:
        // at the smallest widths and scales the variance cancels and a few ulps of 1/σ show).
        const tol = 2e-5 * Math.max(16, o >= 2 ? rows : d);
        for (let i = 0; i < ours[o]!.length; i++) expect(Math.abs(ours[o]![i]! - theirs[o]![i]!)).toBeLessThanOrEqual(tol * (1 + Math.abs(theirs[o]![i]!)));
      }
      tf.dispose([x, gamma, beta, dy]);
    }),
  );
});
