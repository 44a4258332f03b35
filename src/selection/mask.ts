/**
 * Masks: which entries of a parameter tree train. One byte per entry,
 * host-side; **1 always means trainable**. The masks of one spec form a
 * Boolean algebra (fp-ts `BooleanAlgebra`), and mixing masks of two specs is
 * an error rather than a silent broadcast.
 *
 * @module
 */
import type { BooleanAlgebra } from 'fp-ts/lib/BooleanAlgebra.js';
import type { Eq } from 'fp-ts/lib/Eq.js';
import type { Monoid } from 'fp-ts/lib/Monoid.js';
import * as tf from '@tensorflow/tfjs-core';
import { leafSize, mapTree, MaskError, paths, sameSpec, type LeafSpec, type ParamSpec, type Tree } from '../core/index.js';
import { countOnes } from './topk.js';

/**
 * A mask over a spec: for every leaf, one byte per entry (row-major), 1 = trainable.
 * @category Masks
 */
export interface Mask {
  /** The spec the mask covers. */
  readonly spec: ParamSpec;
  /** Per leaf, `leafSize` bytes of 0 or 1. */
  readonly bits: Tree<Uint8Array>;
}

/**
 * Throws a {@link MaskError} unless `mask` covers `spec`.
 * @example
 * ```ts
 * assertMaskFor(model.spec, mask); // throws a MaskError for another model's mask
 * ```
 * @category Masks
 */
export function assertMaskFor(spec: ParamSpec, mask: Mask, what = 'mask'): void {
  if (typeof mask !== 'object' || mask === null || typeof mask.spec !== 'object' || typeof mask.bits !== 'object' || mask.bits === null) {
    throw new MaskError(`${what}: expected a mask { spec, bits }, got ${String(mask)}`);
  }
  if (!sameSpec(spec, mask.spec)) {
    const a = paths(spec);
    const b = paths(mask.spec);
    const first = a.find((p) => !(p in mask.spec)) ?? b.find((p) => !(p in spec)) ?? a.find((p) => JSON.stringify(spec[p]) !== JSON.stringify(mask.spec[p]));
    throw new MaskError(`${what}: built for another spec (${a.length} leaves here, ${b.length} in the mask; first difference at '${first ?? '?'}')`);
  }
  for (const p of paths(spec)) checkBits(Object.hasOwn(mask.bits, p) ? mask.bits[p] : undefined, leafSize(spec[p]!), `${what}: leaf '${p}'`);
}

/**
 * A MaskError unless `bits` is a Uint8Array of `n` bytes, each 0 or 1: a 2
 * or a 255 would be counted as such by `countMask` and move sparse
 * optimizer state by that factor.
 */
function checkBits(bits: unknown, n: number, what: string): asserts bits is Uint8Array {
  if (!(bits instanceof Uint8Array)) throw new MaskError(`${what}: needs a Uint8Array of ${n} bytes, got ${bits === undefined ? 'nothing' : String(bits)}`);
  if (bits.length !== n) throw new MaskError(`${what}: needs ${n} entries, got ${bits.length}`);
  // OR of all bytes, four at a time where aligned (a byte loop took as long
  // as the top-k that made the mask): anything above 1 sets a bit above the
  // lowest of some byte.
  let any = 0;
  let i = 0;
  if (bits.byteOffset % 4 === 0) {
    const words = new Uint32Array(bits.buffer, bits.byteOffset, bits.length >>> 2);
    for (let w = 0; w < words.length; w++) any |= words[w]!;
    any = (any | (any >>> 8) | (any >>> 16) | (any >>> 24)) & 0xff;
    i = words.length * 4;
  }
  for (; i < bits.length; i++) any |= bits[i]!;
  if (any > 1) {
    const at = bits.findIndex((b) => b > 1);
    throw new MaskError(`${what}: byte ${at} is ${bits[at]}; mask bytes must be 0 (frozen) or 1 (trainable)`);
  }
}

/**
 * A mask from a per-leaf rule: a boolean (the whole leaf) or explicit bytes.
 * @example
 * ```ts
 * const heads = maskOf(model.spec, (leaf) => leaf.role === 'head');
 * ```
 * @category Masks
 */
export function maskOf(spec: ParamSpec, rule: (leaf: LeafSpec, path: string) => boolean | Uint8Array): Mask {
  const bits = mapTree(spec, (leaf, p) => {
    const r = rule(leaf, p);
    const n = leafSize(leaf);
    if (typeof r === 'boolean') return new Uint8Array(n).fill(r ? 1 : 0);
    checkBits(r, n, `maskOf: leaf '${p}'`);
    return r;
  });
  return { spec, bits };
}

/**
 * The Boolean algebra of the masks of one spec, with union and
 * intersection monoids and equality, as fp-ts instances.
 * @category Masks
 */
export interface MaskAlgebra extends BooleanAlgebra<Mask> {
  /** The spec every operand must cover. */
  readonly spec: ParamSpec;
  /** Union (`join`) with `zero` as identity. */
  readonly union: Monoid<Mask>;
  /** Intersection (`meet`) with `one` as identity. */
  readonly intersection: Monoid<Mask>;
  /** Entry-wise equality. */
  readonly eq: Eq<Mask>;
}

/**
 * The {@link MaskAlgebra} of `spec`: `join` = union, `meet` = intersection,
 * `not` = complement, `zero` = nothing trainable, `one` = everything,
 * `implies(a, b)` = ¬a ∨ b. Every operation checks its operands cover `spec`.
 * @example
 * ```ts
 * const A = maskAlgebra(model.spec);
 * const both = A.meet(gpsMask, bitfitMask);
 * A.eq.equals(A.join(m, A.not(m)), A.one); // true
 * ```
 * @category Masks
 */
export function maskAlgebra(spec: ParamSpec): MaskAlgebra {
  const check = (m: Mask) => assertMaskFor(spec, m, 'maskAlgebra');
  const zip = (a: Mask, b: Mask, f: (x: number, y: number) => number): Mask => {
    check(a);
    check(b);
    return maskOf(spec, (_, p) => {
      const x = a.bits[p]!;
      const y = b.bits[p]!;
      const out = new Uint8Array(x.length);
      for (let i = 0; i < out.length; i++) out[i] = f(x[i]!, y[i]!);
      return out;
    });
  };
  // Built on first use: a large model's all-ones mask is worth not making twice.
  let zero: Mask | undefined;
  let one: Mask | undefined;
  const join = (a: Mask, b: Mask) => zip(a, b, (x, y) => x | y);
  const meet = (a: Mask, b: Mask) => zip(a, b, (x, y) => x & y);
  const not = (a: Mask): Mask => {
    check(a);
    return maskOf(spec, (_, p) => a.bits[p]!.map((x) => 1 - x));
  };
  const algebra: MaskAlgebra = {
    spec,
    get zero() {
      return (zero ??= maskOf(spec, () => false));
    },
    get one() {
      return (one ??= maskOf(spec, () => true));
    },
    join,
    meet,
    not,
    implies: (a, b) => zip(a, b, (x, y) => (1 - x) | y),
    union: {
      concat: join,
      get empty() {
        return algebra.zero;
      },
    },
    intersection: {
      concat: meet,
      get empty() {
        return algebra.one;
      },
    },
    eq: {
      equals: (a, b) => {
        check(a);
        check(b);
        return paths(spec).every((p) => {
          const x = a.bits[p]!;
          const y = b.bits[p]!;
          return x.every((v, i) => v === y[i]);
        });
      },
    },
  };
  return algebra;
}

export { countOnes } from './topk.js';

/**
 * Trainable counts of a mask: overall, without the head (as the papers
 * report), per leaf and per depth.
 * @category Masks
 */
export interface MaskReport {
  /** Trainable entries. */
  readonly trainable: number;
  /** All entries. */
  readonly total: number;
  /** 100 · trainable / total. */
  readonly percent: number;
  /** Trainable entries outside the head. */
  readonly trainableNoHead: number;
  /** Entries outside the head. */
  readonly totalNoHead: number;
  /** 100 · trainableNoHead / totalNoHead. */
  readonly percentNoHead: number;
  /** Per leaf, in tree order. */
  readonly perLeaf: readonly { readonly path: string; readonly trainable: number; readonly total: number }[];
  /** Per block index (the first numeric path segment, `blocks.3…` → 3); `null` collects the rest. */
  readonly perDepth: readonly { readonly depth: number | null; readonly trainable: number; readonly total: number }[];
}

/**
 * The block index of a path: its first numeric segment, or `null`.
 * @example
 * ```ts
 * depthOf('blocks.3.attn.qkv.kernel'); // 3
 * ```
 * @category Masks
 */
export function depthOf(path: string): number | null {
  const seg = path.split('.').find((s) => /^[0-9]+$/.test(s));
  return seg === undefined ? null : Number(seg);
}

/**
 * Counts a mask.
 * @example
 * ```ts
 * const { trainable, percentNoHead, perDepth } = countMask(mask);
 * ```
 * @category Masks
 */
export function countMask(mask: Mask): MaskReport {
  const perLeaf = paths(mask.spec).map((p) => ({ path: p, trainable: countOnes(mask.bits[p]!), total: leafSize(mask.spec[p]!) }));
  const sum = (xs: typeof perLeaf, k: 'trainable' | 'total') => xs.reduce((s, x) => s + x[k], 0);
  const noHead = perLeaf.filter((x) => mask.spec[x.path]!.role !== 'head');
  const depths = new Map<number | null, { trainable: number; total: number }>();
  for (const x of perLeaf) {
    const d = depthOf(x.path);
    const e = depths.get(d) ?? { trainable: 0, total: 0 };
    depths.set(d, { trainable: e.trainable + x.trainable, total: e.total + x.total });
  }
  const pct = (a: number, b: number) => (b === 0 ? 0 : (100 * a) / b);
  const trainable = sum(perLeaf, 'trainable');
  const total = sum(perLeaf, 'total');
  return {
    trainable,
    total,
    percent: pct(trainable, total),
    trainableNoHead: sum(noHead, 'trainable'),
    totalNoHead: sum(noHead, 'total'),
    percentNoHead: pct(sum(noHead, 'trainable'), sum(noHead, 'total')),
    perLeaf,
    perDepth: [...depths.entries()].sort(([a], [b]) => (a ?? Infinity) - (b ?? Infinity)).map(([depth, v]) => ({ depth, ...v })),
  };
}

/**
 * The familiar one-line summary,
 * `trainable params: 1,234 || all params: 215,818 || trainable%: 0.5718`,
 * followed by the share without the head.
 * @example
 * ```ts
 * console.log(describeMask(select(gps(), env)));
 * ```
 * @category Masks
 */
export function describeMask(mask: Mask): string {
  const r = countMask(mask);
  const n = (x: number) => x.toLocaleString('en-US');
  return `trainable params: ${n(r.trainable)} || all params: ${n(r.total)} || trainable%: ${r.percent.toFixed(4)} (without the head: ${n(r.trainableNoHead)} of ${n(r.totalNoHead)}, ${r.percentNoHead.toFixed(4)}%)`;
}

/**
 * The trainable entries of each leaf as ascending flat indices (the form deltas and SPT use).
 * @example
 * ```ts
 * const idx = maskToIndices(mask)['blocks.0.mlp.fc1.kernel'];
 * ```
 * @category Masks
 */
export function maskToIndices(mask: Mask): Tree<Int32Array> {
  return mapTree(mask.bits, (bits) => {
    const out = new Int32Array(countOnes(bits));
    let j = 0;
    for (let i = 0; i < bits.length; i++) if (bits[i]) out[j++] = i;
    return out;
  });
}

/**
 * The mask with exactly the given flat indices trainable; leaves absent
 * from `indices` are frozen. Out-of-range indices and unknown leaves are a {@link MaskError}.
 * @example
 * ```ts
 * const m = maskFromIndices(model.spec, { 'head.bias': [0, 3] });
 * ```
 * @category Masks
 */
export function maskFromIndices(spec: ParamSpec, indices: Tree<ArrayLike<number>>): Mask {
  for (const p of Object.keys(indices)) if (!(p in spec)) throw new MaskError(`maskFromIndices: unknown leaf '${p}'`);
  return maskOf(spec, (leaf, p) => {
    const bits = new Uint8Array(leafSize(leaf));
    const idx = indices[p];
    if (idx === undefined) return bits;
    for (let i = 0; i < idx.length; i++) {
      const k = idx[i]!;
      if (!Number.isInteger(k) || k < 0 || k >= bits.length) throw new MaskError(`maskFromIndices: index ${k} is outside leaf '${p}' of ${bits.length} entries`);
      bits[k] = 1;
    }
    return bits;
  });
}

/**
 * The mask as boolean tensors, one per leaf with the leaf's shape (for
 * optimizers); the caller disposes them.
 * @example
 * ```ts
 * const bools = maskTensors(mask); // dispose with disposeTree(bools)
 * ```
 * @category Masks
 */
export function maskTensors(mask: Mask): Tree<tf.Tensor> {
  return mapTree(mask.bits, (bits, p) => tf.tensor(bits, [...mask.spec[p]!.shape], 'bool'));
}
