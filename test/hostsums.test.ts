// The sums behind sparse weight gradients (src/core/hostsums.ts): the
// WebAssembly function on tfjs's heap against a float64 reference and
// against the same loop in JavaScript.
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, expect, test } from 'vitest';
import { initBackend } from '../src/index.js';
import { entrySums, matrixOrigins, sumsInWasm } from '../src/core/hostsums.js';

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
});
