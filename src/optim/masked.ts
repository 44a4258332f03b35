/**
 * Restricting transformations to part of the parameters, with the names
 * optax gives them:
 *
 * - {@link masked}`(inner, mask)`: `inner` where the mask is true, every
 *   other update passes through unchanged (optax's `masked`);
 * - {@link freeze}`(mask)`: updates become zero where the mask is true
 *   (optax's `freeze`);
 * - {@link trainOnly}`(inner, mask)`: what parameter selection needs, `inner`
 *   on the selection and zero everywhere else, so nothing outside it moves;
 * - {@link sparseState}`(inner, mask)`: `masked` whose inner state holds the
 *   selected entries alone (gathered and scattered back).
 *
 * A mask is a {@link Mask} (entry by entry) or a {@link Filter} (leaf by
 * leaf, e.g. `byRole('kernel')`). It is given once: `init` uploads what the
 * device needs into the optimizer state, so it is freed with the state.
 *
 * Two guarantees hold for every inner transformation. Gradients are filtered
 * with `where` (never multiplied: 0·Inf is NaN) before `inner` sees them, so
 * a NaN or Inf outside the selection never reaches its state. And the zero
 * written outside the selection is −0, IEEE 754's additive identity:
 * `x + (−0)` is `x` bit for bit for every `x` (−0 included, where `x + 0`
 * would give +0), so plain {@link applyUpdates} leaves frozen entries
 * bit-identical.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, leafSize, MaskError, paths, SpecError, type ParamSpec, type Tree } from '../core/index.js';
import { assertMaskFor, countOnes, type Filter, type Mask } from '../selection/index.js';
import type { GradientTransformation, OptState } from './transform.js';

/**
 * Which entries a transformation restricts itself to: a {@link Mask}, entry
 * by entry, or a {@link Filter} on leaves (which needs the parameter spec:
 * pass it as `init`'s second argument).
 * @example
 * ```ts
 * const decay: MaskLike = byRole('kernel'); // or a Mask from select(gps(...), env)
 * ```
 * @category Optimizers
 */
export type MaskLike = Mask | Filter;

/** A mask resolved for the leaves of one tree: whole leaves, and the bytes of partly selected ones. */
interface Resolved {
  readonly whole: string[];
  readonly partial: Record<string, Uint8Array>;
}

/**
 * Resolves `mask` for the leaves of `params`: a Filter needs `spec`; a Mask
 * must cover every leaf with its shape (a {@link MaskError} otherwise).
 */
function resolveMask(mask: MaskLike, params: Tree<tf.Tensor>, spec: ParamSpec | undefined, what: string): Resolved {
  const whole: string[] = [];
  const partial: Record<string, Uint8Array> = {};
  if (typeof mask === 'function') {
    if (spec === undefined) throw new ConfigError(`${what}: a Filter needs the parameter spec; call init(params, model.spec)`);
    for (const p of paths(params)) {
      const leaf = spec[p];
      if (leaf === undefined) throw new SpecError(`${what}: leaf '${p}' is not in the spec given to init`);
      if (mask(p, leaf)) whole.push(p);
    }
    return { whole, partial };
  }
  if (typeof mask !== 'object' || mask === null || typeof mask.spec !== 'object' || typeof mask.bits !== 'object') {
    throw new MaskError(`${what}: expected a Mask { spec, bits } or a Filter (path, leaf) => boolean, got ${String(mask)}`);
  }
  assertMaskFor(mask.spec, mask, what);
  for (const p of paths(params)) {
    const leaf = mask.spec[p];
    if (leaf === undefined) throw new MaskError(`${what}: the parameters have leaf '${p}', which the mask's spec lacks`);
    const shape = params[p]!.shape;
    if (shape.length !== leaf.shape.length || shape.some((d, i) => d !== leaf.shape[i])) {
      throw new MaskError(`${what}: leaf '${p}' has shape [${shape.join(', ')}] but the mask's spec says [${leaf.shape.join(', ')}]`);
    }
    const n = countOnes(mask.bits[p]!);
    if (n === leafSize(leaf)) whole.push(p);
    else if (n > 0) partial[p] = mask.bits[p]!;
  }
  return { whole, partial };
}

/** The selected leaves of a resolution, in tree order. */
const selectedLeaves = (r: { whole: readonly string[]; bits?: Tree<tf.Tensor>; indices?: Tree<tf.Tensor> }, t: Tree<unknown>): string[] =>
  paths(t).filter((p) => r.whole.includes(p) || (r.bits ?? r.indices ?? {})[p] !== undefined);

/** Device bits of the partly selected leaves (bool tensors, kept in the state). */
const uploadBits = (r: Resolved, params: Tree<tf.Tensor>): Record<string, tf.Tensor> =>
  Object.fromEntries(Object.entries(r.partial).map(([p, b]) => [p, tf.tensor(b, params[p]!.shape, 'bool')]));

const pick = <T>(t: Tree<T>, ps: readonly string[]): Tree<T> => Object.fromEntries(ps.filter((p) => t[p] !== undefined).map((p) => [p, t[p]!]));

function checkKnown(known: ReadonlySet<string>, t: Tree<unknown>, what: string): void {
  for (const p of Object.keys(t)) if (!known.has(p)) throw new MaskError(`${what}: the updates have leaf '${p}', which init did not see`);
}

/** −0: the additive identity (see the module comment). */
const negZero = () => tf.scalar(-0);

/**
 * State of {@link masked} and {@link trainOnly}: the inner state, the fully
 * selected leaves, and the device bits of the partly selected ones.
 * @category Optimizers
 */
export interface MaskedState<S extends OptState = OptState> extends tf.TensorContainerObject {
  /** The inner transformation's state (of the selected leaves only). */
  readonly inner: S;
  /** Every leaf `init` saw. */
  readonly leaves: string[];
  /** Leaves selected whole. */
  readonly whole: string[];
  /** Bool tensors of the partly selected leaves. */
  readonly bits: Record<string, tf.Tensor>;
}

function maskedCore(inner: GradientTransformation, mask: MaskLike, what: string, outside: 'pass' | 'zero'): GradientTransformation<MaskedState> {
  return {
    init: (params, spec) => {
      const r = resolveMask(mask, params, spec, what);
      const bits = uploadBits(r, params);
      const sel = selectedLeaves({ whole: r.whole, bits }, params);
      return { inner: inner.init(pick(params, sel), spec), leaves: paths(params), whole: r.whole, bits };
    },
    update: (g, state, params) => {
      checkKnown(new Set(state.leaves), g, what);
      const sel = selectedLeaves(state, g);
      // Filtered with where: a NaN outside the selection must not reach inner's state.
      const gin = Object.fromEntries(sel.map((p) => [p, state.bits[p] ? tf.where(state.bits[p]!, g[p]!, tf.zerosLike(g[p]!)) : g[p]!]));
      const [u, s] = sel.length === 0 ? [{}, state.inner] : inner.update(gin, state.inner, pick(params, sel));
      const out = Object.fromEntries(
        Object.entries(g).map(([p, x]) => {
          const v = u[p];
          if (v === undefined) return [p, outside === 'pass' ? x : tf.neg(tf.zerosLike(x))];
          const b = state.bits[p];
          if (b === undefined) return [p, v];
          return [p, tf.where(b, v, outside === 'pass' ? x : negZero())];
        }),
      );
      return [out, { ...state, inner: s }];
    },
  };
}

/**
 * optax's `masked`: `inner` on the entries `mask` selects; every other
 * update passes through unchanged. `inner` sees (and keeps state for) the
 * selected leaves only; in a partly selected leaf it sees zero gradients at
 * the unselected entries. To train nothing but the selection, use
 * {@link trainOnly}.
 * @example
 * ```ts
 * // Decay only the kernels, as optax.masked(optax.add_decayed_weights(1e-4), decay_mask):
 * const tx = chain(scaleByAdam(), masked(addDecayedWeights(1e-4), byRole('kernel')), scaleByLearningRate(1e-3));
 * let state = tx.init(params, model.spec);
 * ```
 * @category Optimizers
 */
export function masked(inner: GradientTransformation, mask: MaskLike): GradientTransformation<MaskedState> {
  return maskedCore(inner, mask, 'masked', 'pass');
}

/**
 * optax's `freeze`: updates become zero (−0, so that {@link applyUpdates}
 * keeps those entries bit-identical) where `mask` is true; the others pass
 * through unchanged.
 * @example
 * ```ts
 * // Adam on everything but the embeddings:
 * const tx = chain(adam(1e-3), freeze(byRole('embedding')));
 * ```
 * @category Optimizers
 */
export function freeze(mask: MaskLike): GradientTransformation<MaskedState> {
  return maskedCore(setToZero(), mask, 'freeze', 'pass');
}

/**
 * optax's `set_to_zero`: every update becomes zero (−0, the additive
 * identity, so applying it changes no bit).
 * @example
 * ```ts
 * partition((path) => (path.startsWith('head.') ? 'train' : 'frozen'), { train: adam(1e-3), frozen: setToZero() })
 * ```
 * @category Optimizers
 */
export function setToZero(): GradientTransformation<Record<string, never>> {
  return { init: () => ({}), update: (u, s) => [Object.fromEntries(Object.entries(u).map(([p, x]) => [p, tf.neg(tf.zerosLike(x))])), s] };
}

/**
 * Options of {@link trainOnly}.
 * @category Optimizers
 */
export interface TrainOnlyOptions {
  /** Keep `inner`'s state for the selected entries only ({@link sparseState}); default true, as in {@link fineTune}. */
  readonly sparseState?: boolean;
}

/**
 * Trains the entries `mask` selects and nothing else: `inner` on the
 * selection, zero updates everywhere else. It is `chain(masked(inner, m),
 * freeze(not m))` in one wrapper (with {@link sparseState} inside by
 * default), and the outermost link of a chain: its zeros are −0, so
 * {@link applyUpdates} leaves every unselected entry bit-identical, under
 * weight decay, momentum, NaN or Inf gradients. The mask is given once and
 * its device copy lives in the state (`tf.dispose(state)` frees it).
 * @example
 * ```ts
 * const tx = trainOnly(adamw(1e-3), gpsMask);
 * let state = tx.init(params, model.spec);
 * const [updates, next] = tx.update(grads, state, params);
 * params = applyUpdates(params, updates); // frozen entries keep their exact bits
 * ```
 * @category Optimizers
 */
export function trainOnly(inner: GradientTransformation, mask: MaskLike, options: TrainOnlyOptions = {}): GradientTransformation<MaskedState> {
  return options.sparseState ?? true ? (sparseCore(inner, mask, 'trainOnly', 'zero') as unknown as GradientTransformation<MaskedState>) : maskedCore(inner, mask, 'trainOnly', 'zero');
}

/**
 * State of {@link sparseState}: the inner state over the gathered selected
 * entries, and the flat indices `[n, 1]` (int32) of the partly selected leaves.
 * @category Optimizers
 */
export interface SparseState<S extends OptState = OptState> extends tf.TensorContainerObject {
  /** The inner state: a 1-D leaf of the selected entries for each partly selected leaf. */
  readonly inner: S;
  /** Every leaf `init` saw. */
  readonly leaves: string[];
  /** Leaves selected whole (not gathered). */
  readonly whole: string[];
  /** Selected flat indices per partly selected leaf. */
  readonly indices: Record<string, tf.Tensor>;
}

/**
 * Whether `x`, for a leaf with the selected flat indices `idx` `[n, 1]`, holds
 * the selected values alone (`[n]`, in index order) rather than the whole
 * leaf. Unambiguous: a partly selected leaf has more than n entries, so a
 * whole-leaf tensor is never 1-D of length n.
 */
const isSelectedValues = (x: tf.Tensor, idx: tf.Tensor | undefined): boolean => idx !== undefined && x.rank === 1 && x.shape[0] === idx.shape[0];

function sparseCore(inner: GradientTransformation, mask: MaskLike, what: string, outside: 'pass' | 'zero'): GradientTransformation<SparseState> {
  // A leaf given as its selected values is already what inner sees: no gather, no scatter.
  const gather = (state: SparseState, p: string, x: tf.Tensor) => (state.indices[p] && !isSelectedValues(x, state.indices[p]) ? tf.gatherND(tf.reshape(x, [-1]), state.indices[p]!) : x);
  return {
    init: (params, spec) => {
      const r = resolveMask(mask, params, spec, what);
      const indices = Object.fromEntries(
        Object.entries(r.partial).map(([p, b]) => {
          const idx: number[] = [];
          b.forEach((v, i) => v && idx.push(i));
          return [p, tf.tensor2d(idx, [idx.length, 1], 'int32')];
        }),
      );
      const base = { whole: r.whole, indices, leaves: paths(params) } as SparseState;
      const sel = selectedLeaves(base, params);
      // The inner state sees the gathered entries: its moments scale with the selection.
      const gathered = Object.fromEntries(sel.map((p) => [p, gather(base, p, params[p]!)]));
      // A Filter-based inner (say, decay of kernels only) still needs leaf specs: the gathered leaves are 1-D.
      const innerSpec = spec && Object.fromEntries(sel.map((p) => [p, state1D(spec, p, gathered[p]!)]));
      return { ...base, inner: inner.init(gathered, innerSpec) };
    },
    update: (g, state, params) => {
      checkKnown(new Set(state.leaves), g, what);
      const sel = selectedLeaves(state, g);
      const [u, s] = sel.length === 0 ? [{}, state.inner] : inner.update(Object.fromEntries(sel.map((p) => [p, gather(state, p, g[p]!)])), state.inner, Object.fromEntries(sel.map((p) => [p, gather(state, p, params[p]!)])));
      const out = Object.fromEntries(
        Object.entries(g).map(([p, x]) => {
          const v = u[p];
          if (v === undefined) return [p, outside === 'pass' ? x : tf.neg(tf.zerosLike(x))];
          const idx = state.indices[p];
          if (idx === undefined) return [p, v];
          // Selected values in, selected values out: applySelectedUpdates writes them.
          if (isSelectedValues(x, idx)) return [p, v];
          if (outside === 'zero') {
            // scatterND fills with +0; negating twice gives −0 there and leaves the selected values exact.
            return [p, tf.reshape(tf.neg(tf.scatterND(idx, tf.neg(v), [x.size])), x.shape)];
          }
          // Pass-through: the incoming updates with the selected entries replaced by inner's.
          return [p, tf.reshape(tf.tensorScatterUpdate(tf.reshape(x, [-1]), idx, v), x.shape)];
        }),
      );
      return [out, { ...state, inner: s }];
    },
  };
}

/**
 * {@link applyUpdates} for the updates of {@link trainOnly} or
 * {@link sparseState} (with sparse state, the default) that may hold a
 * partly selected leaf as its selected values alone: where the gradient
 * handed to `update` was such a vector `[n]` (in `maskToIndices` order,
 * as `fineTune`'s sparse gradient path gives for a partly selected
 * kernel), so is the update, and it is added to those `n` entries in
 * place of a dense add: one gather, one add and one scatter of `n` values
 * (plus the copy any new tensor costs); every other entry is copied, bit
 * for bit. Leaves with whole-leaf updates are added as `applyUpdates` does.
 * The selected entries get the same bits as with the dense-shaped update.
 * @example
 * ```ts
 * const tx = trainOnly(adamw(1e-3), mask); // sparse state
 * const [u, next] = tx.update({ 'fc.kernel': selectedValues }, state, params);
 * params = applySelectedUpdates(params, u, next);
 * ```
 * @category Optimizers
 */
export function applySelectedUpdates(params: Tree<tf.Tensor>, updates: Tree<tf.Tensor>, state: SparseState): Tree<tf.Tensor> {
  return Object.fromEntries(
    Object.entries(params).map(([p, x]) => {
      const u = updates[p];
      if (u === undefined) return [p, x];
      const idx = state.indices?.[p];
      if (!isSelectedValues(u, idx) || x.size === u.size) return [p, tf.add(x, u)];
      const flat = tf.reshape(x, [-1]);
      return [p, tf.reshape(tf.tensorScatterUpdate(flat, idx!, tf.add(tf.gatherND(flat, idx!), u)), x.shape)];
    }),
  );
}

/** The spec of a gathered leaf: its role kept, its shape the gathered length. */
function state1D(spec: ParamSpec, p: string, x: tf.Tensor) {
  const leaf = spec[p];
  return { shape: [...x.shape], dtype: 'float32' as const, role: leaf?.role ?? 'kernel', neuronAxis: 0 };
}

/**
 * optax's {@link masked} with sparse state: `inner` runs on the selected
 * entries alone, gathered into 1-D leaves and scattered back, so its state
 * (Adam's moments, say) takes memory in proportion to the selection;
 * every other update passes through unchanged. For an element-wise `inner`
 * (sgd, momentum, Adam, AdamW, RMSProp, Lion) the updates equal `masked`'s
 * exactly; a transformation that looks at a leaf's shape (Adafactor's
 * factored moments, block RMS) sees 1-D leaves instead.
 * @example
 * ```ts
 * const tx = sparseState(adam(1e-3), gpsMask); // moments for the selected entries only
 * ```
 * @category Optimizers
 */
export function sparseState(inner: GradientTransformation, mask: MaskLike): GradientTransformation<SparseState> {
  return sparseCore(inner, mask, 'sparseState', 'pass');
}

/**
 * The leaves of `mask` with at least one selected entry, in tree order:
 * the ones a training step needs gradients for.
 * @example
 * ```ts
 * trainableLeaves(gpsMask) // ['blocks.0.attn.qkv.kernel', …, 'head.kernel']
 * ```
 * @category Optimizers
 */
export function trainableLeaves(mask: Mask): string[] {
  assertMaskFor(mask.spec, mask, 'trainableLeaves');
  return paths(mask.spec).filter((p) => countOnes(mask.bits[p]!) > 0);
}

/**
 * Frees the tensors of `previous` that `next` no longer holds (state that
 * passes through unchanged, a wrapper's mask included, must survive).
 * @example
 * ```ts
 * disposeReplaced(oldState, newState);
 * ```
 * @category Optimizers
 */
export function disposeReplaced(previous: OptState, next: OptState): void {
  const keep = new Set<tf.Tensor>();
  const walk = (c: unknown, f: (t: tf.Tensor) => void) => {
    if (c instanceof tf.Tensor) f(c);
    else if (Array.isArray(c)) c.forEach((x) => walk(x, f));
    else if (c !== null && typeof c === 'object' && !ArrayBuffer.isView(c)) Object.values(c).forEach((x) => walk(x, f));
  };
  walk(next, (t) => keep.add(t));
  walk(previous, (t) => {
    if (!keep.has(t) && !t.isDisposed) t.dispose();
  });
}
