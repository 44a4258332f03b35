/**
 * Parameter trees: flat, path-keyed records in one deterministic order, and
 * the spec that gives every leaf its meaning (shape, role, neuron axis).
 * The neuron axis is the single fact that makes neuron-level selection
 * model-agnostic: every other axis is that neuron's fan-in.
 *
 * @module
 */
import type * as tf from '@tensorflow/tfjs-core';
import { SpecError } from './errors.js';

/**
 * What a leaf is for. Selectors and presets filter on it.
 * @category Parameter trees
 */
export type Role = 'kernel' | 'bias' | 'norm' | 'embedding' | 'token' | 'head' | 'adapter';

/**
 * One leaf of a parameter spec.
 * @category Parameter trees
 */
export interface LeafSpec {
  /** Dims of the leaf, e.g. `[784, 256]` for a dense kernel. */
  readonly shape: readonly number[];
  /** Element type; parameters are float32. */
  readonly dtype: 'float32';
  /** What the leaf is for. */
  readonly role: Role;
  /**
   * Axis indexing the neurons (output units / channels): `1` for a dense
   * kernel `[in, out]`, `3` for a conv filter `[kh, kw, in, out]`, `0` for a
   * vector. Every other axis is the neuron's fan-in.
   */
  readonly neuronAxis: number;
}

/**
 * A flat record from dotted paths (`'blocks.0.attn.qkv.kernel'`) to leaves,
 * with keys in {@link comparePaths} order.
 * @category Parameter trees
 */
export type Tree<T> = { readonly [path: string]: T };

/**
 * The spec of a model's parameters.
 * @category Parameter trees
 */
export type ParamSpec = Tree<LeafSpec>;

/**
 * A model's parameters.
 * @category Parameter trees
 */
export type Params = Tree<tf.Tensor>;

const SEGMENT = /^[A-Za-z_][A-Za-z0-9_]*$|^[0-9]+$/;

/**
 * Natural order of dotted paths: segment by segment, numbers numerically
 * (`blocks.2` before `blocks.10`), names by code point. Depth order and
 * every tie-break in selection follow from it.
 * @example
 * ```ts
 * ['blocks.10.bias', 'blocks.2.bias'].sort(comparePaths); // ['blocks.2.bias', 'blocks.10.bias']
 * ```
 * @category Parameter trees
 */
export function comparePaths(a: string, b: string): number {
  const sa = a.split('.');
  const sb = b.split('.');
  for (let i = 0; i < Math.min(sa.length, sb.length); i++) {
    const x = sa[i]!;
    const y = sb[i]!;
    if (x === y) continue;
    const nx = /^[0-9]+$/.test(x);
    const ny = /^[0-9]+$/.test(y);
    if (nx && ny) return Number(x) - Number(y);
    if (nx !== ny) return nx ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return sa.length - sb.length;
}

function checkPath(path: string): void {
  const segs = path.split('.');
  // A path made of one number would be reordered by JavaScript's own key order.
  if (segs.length < 2 && /^[0-9]+$/.test(path)) throw new SpecError(`tree: path '${path}' must not be a bare number`);
  if (!segs.every((s) => SEGMENT.test(s))) {
    throw new SpecError(`tree: path '${path}' must be dot-separated names ([A-Za-z_][A-Za-z0-9_]*) or indices`);
  }
  // Trees are plain objects: as a key, '__proto__' is dropped by some
  // writers and 'constructor' or 'toString' are found on every object, so a
  // lookup or an `in` check would see a leaf that is not there.
  if (path in Object.prototype) throw new SpecError(`tree: path '${path}' is a property of every JavaScript object; rename the leaf`);
}

/**
 * Builds a tree from entries, sorted by {@link comparePaths} and frozen.
 * Duplicate or malformed paths are a {@link SpecError}.
 * @example
 * ```ts
 * const t = tree([['b.kernel', 1], ['a.bias', 2]]); // keys: 'a.bias', 'b.kernel'
 * ```
 * @category Parameter trees
 */
export function tree<T>(entries: Iterable<readonly [string, T]>): Tree<T> {
  const list = [...entries];
  list.forEach(([p]) => checkPath(p));
  list.sort(([a], [b]) => comparePaths(a, b));
  for (let i = 1; i < list.length; i++) {
    if (list[i]![0] === list[i - 1]![0]) throw new SpecError(`tree: path '${list[i]![0]}' appears twice`);
  }
  return Object.freeze(Object.fromEntries(list));
}

/**
 * The paths of a tree, in tree order.
 * @example
 * ```ts
 * paths(model.spec); // every leaf path, in comparePaths order
 * ```
 * @category Parameter trees
 */
export function paths<T>(t: Tree<T>): string[] {
  return Object.keys(t);
}

/**
 * Applies `f` to every leaf, keeping paths and order.
 * @example
 * ```ts
 * const sizes = mapTree(model.spec, (leaf) => leafSize(leaf));
 * ```
 * @category Parameter trees
 */
export function mapTree<A, B>(t: Tree<A>, f: (leaf: A, path: string) => B): Tree<B> {
  return Object.freeze(Object.fromEntries(Object.entries(t).map(([p, v]) => [p, f(v, p)])));
}

/**
 * Combines two trees of the same paths leaf by leaf; different paths are a {@link SpecError}.
 * @example
 * ```ts
 * const diff = zipTree(tuned, params, (a, b) => a.sub(b));
 * ```
 * @category Parameter trees
 */
export function zipTree<A, B, C>(a: Tree<A>, b: Tree<B>, f: (x: A, y: B, path: string) => C): Tree<C> {
  assertSamePaths(a, b, 'zipTree');
  return mapTree(a, (x, p) => f(x, b[p]!, p));
}

/**
 * Throws a {@link SpecError} naming the first missing and extra paths when `a` and `b` differ in paths.
 * @example
 * ```ts
 * assertSamePaths(model.spec, params, 'params'); // throws a SpecError naming missing and extra paths
 * ```
 * @category Parameter trees
 */
export function assertSamePaths(a: Tree<unknown>, b: Tree<unknown>, what: string): void {
  const missing = paths(a).filter((p) => !(p in b));
  const extra = paths(b).filter((p) => !(p in a));
  if (missing.length || extra.length) {
    const list = (xs: string[]) => (xs.length ? xs.slice(0, 3).join(', ') + (xs.length > 3 ? `, … (${xs.length})` : '') : 'none');
    throw new SpecError(`${what}: trees differ: missing ${list(missing)}; extra ${list(extra)}`);
  }
}

/**
 * The leaves for which `keep` holds.
 * @example
 * ```ts
 * const heads = filterTree(model.spec, (leaf) => leaf.role === 'head');
 * ```
 * @category Parameter trees
 */
export function filterTree<T>(t: Tree<T>, keep: (leaf: T, path: string) => boolean): Tree<T> {
  return Object.freeze(Object.fromEntries(Object.entries(t).filter(([p, v]) => keep(v, p))));
}

/**
 * Splits a tree in two by a predicate; {@link combine} puts it back together.
 * @example
 * ```ts
 * const [biases, rest] = partitionTree(params, (_t, path) => path.endsWith('.bias'));
 * const back = combine(biases, rest); // same tree as params
 * ```
 * @category Parameter trees
 */
export function partitionTree<T>(t: Tree<T>, keep: (leaf: T, path: string) => boolean): [Tree<T>, Tree<T>] {
  return [filterTree(t, keep), filterTree(t, (v, p) => !keep(v, p))];
}

/**
 * Joins trees with disjoint paths into one, in tree order; a shared path is a {@link SpecError}.
 * @example
 * ```ts
 * const full = combine(backboneParams, model.initHead(0));
 * ```
 * @category Parameter trees
 */
export function combine<T>(...trees: Tree<T>[]): Tree<T> {
  return tree(trees.flatMap((t) => Object.entries(t)));
}

/**
 * A predicate on paths from a glob: `*` matches one segment, `**` any
 * number of segments (zero included). `'blocks.*.attn.**'`, `'head.*'`.
 * @example
 * ```ts
 * const isAttn = pathMatcher('blocks.*.attn.**');
 * isAttn('blocks.0.attn.qkv.kernel'); // true
 * ```
 * @category Parameter trees
 */
export function pathMatcher(pattern: string): (path: string) => boolean {
  const pat = pattern.split('.');
  const match = (pi: number, si: number, segs: string[]): boolean => {
    if (pi === pat.length) return si === segs.length;
    const p = pat[pi]!;
    if (p === '**') {
      for (let k = si; k <= segs.length; k++) if (match(pi + 1, k, segs)) return true;
      return false;
    }
    return si < segs.length && (p === '*' || p === segs[si]) && match(pi + 1, si + 1, segs);
  };
  return (path) => match(0, 0, path.split('.'));
}

/**
 * Number of entries of one leaf.
 * @example
 * ```ts
 * leafSize({ shape: [784, 10], dtype: 'float32', role: 'kernel', neuronAxis: 1 }); // 7840
 * ```
 * @category Parameter trees
 */
export function leafSize(leaf: LeafSpec): number {
  return leaf.shape.reduce((p, d) => p * d, 1);
}

/**
 * Total number of entries of a spec.
 * @example
 * ```ts
 * const total = countEntries(model.spec); // number of parameters
 * ```
 * @category Parameter trees
 */
export function countEntries(spec: ParamSpec): number {
  return Object.values(spec).reduce((n, l) => n + leafSize(l), 0);
}

const keys = new WeakMap<ParamSpec, string>();
/**
 * A string that equal specs share: paths (in order), shapes, roles and
 * neuron axes. Masks compare specs with it and deltas record its CRC-32, so
 * "the same model" means one thing everywhere. Memoised per spec object.
 * @example
 * ```ts
 * specKey(mlp(config).spec) === specKey(mlp(config).spec); // true: same architecture
 * ```
 * @category Parameter trees
 */
export function specKey(spec: ParamSpec): string {
  let k = keys.get(spec);
  if (k === undefined) {
    k = JSON.stringify(paths(spec).map((p) => [p, spec[p]!.shape, spec[p]!.role, spec[p]!.neuronAxis]));
    keys.set(spec, k);
  }
  return k;
}

/**
 * Whether two specs describe the same parameters (equal {@link specKey}s).
 * @example
 * ```ts
 * sameSpec(mask.spec, model.spec)
 * ```
 * @category Parameter trees
 */
export function sameSpec(a: ParamSpec, b: ParamSpec): boolean {
  return a === b || specKey(a) === specKey(b);
}

/**
 * Builds a spec, checking each leaf (integer dims ≥ 0, neuron axis in range).
 * @example
 * ```ts
 * const spec = paramSpec([
 *   ['head.kernel', { shape: [64, 10], role: 'head', neuronAxis: 1 }],
 *   ['head.bias', { shape: [10], role: 'head', neuronAxis: 0 }],
 * ]);
 * ```
 * @category Parameter trees
 */
export function paramSpec(entries: Iterable<readonly [string, Omit<LeafSpec, 'dtype'> & { dtype?: 'float32' }]>): ParamSpec {
  return tree(
    [...entries].map(([p, l]) => {
      if (!l.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new SpecError(`paramSpec: leaf '${p}': bad shape [${l.shape.join(', ')}]`);
      const rank = Math.max(l.shape.length, 1);
      if (!Number.isInteger(l.neuronAxis) || l.neuronAxis < 0 || l.neuronAxis >= rank) {
        throw new SpecError(`paramSpec: leaf '${p}': neuron axis ${l.neuronAxis} is out of range for shape [${l.shape.join(', ')}]`);
      }
      return [p, Object.freeze({ shape: Object.freeze([...l.shape]), dtype: 'float32', role: l.role, neuronAxis: l.neuronAxis })] as const;
    }),
  );
}

/**
 * Checks that `params` matches `spec`: the same paths, each tensor of its leaf's shape and dtype.
 * @example
 * ```ts
 * assertMatchesSpec(model.spec, params); // throws a SpecError on a missing leaf or a wrong shape
 * ```
 * @category Parameter trees
 */
export function assertMatchesSpec(spec: ParamSpec, params: Params, what = 'params'): void {
  assertSamePaths(spec, params, what);
  for (const p of paths(spec)) {
    const leaf = spec[p]!;
    const t = params[p]!;
    const same = t.shape.length === leaf.shape.length && t.shape.every((d, i) => d === leaf.shape[i]);
    if (!same || t.dtype !== leaf.dtype) {
      throw new SpecError(`${what}: leaf '${p}': expected ${leaf.dtype} [${leaf.shape.join(', ')}], got ${t.dtype} [${t.shape.join(', ')}]`);
    }
  }
}

/**
 * Disposes every tensor of a tree.
 * @example
 * ```ts
 * disposeTree(params); // frees every tensor of the tree
 * ```
 * @category Parameter trees
 */
export function disposeTree(t: Tree<tf.Tensor>): void {
  for (const v of Object.values(t)) v.dispose();
}
