/**
 * Seeded randomness. All randomness in the library comes from here and is
 * drawn on the host, so one seed reproduces initialisation, shuffling,
 * augmentation and random selection bit for bit — on every backend.
 * `fork(label)` derives an independent stream from a label, so what one
 * consumer draws never shifts what another sees (adding a layer does not
 * change the initialisation of the others).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './errors.js';

/**
 * A seeded pseudo-random stream (sfc32, seeded through a string hash).
 * @category Randomness
 */
export interface Rng {
  /** The seed and labels this stream was derived from, for messages and caches. */
  readonly key: string;
  /** Uniform in [0, 1), 32 bits of resolution. */
  uniform(): number;
  /** Standard normal (Box–Muller). */
  normal(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** A new array with the items in a uniformly random order (Fisher–Yates). */
  shuffle<T>(items: readonly T[]): T[];
  /** An independent stream derived from this one's key and `label`; does not advance this stream. */
  fork(label: string | number): Rng;
}

// cyrb128: a fast string hash spreading a key over four 32-bit words.
function hash128(key: string): [number, number, number, number] {
  let h1 = 1779033703;
  let h2 = 3144134277;
  let h3 = 1013904242;
  let h4 = 2773480762;
  for (let i = 0; i < key.length; i++) {
    const k = key.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  return [(h1 ^ h2 ^ h3 ^ h4) >>> 0, (h2 ^ h1) >>> 0, (h3 ^ h1) >>> 0, (h4 ^ h1) >>> 0];
}

function fromKey(key: string): Rng {
  let [a, b, c, d] = hash128(key);
  const next = (): number => {
    // sfc32
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i++) next(); // let the state mix before use
  let spare: number | undefined;
  const rng: Rng = {
    key,
    uniform: next,
    normal() {
      if (spare !== undefined) {
        const s = spare;
        spare = undefined;
        return s;
      }
      const u = 1 - next(); // (0, 1], so log is finite
      const v = next();
      const r = Math.sqrt(-2 * Math.log(u));
      spare = r * Math.sin(2 * Math.PI * v);
      return r * Math.cos(2 * Math.PI * v);
    },
    int(n) {
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`Rng.int: n must be a positive integer, got ${n}`);
      return Math.floor(next() * n);
    },
    shuffle(items) {
      const out = [...items];
      for (let i = out.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [out[i], out[j]] = [out[j]!, out[i]!];
      }
      return out;
    },
    fork: (label) => fromKey(`${key}/${label}`),
  };
  return rng;
}

/**
 * A stream from an integer seed.
 * @example
 * ```ts
 * const r = rng(42);
 * const initRng = r.fork('init'); // independent of r.fork('shuffle')
 * ```
 * @category Randomness
 */
export function rng(seed: number): Rng {
  if (!Number.isSafeInteger(seed)) throw new ConfigError(`rng: seed must be a safe integer, got ${seed}`);
  return fromKey(String(seed));
}

/**
 * A float32 tensor of i.i.d. normal draws, scaled by `std`.
 * @example
 * ```ts
 * const w = randomNormal(rng(0), [784, 10], 0.02);
 * ```
 * @category Randomness
 */
export function randomNormal(r: Rng, shape: readonly number[], std = 1): tf.Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = r.normal() * std;
  return tf.tensor(data, [...shape], 'float32');
}

/**
 * A float32 tensor of i.i.d. uniform draws in [lo, hi).
 * @example
 * ```ts
 * const noise = randomUniform(rng(0).fork('noise'), [4, 28, 28, 1], -0.1, 0.1);
 * ```
 * @category Randomness
 */
export function randomUniform(r: Rng, shape: readonly number[], lo = 0, hi = 1): tf.Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = lo + (hi - lo) * r.uniform();
  return tf.tensor(data, [...shape], 'float32');
}
