/**
 * Moving a {@link trainOnly} optimizer from one mask to another mid-run, as
 * re-selection during training needs ({@link FineTuneOptions.reselect}, or
 * your own loop): the state of entries selected by both masks is carried
 * over exactly, entries dropped lose theirs, entries added start from what
 * a fresh `init` gives them (zero for Adam's moments and momentum's trace),
 * and counters (Adam's step count, a schedule's) carry on.
 *
 * It is built on the exported API alone: a fresh `trainOnly(inner, to)`
 * state, into which the old state's per-entry values are gathered. Where a
 * state value is not one number per trained entry (Adafactor's factored
 * moments on a matrix selected whole), it cannot be remapped entry by entry,
 * and carrying it is a {@link ConfigError} rather than a silent reshuffle.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, leafSize, MaskError, paths, type ParamSpec, type Params } from '../core/index.js';
import { assertMaskFor, countOnes, type Mask } from '../selection/index.js';
import { disposeReplaced, trainableLeaves, trainOnly, type MaskedState, type SparseState } from './masked.js';
import type { GradientTransformation, OptState } from './transform.js';
import { FLAT, type FlattenState } from './wrappers.js';

/**
 * What {@link carryState} needs.
 * @category Optimizers
 */
export interface CarryStateInput {
  /** The transformation `trainOnly` wraps (the same one the state was made with). */
  readonly inner: GradientTransformation;
  /** The state of `trainOnly(inner, from)` (sparse or dense); consumed when this returns. */
  readonly state: OptState;
  /** The mask the state was made for. */
  readonly from: Mask;
  /** The mask to train next. */
  readonly to: Mask;
  /** The current parameters: at least every leaf `to` selects something in (the new state's `init` runs on those). */
  readonly params: Params;
  /** The spec given to `init` (for a Filter inside `inner`); default `to.spec`. */
  readonly spec?: ParamSpec;
}

/**
 * What {@link carryState} returns: the optimizer for the new mask and its state.
 * @category Optimizers
 */
export interface CarriedState {
  /** `trainOnly(inner, to)`, with the state layout (sparse or dense) of the old one. */
  readonly optimizer: GradientTransformation<MaskedState>;
  /** Its state, the old one's values carried over where both masks select an entry. */
  readonly state: MaskedState;
}

/** Where a leaf's per-entry state lives: the flat entry of each slot, and the state tensor's shape. */
interface Layout {
  readonly shape: readonly number[];
  readonly flat: Int32Array;
}

function layoutOf(mask: Mask, p: string, sparse: boolean): Layout {
  const bits = mask.bits[p]!;
  const leaf = mask.spec[p]!;
  const n = leafSize(leaf);
  let count = 0;
  for (let i = 0; i < n; i++) count += bits[i]!;
  // Sparse state gathers a partly selected leaf's entries into one 1-D leaf;
  // a leaf selected whole, or any leaf under dense state, keeps its shape.
  if (sparse && count < n) {
    const flat = new Int32Array(count);
    for (let i = 0, j = 0; i < n; i++) if (bits[i]) flat[j++] = i;
    return { shape: [count], flat };
  }
  return { shape: leaf.shape, flat: Int32Array.from({ length: n }, (_, i) => i) };
}

// --- flatten's state: its FLAT vectors hold many leaves' state end to end.
// Split into one tensor per leaf (keyed by path, as unflattened state is),
// carried like any leaf's, and joined again in the new state's order.
const isFlattenState = (c: unknown): c is FlattenState =>
  c !== null && typeof c === 'object' && ['flat', 'shapes', 'own', 'ownShapes'].every((k) => Array.isArray((c as Record<string, unknown>)[k])) && 'inner' in c;
const isTree = (c: unknown): c is Record<string, unknown> => c !== null && typeof c === 'object' && !(c instanceof tf.Tensor) && !ArrayBuffer.isView(c) && !Array.isArray(c);

/** `c` with every FLAT vector under a flatten state split into its leaves' tensors. */
function unflattenState(c: unknown, s?: FlattenState): unknown {
  if (isFlattenState(c)) return { ...c, inner: unflattenState(c.inner, c) };
  if (Array.isArray(c)) return c.map((x) => unflattenState(x, s));
  if (!isTree(c)) return c;
  const out: Record<string | symbol, unknown> = { ...c };
  for (const [k, v] of Object.entries(c)) {
    if (k === FLAT && s && v instanceof tf.Tensor) {
      delete out[k];
      const parts = s.flat.length === 1 ? [v] : tf.split(v, s.shapes.map((sh) => sh.reduce((a, b) => a * b, 1)));
      s.flat.forEach((p, i) => (out[p] = tf.reshape(parts[i]!, s.shapes[i]!)));
    } else out[k] = unflattenState(v, s);
  }
  return out;
}

/** The inverse for the new state: `c` is `unflattenState(like)` carried over; FLAT vectors are joined where `like` has them. */
function reflattenState(c: unknown, like: unknown, s?: FlattenState): unknown {
  if (isFlattenState(like)) return { ...like, inner: reflattenState((c as FlattenState).inner, like.inner, like) };
  if (Array.isArray(like)) return like.map((x, i) => reflattenState((c as unknown[])[i], x, s));
  if (!isTree(like)) return c;
  const tree = c as Record<string, unknown>;
  const out: Record<string | symbol, unknown> = { ...tree };
  for (const [k, v] of Object.entries(like)) {
    if (k === FLAT && s && v instanceof tf.Tensor) {
      const parts = s.flat.map((p) => tf.reshape(tree[p] as tf.Tensor, [-1]));
      for (const p of s.flat) delete out[p];
      out[k] = parts.length === 1 ? parts[0]! : tf.concat(parts, 0);
    } else out[k] = reflattenState(tree[k], v, s);
  }
  return out;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
const show = (s: readonly number[]) => `[${s.join(', ')}]`;

/**
 * Moves a {@link trainOnly} optimizer state from mask `from` to mask `to`:
 * returns `trainOnly(inner, to)` (sparse or dense state, as the old one)
 * and its state, in which
 *
 * - an entry both masks select keeps its state bit for bit (Adam's moments,
 *   momentum's trace, `multiSteps`' accumulated gradient);
 * - an entry only `from` selects loses its state;
 * - an entry only `to` selects starts from what a fresh `init` gives it
 *   (zero for moments and traces; RMSProp's `initialScale`);
 * - numbers and flags outside the per-leaf trees carry on: Adam's step
 *   count, a schedule's, `applyIfFinite`'s counters. Adam's bias correction
 *   therefore treats a newly added entry as if its zero moments had been
 *   accumulating since step 1: its first updates are larger than a fresh
 *   Adam's (for a constant gradient, up to about 6.5× the learning rate
 *   over its first hundred steps with β = (0.9, 0.999), where a fresh Adam
 *   gives 1×), and the learning-rate schedule, which reads the same count,
 *   does not restart.
 *
 * The state passed in is consumed (what the new state does not hold is
 * freed); when it throws, nothing is freed or left behind. A state value
 * that is not one number per trained entry of its leaf (Adafactor's
 * factored moments on a matrix selected whole) cannot be remapped entry by
 * entry: that is a {@link ConfigError} naming the leaf.
 * @example
 * ```ts
 * // Your own loop: re-select after 100 steps, keeping the moments of the entries that stay.
 * const next = select(neuron(1, magnitude()), selectionEnv({ model, params }));
 * ({ optimizer, state } = carryState({ inner: adamw(1e-3), state, from: mask, to: next, params }));
 * mask = next;
 * ```
 * @category Optimizers
 */
export function carryState(o: CarryStateInput): CarriedState {
  const { from, to } = o;
  assertMaskFor(from.spec, from, 'carryState: from');
  assertMaskFor(from.spec, to, 'carryState: to');
  const old = o.state as Partial<SparseState & MaskedState> | undefined;
  if (old === null || typeof old !== 'object' || old.inner === undefined || (old.indices === undefined && old.bits === undefined)) {
    throw new ConfigError('carryState: state must be the state of trainOnly(inner, from)');
  }
  const sparse = old.indices !== undefined;
  const spec = o.spec ?? to.spec;
  const leaves = trainableLeaves(to);
  for (const p of leaves) if (o.params[p] === undefined) throw new MaskError(`carryState: leaf '${p}', which the new mask selects, is not in the parameters`);
  const optimizer = trainOnly(o.inner, to, { sparseState: sparse });
  // The leaves the old state saw stay known, so updates of the same tree as before are accepted.
  const known = [...new Set([...(old.leaves ?? []).filter((p) => o.params[p] !== undefined), ...leaves])];
  const fresh = tf.tidy(() => optimizer.init(Object.fromEntries(known.map((p) => [p, o.params[p]!])), spec)) as MaskedState;
  const layouts = new Map<string, [Layout, Layout]>();
  const layout = (p: string): [Layout, Layout] => {
    let l = layouts.get(p);
    if (!l) layouts.set(p, (l = [layoutOf(from, p, sparse), layoutOf(to, p, sparse)]));
    return l;
  };
  /** One leaf's state tensor under the new mask: kept entries from `before`, the rest from `init`. */
  const remap = (p: string, before: tf.Tensor | undefined, init: tf.Tensor, at: string): tf.Tensor => {
    const [lf, lt] = layout(p);
    const notPerEntry = (t: tf.Tensor, l: Layout, which: string) =>
      new ConfigError(
        `carryState: the optimizer state at ${at} (leaf '${p}') has shape ${show(t.shape)} under the ${which} mask, not one value per trained entry ${show(l.shape)}; ` +
          "its transformation keeps state that is not element-wise (e.g. Adafactor's factored moments on a leaf selected whole), which cannot be moved to a new mask entry by entry",
      );
    if (!sameShape(init.shape, lt.shape)) throw notPerEntry(init, lt, 'new');
    // The leaf had nothing selected before: every entry is new.
    if (before === undefined) {
      if (lf.flat.length === 0 || countOnes(from.bits[p]!) === 0) return init;
      throw new ConfigError(`carryState: the optimizer state at ${at} (leaf '${p}') has no counterpart under the old mask; its transformation keeps a state whose structure depends on the selection, which cannot be carried over`);
    }
    visited.add(before);
    if (!sameShape(before.shape, lf.shape)) throw notPerEntry(before, lf, 'old');
    const fromBits = from.bits[p]!;
    const toBits = to.bits[p]!;
    // slotOf[flat entry] = its slot in the old state, for entries selected by both masks.
    const slotOf = new Int32Array(fromBits.length).fill(-1);
    lf.flat.forEach((f, s) => {
      if (fromBits[f] && toBits[f]) slotOf[f] = s;
    });
    const source = Int32Array.from(lt.flat, (f, j) => (slotOf[f]! >= 0 ? slotOf[f]! : lf.flat.length + j));
    // A gather copies bits exactly: kept entries' state is the old state, bit for bit.
    return tf.reshape(tf.gather(tf.concat([tf.reshape(before, [-1]), tf.reshape(init, [-1])]), tf.tensor1d(source, 'int32')), [...lt.shape]);
  };
  const walk = (before: unknown, init: unknown, leaf: string | undefined, at: string): unknown => {
    // flatten's leaf lists describe the new mask (from init); its inner state is carried.
    if (isFlattenState(init)) {
      if (!isFlattenState(before)) throw new ConfigError(`carryState: the optimizer state at ${at} changes structure with the mask; it cannot be carried over`);
      return { ...init, inner: walk(before.inner, init.inner, leaf, `${at}.inner`) };
    }
    if (init instanceof tf.Tensor) {
      if (leaf !== undefined) return remap(leaf, before instanceof tf.Tensor ? before : undefined, init, at);
      // A tensor that belongs to no leaf (a scalar of the transformation's): it carries on.
      if (before === undefined) return init;
      if (before instanceof tf.Tensor && sameShape(before.shape, init.shape)) return before;
      throw new ConfigError(`carryState: the optimizer state at ${at} changes shape with the mask; it cannot be carried over`);
    }
    if (Array.isArray(init)) {
      const b = Array.isArray(before) && before.length === init.length ? before : undefined;
      if (before !== undefined && b === undefined && leaf === undefined) throw new ConfigError(`carryState: the optimizer state at ${at} changes structure with the mask; it cannot be carried over`);
      return init.map((x, i) => walk(b?.[i], x, leaf, `${at}[${i}]`));
    }
    if (init !== null && typeof init === 'object' && !ArrayBuffer.isView(init)) {
      const b = before !== null && typeof before === 'object' ? (before as Record<string, unknown>) : undefined;
      // Spread keeps symbol keys (partition's labels) as the new state has them.
      const out: Record<string | symbol, unknown> = { ...(init as Record<string | symbol, unknown>) };
      for (const [k, v] of Object.entries(init)) {
        // A key that names a leaf starts that leaf's per-entry state (the trees keyed by path).
        const l = leaf ?? (Object.hasOwn(spec, k) ? k : undefined);
        out[k] = walk(b?.[k], v, l, at === '' ? k : `${at}.${k}`);
      }
      return out;
    }
    // Numbers and flags outside a leaf (step counts, applyIfFinite's counters) carry on;
    // strings (leaf names, labels) describe the new mask, so they come from init.
    if (leaf === undefined && (typeof init === 'number' || typeof init === 'boolean') && typeof before === typeof init) return before;
    return init;
  };
  // Per-entry state of a leaf both masks train must reach the new state: collected to check it all did.
  const visited = new Set<tf.Tensor>();
  const unvisited = (c: unknown, leaf: string | undefined, at: string): void => {
    if (c instanceof tf.Tensor) {
      if (leaf !== undefined && !visited.has(c) && countOnes(to.bits[leaf]!) > 0) {
        throw new ConfigError(`carryState: the optimizer state at ${at} (leaf '${leaf}') has no counterpart under the new mask; its transformation keeps a state whose structure depends on the selection (e.g. Adafactor's factored moments on a leaf selected whole), which cannot be carried over`);
      }
    } else if (Array.isArray(c)) c.forEach((x, i) => unvisited(x, leaf, `${at}[${i}]`));
    else if (c !== null && typeof c === 'object' && !ArrayBuffer.isView(c)) for (const [k, v] of Object.entries(c)) unvisited(v, leaf ?? (Object.hasOwn(spec, k) ? k : undefined), `${at}.${k}`);
  };
  let inner: OptState;
  try {
    inner = tf.tidy(() => {
      // Per-leaf views of flatten's vectors, for the old state and the fresh one.
      const before = unflattenState(old.inner);
      const out = reflattenState(walk(before, unflattenState(fresh.inner), undefined, 'inner'), fresh.inner) as OptState;
      unvisited(before, undefined, 'inner');
      return out;
    });
  } catch (e) {
    tf.dispose(fresh);
    throw e;
  }
  const state: MaskedState = { ...fresh, inner };
  disposeReplaced(fresh, state);
  disposeReplaced(o.state, state);
  return { optimizer, state };
}

/**
 * How a mask changed: the entries `from` and `to` both select (`kept`),
 * only `from` (`dropped`), only `to` (`added`), and `to`'s total.
 * @example
 * ```ts
 * maskChange(before, after) // { kept: 812, dropped: 40, added: 40, selected: 852 }
 * ```
 * @category Masks
 */
export function maskChange(from: Mask, to: Mask): { kept: number; dropped: number; added: number; selected: number } {
  let kept = 0;
  let dropped = 0;
  let added = 0;
  for (const p of paths(to.spec)) {
    const a = from.bits[p]!;
    const b = to.bits[p]!;
    for (let i = 0; i < a.length; i++) {
      if (a[i] && b[i]) kept++;
      else if (a[i]) dropped++;
      else if (b[i]) added++;
    }
  }
  return { kept, dropped, added, selected: kept + added };
}
