/**
 * Masked optimisation: a frozen entry never moves — not through its
 * gradient, not through momentum or Adam's moments, not through weight
 * decay, not through a NaN or Inf gradient. Gradients are filtered with
 * `where` (never multiplied: 0·Inf is NaN) before the inner transformation
 * and its updates filtered again after it; {@link applyMaskedUpdates} then
 * leaves frozen entries bit-identical (−0 included). With `sparseState`,
 * the inner transformation runs on the selected entries alone (gathered and
 * scattered back), so its state scales with the selection.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { disposeTree, leafSize, MaskError, paths, type Params, type Tree } from '../core/index.js';
import { assertMaskFor, maskToIndices, countOnes, type Mask } from '../selection/index.js';
import type { GradientTransformation, OptState, Updates } from './transform.js';

/**
 * A mask on the device: per leaf, a bool tensor (for partly selected
 * leaves) and the selected flat indices; built once per training run.
 * @category Optimizers
 */
export interface DeviceMask {
  /** The host mask. */
  readonly mask: Mask;
  /** Leaves with at least one selected entry, in tree order. */
  readonly trainable: readonly string[];
  /** Leaves selected whole: no filtering needed. */
  readonly whole: ReadonlySet<string>;
  /** Bool tensors of the partly selected leaves. */
  readonly bits: Tree<tf.Tensor>;
  /** Selected flat indices `[n, 1]` (int32) of the partly selected leaves. */
  readonly indices: Tree<tf.Tensor>;
  /** Frees the tensors. */
  dispose(): void;
}

/**
 * Uploads a mask once. Dispose it when training is done.
 * @example
 * ```ts
 * const dm = deviceMask(mask);
 * try { ... } finally { dm.dispose(); }
 * ```
 * @category Optimizers
 */
export function deviceMask(mask: Mask): DeviceMask {
  assertMaskFor(mask.spec, mask, 'deviceMask');
  const trainable = paths(mask.spec).filter((p) => countOnes(mask.bits[p]!) > 0);
  const whole = new Set(trainable.filter((p) => countOnes(mask.bits[p]!) === leafSize(mask.spec[p]!)));
  const partial = trainable.filter((p) => !whole.has(p));
  const idx = maskToIndices(mask);
  const bits = Object.fromEntries(partial.map((p) => [p, tf.tensor(mask.bits[p]!, [...mask.spec[p]!.shape], 'bool')]));
  const indices = Object.fromEntries(partial.map((p) => [p, tf.tensor2d(idx[p]!, [idx[p]!.length, 1], 'int32')]));
  return {
    mask,
    trainable,
    whole,
    bits,
    indices,
    dispose: () => {
      disposeTree(bits);
      disposeTree(indices);
    },
  };
}

const zerosOf = (x: tf.Tensor) => tf.zerosLike(x);

/** `where(mask, x, 0)`: whole leaves pass, frozen leaves become zeros. */
function keepSelected(dm: DeviceMask, t: Updates): Updates {
  return Object.fromEntries(
    Object.entries(t).map(([p, x]) => {
      if (dm.whole.has(p)) return [p, x];
      const bits = dm.bits[p];
      return [p, bits ? tf.where(bits, x, zerosOf(x)) : zerosOf(x)];
    }),
  );
}

function checkLeaves(dm: DeviceMask, t: Tree<tf.Tensor>, what: string): void {
  for (const p of Object.keys(t)) {
    if (!dm.mask.spec[p]) throw new MaskError(`masked: ${what} has leaf '${p}', which the mask's spec lacks`);
  }
}

/**
 * Options of {@link masked}.
 * @category Optimizers
 */
export interface MaskedOptions {
  /** Keep the inner state for selected entries only (gather/scatter). Default false. */
  readonly sparseState?: boolean;
}

/**
 * `tx` restricted to the entries `mask` selects (1 = trainable). It expects
 * and returns updates only for the leaves with a selected entry (see
 * {@link DeviceMask.trainable}); frozen leaves need no gradient at all.
 * @example
 * ```ts
 * const dm = deviceMask(gpsMask);
 * const tx = masked(adamw(1e-3), dm, { sparseState: true });
 * ```
 * @category Optimizers
 */
export function masked(tx: GradientTransformation, dm: DeviceMask, options: MaskedOptions = {}): GradientTransformation {
  if (dm.trainable.length === 0) {
    // Nothing trains: no work, zero updates, and the state stays as it was.
    return { init: (params) => tx.init(params), update: (g, state) => [Object.fromEntries(Object.entries(g).map(([p, x]) => [p, tf.zerosLike(x)])), state] };
  }
  if (!options.sparseState) {
    return {
      init: (params) => tx.init(params),
      update: (g, state, params) => {
        checkLeaves(dm, g, 'the gradient');
        const [u, s] = tx.update(keepSelected(dm, g), state, params);
        return [keepSelected(dm, u), s];
      },
    };
  }
  const gatherLeaf = (p: string, x: tf.Tensor) => {
    if (dm.whole.has(p)) return x;
    const idx = dm.indices[p];
    return idx ? tf.gatherND(tf.reshape(x, [-1]), idx) : tf.zeros([0]);
  };
  const gatherTree = (t: Tree<tf.Tensor>): Updates => Object.fromEntries(Object.entries(t).map(([p, x]) => [p, gatherLeaf(p, x)]));
  return {
    init: (params) => tx.init(gatherTree(params)),
    update: (g, state, params) => {
      checkLeaves(dm, g, 'the gradient');
      const [u, s] = tx.update(gatherTree(g), state, gatherTree(params));
      const full = Object.fromEntries(
        Object.entries(u).map(([p, x]) => {
          if (dm.whole.has(p)) return [p, x];
          const shape = [...dm.mask.spec[p]!.shape];
          const idx = dm.indices[p];
          return [p, idx ? tf.reshape(tf.scatterND(idx, x, [shape.reduce((a, b) => a * b, 1)]), shape) : tf.zeros(shape)];
        }),
      );
      return [full, s];
    },
  };
}

/**
 * Zeroes every update outside `mask` (its 0 entries are frozen): the last
 * link of a chain that must not move what the mask does not select.
 * @example
 * ```ts
 * chain(adamw(1e-3), freeze(deviceMask(mask)))
 * ```
 * @category Optimizers
 */
export function freeze(dm: DeviceMask): GradientTransformation<Record<string, never>> {
  return { init: () => ({}), update: (u, s) => [keepSelected(dm, u), s] };
}

/**
 * `params + updates` on the selected entries; every other entry keeps its
 * exact bits (an update of +0 would turn −0 into +0). Leaves without
 * updates are returned as they are (the same tensor objects).
 * @example
 * ```ts
 * const next = applyMaskedUpdates(params, updates, dm);
 * ```
 * @category Optimizers
 */
export function applyMaskedUpdates(params: Params, updates: Updates, dm: DeviceMask): Params {
  return Object.fromEntries(
    Object.entries(params).map(([p, x]) => {
      const u = updates[p];
      if (u === undefined) return [p, x];
      if (dm.whole.has(p)) return [p, tf.add(x, u)];
      const bits = dm.bits[p];
      if (bits === undefined) return [p, x];
      return [p, tf.where(bits, tf.add(x, u), x)];
    }),
  );
}

/**
 * Frees the tensors of `previous` that `next` no longer holds (state that
 * passes through unchanged must survive).
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
