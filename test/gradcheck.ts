// Gradient checks shared by the tests: analytic gradients against central
// finite differences along a random direction, and against the gradients
// tfjs computes for a reference function on the cpu backend.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe } from 'vitest';
import { rng, randomNormal } from '../src/index.js';

type Fn = (...xs: tf.Tensor[]) => tf.Tensor;

/** The scalar loss sum(f(xs) · R) with a fixed random R, so every output entry matters. */
function weighted(f: Fn, seed: number): (...xs: tf.Tensor[]) => tf.Scalar {
  let r: tf.Tensor | undefined;
  return (...xs) => {
    const y = f(...xs);
    r ??= tf.keep(randomNormal(rng(seed).fork('R'), y.shape));
    return tf.sum(tf.mul(y, r));
  };
}

/** max |a − b| / max(|b|, tiny), over all inputs. */
export function relErr(a: readonly tf.Tensor[], b: readonly tf.Tensor[]): number {
  let num = 0;
  let den = 1e-12;
  a.forEach((t, i) => {
    const x = t.dataSync();
    const y = b[i]!.dataSync();
    for (let k = 0; k < x.length; k++) {
      num = Math.max(num, Math.abs(x[k]! - y[k]!));
      den = Math.max(den, Math.abs(y[k]!));
    }
  });
  return num / den;
}

export function grads(f: Fn, xs: tf.Tensor[], seed = 7): tf.Tensor[] {
  return tf.grads(weighted(f, seed))(xs);
}

/**
 * Relative error between the gradient and central finite differences of the
 * same loss, along the gradient's own direction ĝ = g/|g|: there the
 * directional derivative is |g|, the largest signal float32 differences can
 * resolve, and any error e in g shows (⟨g_true, ĝ⟩ < |g| unless e = 0).
 * Returns |D(h) − |g|| / |g| with D(h) = (L(x+hĝ) − L(x−hĝ)) / 2h.
 */
export function finiteDifferenceError(f: Fn, xs: tf.Tensor[], h = 1e-2, seed = 7): number {
  const loss = weighted(f, seed);
  const g = tf.grads(loss)(xs);
  const norm = Math.sqrt(g.reduce((s, gi) => s + tf.sum(tf.square(gi)).dataSync()[0]!, 0));
  if (norm === 0) return 0;
  const at = (step: number) => tf.tidy(() => loss(...xs.map((x, i) => tf.add(x, tf.mul(g[i]!, (step * h) / norm)))).dataSync()[0]!);
  const numeric = (at(1) - at(-1)) / (2 * h);
  return Math.abs(numeric - norm) / norm;
}

/** Gradients of `reference` computed by tfjs's own registered gradients on the cpu backend. */
export async function cpuReferenceGrads(reference: Fn, xs: tf.Tensor[], seed = 7): Promise<tf.Tensor[]> {
  const previous = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    const moved = xs.map((x) => tf.tensor(x.dataSync(), x.shape));
    return grads(reference, moved, seed).map((g) => tf.tensor(g.dataSync(), g.shape));
  } finally {
    await tf.setBackend(previous);
  }
}

/** A describe block per backend the tests can reach (wasm, cpu), each switched to for its block and back after. */
export function describeOnBackends(body: (backend: 'wasm' | 'cpu') => void): void {
  describe.each(['wasm', 'cpu'] as const)('on %s', (backend) => {
    let previous = '';
    beforeAll(async () => {
      previous = tf.getBackend();
      await tf.setBackend(backend);
    });
    afterAll(async () => {
      await tf.setBackend(previous);
    });
    body(backend);
  });
}
