/**
 * Kernels and their gradients, apart from the typed ops that call them (as
 * tfjs keeps op, kernel and gradient apart). Why they exist:
 *
 * - matmul: tfjs's gradient of `matMul` uses transposed products, which
 *   leave wasm's XNNPACK fast path and run ~3× slower; ours is a kernel of
 *   its own whose registered gradient uses explicit transposes and plain
 *   products.
 * - convolutions: wasm registers no `Conv2DBackpropFilter` and no depthwise
 *   backprop kernels, so stock tfjs cannot train a conv net there; ours
 *   carry gradients made of forward ops only.
 * - cost that follows what trains: matmul and convolutions are registered
 *   kernels, whose gradients the tape asks for per input, so a frozen
 *   weight gets no gradient and the data under the first trainable layer
 *   none either; {@link withSparseWeightGrads} computes a dense weight's
 *   gradient at the entries a mask selects only.
 * - GELU and layer norm: hand-written gradients with fewer kernels than
 *   tfjs's autodiff of their compositions, and GELU without wasm's slow Tanh.
 *
 * `useStockGradients(true)` routes every typed op back through plain tfjs
 * ops and tfjs's own gradients, for side-by-side benchmarks and reference
 * checks.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { DataError } from './errors.js';
import { adamInWasm, adamRunsOn, batchMatMulInto, batchMatMulRunsOn, columnSumsInto, columnSumsInWasm, copyRunsInto, layerNormGradInto, layerNormInto, layerNormRunsOn, entrySums, hostView, matrixOrigins } from './hostsums.js';

const swapLast = (rank: number): number[] => {
  const perm = [...Array(rank).keys()];
  perm[rank - 1] = rank - 2;
  perm[rank - 2] = rank - 1;
  return perm;
};

let stock = false;

/**
 * Routes `matmul`, `batchMatmul`, `linear`, the convolutions, `gelu`,
 * `layerNorm`, `biasAdd`, softmax cross-entropy and `scaleByAdam`'s step
 * through plain tfjs ops and tfjs's own gradients (`true`) or the kernels
 * and gradients of our own (`false`, the default). For side-by-side benchmarks and reference checks only: the
 * stock path is slower on wasm and cannot train a convolution there.
 * @example
 * ```ts
 * useStockGradients(true); // reference run on tfjs's own gradients
 * useStockGradients(false); // back to the default
 * ```
 * @category Backends
 */
export function useStockGradients(on: boolean): void {
  stock = on;
}

/**
 * Whether {@link useStockGradients} is on.
 * @example
 * ```ts
 * if (stockGradients()) console.log('reference run');
 * ```
 * @category Backends
 */
export function stockGradients(): boolean {
  return stock;
}

/**
 * Registers `name` on the current backend as a thin wrapper over that
 * backend's own kernel `base` (once per backend), so ops of our own can carry
 * registered gradients. Registered (rather than `tf.customGrad`) because
 * registered gradients are lazy per input: the tape skips the gradient of an
 * input that does not depend on what is differentiated — the data entering a
 * model's first layer, a frozen leaf's weight gradient — while a custom
 * gradient computes every input's gradient.
 */
function ensureKernel(name: string, base: string, attrsOf: (attrs: tf.NamedAttrMap) => tf.NamedAttrMap): void {
  const backend = tf.getBackend();
  if (tf.getKernel(name, backend) !== undefined) return;
  const plain = tf.getKernel(base, backend);
  if (plain === undefined) throw new Error(`${name}: backend '${backend}' has no ${base} kernel`);
  tf.registerKernel({
    kernelName: name,
    backendName: backend,
    kernelFunc: ({ inputs, backend: b, attrs }) => plain.kernelFunc({ inputs, backend: b, attrs: attrsOf(attrs ?? {}) }),
  });
}

/**
 * Our matmul is a kernel of its own, `SparsetuneMatMul`, that runs each
 * backend's plain `BatchMatMul` (on wasm, products of several matrices at
 * once in a SIMD function of ours instead: batchedOnHeap) and carries a
 * registered gradient of explicit transposes and plain products (tfjs's
 * own uses transposed products, off wasm's fast path).
 */
const KERNEL = 'SparsetuneMatMul';

/**
 * Our matmul kernel on the current backend (once per backend): the
 * backend's plain `BatchMatMul`, or, for a weight kept on its frozen base
 * ({@link keepBasePacked}) where that is the cheaper, the product with the
 * base plus the host correction for the entries' change.
 */
function ensureMatMulKernel(): void {
  const backend = tf.getBackend();
  if (tf.getKernel(KERNEL, backend) !== undefined) return;
  const plain = tf.getKernel('BatchMatMul', backend);
  if (plain === undefined) throw new Error(`${KERNEL}: backend '${backend}' has no BatchMatMul kernel`);
  const attrs = { transposeA: false, transposeB: false };
  tf.registerKernel({
    kernelName: KERNEL,
    backendName: backend,
    kernelFunc: ({ inputs, backend: be, attrs: given }) => {
      // Decided by kernelMatMul (the 'base' attribute), so the gradient sees the same choice.
      const key = given?.['entries'] as number | undefined;
      const base = key !== undefined && given?.['base'] ? bases.get(byKey[key]!) : undefined;
      const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      if (!base) return batchedOnHeap(a, b, be as tf.KernelBackend) ?? plain.kernelFunc({ inputs, backend: be, attrs });
      // x·W = x·W₀ + x·(W − W₀): the product on the base, whose packing XNNPACK keeps.
      const out = plain.kernelFunc({ inputs: { a, b: base.weight }, backend: be, attrs }) as tf.TensorInfo;
      addEntries(hostView(out, be as tf.KernelBackend), hostView(a, be as tf.KernelBackend), byKey[key!]!, base.delta, 'forward');
      return out;
    },
  });
}

/**
 * A product of several matrices at once (`[..., m, k]·[..., k, n]`, the
 * same leading axes, float32) by our SIMD function on wasm's heap
 * (hostsums.ts batchMatMulInto), or undefined where that does not run:
 * one matrix (XNNPACK's own product, far faster there), broadcast leading
 * axes, cpu, a heap it cannot link to. tfjs's wasm BatchMatMul runs
 * batched products in a scalar loop: the attention's 17×16 products took
 * about a third of a ViT step's matmul time there, 8–12× what ours take.
 */
function batchedOnHeap(a: tf.TensorInfo, b: tf.TensorInfo, be: tf.KernelBackend): tf.TensorInfo | undefined {
  const r = a.shape.length;
  if (r < 3 || b.shape.length !== r || a.dtype !== 'float32' || b.dtype !== 'float32' || !batchMatMulRunsOn(be)) return undefined;
  const lead = a.shape.slice(0, -2);
  if (!lead.every((d, i) => d === b.shape[i]) || lead.reduce((x, y) => x * y, 1) < 2) return undefined;
  const [m, k, n] = [a.shape[r - 2]!, a.shape[r - 1]!, b.shape[r - 1]!];
  if (b.shape[r - 2] !== k) throw new Error(`${KERNEL}: inner dimensions ${k} and ${b.shape[r - 2]} of [${a.shape.join(', ')}] and [${b.shape.join(', ')}] differ`);
  const out = (be as unknown as { makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo }).makeOutput([...lead, m, n], 'float32');
  batchMatMulInto(a, b, out, false, be);
  return out;
}

function kernelMatMul(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  ensureMatMulKernel();
  // A weight whose gradient is wanted at some entries only is marked here, by
  // the key of its entries, for the gradient function: that sees the tape's
  // copy of the weight (on wasm, other data), not the weight itself.
  const marked = a.rank === 2 && b.rank === 2 ? wanted?.get(b.dataId) : undefined;
  // Only the weight itself: a reshaped view shares its data (a 1×1 filter as a matrix) but not its shape.
  const key = marked !== undefined && sameShape(byKey[marked]!.weightShape, b.shape) ? marked : undefined;
  if (key !== undefined) {
    const e = byKey[key]!;
    rowsSeen.set(e, Math.max(rowsSeen.get(e) ?? 0, a.shape[0]!));
    // On the frozen base only when its delta describes this very weight (the one `update` last saw) and it is the cheaper.
    const base = bases.get(e);
    if (base && base.current === b.dataId && baseIsCheaper(e, a.shape[0]!)) {
      return tf.engine().runKernel(KERNEL, { a, b, probe: e.probe }, { entries: key, base: 1 }) as tf.Tensor;
    }
  }
  if (key === undefined) return tf.engine().runKernel(KERNEL, { a, b }, {}) as tf.Tensor;
  // The probe rides along as a third input the forward kernel ignores: the
  // tape then differentiates it like any input, and its gradient is the
  // weight's gradient at the selected entries alone (see SparseGradEntries.probe).
  return tf.engine().runKernel(KERNEL, { a, b, probe: byKey[key]!.probe }, { entries: key }) as tf.Tensor;
}

// ---------------------------------------------------------------------------
// Weight gradients only where they are needed. A masked optimizer reads a
// partly selected kernel's gradient at its selected entries alone; for a
// dense weight w [K, N] in y = x·w, entry (i, j) of that gradient is
// Σ_r x[r, i]·δ[r, j], so a few entries cost a gather of the columns i of x
// and j of δ, a product and a sum over rows — O(R·n) — instead of the whole
// xᵀδ, O(R·K·N). A convolution filter [kh, kw, C, O] is the same with K =
// kh·kw·C and a row per output position: entry (i, j, c, o) is
// Σ_{b,h,w} xpad[b, h·s+i, w·s+j, c]·δ[b, h, w, o].

/**
 * The entries of one weight whose gradient is wanted: from {@link sparseGradEntries}.
 * @example
 * ```ts
 * const e = sparseGradEntries([64, 192], [0, 193], true)!; // e.count === 2, e.shape: [64, 192]
 * e.dispose();
 * ```
 * @category Backends
 */
export interface SparseGradEntries {
  /** Row (input) index of each entry, int32 `[n]`. */
  readonly rows: tf.Tensor1D;
  /** Column (output) index of each entry, int32 `[n]`. */
  readonly cols: tf.Tensor1D;
  /** `[row, col]` of each entry, int32 `[n, 2]`, where the values are scattered. */
  readonly coords: tf.Tensor2D;
  /** The weight as a matrix `[K, N]`: a convolution filter `[kh, kw, C, O]` as `[kh·kw·C, O]`. */
  readonly shape: readonly [number, number];
  /** The weight's own shape: `shape`, or the filter's four dimensions. */
  readonly weightShape: readonly number[];
  /** Number of entries. */
  readonly count: number;
  /** The same entries on the host: row-major flat index, row and column of each. */
  readonly host: { readonly flat: Int32Array; readonly rows: Int32Array; readonly cols: Int32Array };
  /**
   * Zeros `[n]` (float32) standing for the selected entries of the weight:
   * W + scatter(probe) with probe = 0 is W, so the gradient of a loss with
   * respect to the probe is the weight's gradient at the entries, in
   * `flat`'s order. Differentiate with respect to it (instead of the weight)
   * inside {@link withSparseWeightGrads} to get those `n` values and no
   * dense-shaped gradient at all; only uses of the weight as a marked
   * matmul's right operand or convolution's filter reach it (see
   * {@link usedOnlyAsWeights}).
   */
  readonly probe: tf.Tensor1D;
  /** Frees the index tensors and the probe. */
  dispose(): void;
}

/**
 * How many times the cost of one multiply-accumulate of a dense weight
 * gradient one wanted entry costs, per row of the batch. With fewer than
 * `K·N / SPARSE_ENTRY_COST` entries the sparse gradient is the cheaper. On
 * wasm the dense one is more than its products: XNNPACK packs the fresh
 * `δ` into its own layout for every product (about 10 ns an entry here)
 * and `x` is transposed first, while the sparse sums take about 1 ns a
 * product (in WebAssembly on wasm's heap, hostsums.ts; about 3 ns in
 * JavaScript on cpu). At 16, a per-neuron top-1 or top-2
 * goes sparse on every matrix of the shipped backbones (the ViT's are 64
 * wide); `npm run bench:step -- --k K` times GPS with K entries per neuron
 * with sparse and with dense gradients side by side. A convolution filter
 * with at most 4 input channels (a first layer's) goes sparse whenever it
 * is partly selected: its dense gradient is a convolution of the input
 * with δ, which XNNPACK runs at about 1.4 ns a product on the CNN's
 * one-channel first layer, more than a sparse sum's product; wider filters
 * take the matrices' rule.
 * @example
 * ```ts
 * const sparseIsCheaper = entries * SPARSE_ENTRY_COST < k * n;
 * ```
 * @category Backends
 */
export const SPARSE_ENTRY_COST = 16;

/**
 * Index tensors for the gradient of the entries `flat` (row-major flat
 * indices) of a dense weight of `shape` `[K, N]` or a convolution filter
 * `[kh, kw, C, O]` (a matrix `[kh·kw·C, O]` here), or `undefined` when
 * there are so many that the dense gradient is cheaper (see
 * {@link SPARSE_ENTRY_COST}; for a filter of at most 4 input channels, all of them; `force` skips that test), or the weight is
 * neither, or it is a filter and the backend is not one whose data lives
 * in this thread (wasm, cpu: the sums run on the host). Dispose them when
 * training ends.
 * @example
 * ```ts
 * const entries = sparseGradEntries([64, 192], Int32Array.from([0, 193, 400]));
 * try {
 *   const g = withSparseWeightGrads(new Map([[w, entries!]]), () => tf.grads(loss)([w]));
 * } finally {
 *   entries?.dispose();
 * }
 * ```
 * @category Backends
 */
export function sparseGradEntries(shape: readonly number[], flat: ArrayLike<number>, force = false): SparseGradEntries | undefined {
  const filter = shape.length === 4;
  if (shape.length !== 2 && !(filter && hostData())) return undefined;
  const n = shape[shape.length - 1]!;
  const k = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  // A first layer's filter (few input channels) goes sparse whenever partly selected (see SPARSE_ENTRY_COST).
  const cost = filter && shape[2]! <= 4 ? 1 : SPARSE_ENTRY_COST;
  if (!force && flat.length * cost >= k * n) return undefined;
  const rows = new Int32Array(flat.length);
  const cols = new Int32Array(flat.length);
  const coords = new Int32Array(2 * flat.length);
  for (let e = 0; e < flat.length; e++) {
    const f = flat[e]!;
    if (!Number.isInteger(f) || f < 0 || f >= k * n) throw new RangeError(`sparseGradEntries: index ${f} is outside a [${shape.join(', ')}] weight`);
    rows[e] = Math.floor(f / n);
    cols[e] = f % n;
    coords[2 * e] = rows[e]!;
    coords[2 * e + 1] = cols[e]!;
  }
  const t = {
    rows: tf.tensor1d(rows, 'int32'),
    cols: tf.tensor1d(cols, 'int32'),
    coords: tf.tensor2d(coords, [flat.length, 2], 'int32'),
    probe: tf.zeros([flat.length], 'float32') as tf.Tensor1D,
  };
  return { ...t, shape: [k, n], weightShape: [...shape], count: flat.length, host: { flat: Int32Array.from(flat), rows, cols }, dispose: () => tf.dispose(Object.values(t)) };
}

// ---------------------------------------------------------------------------
// A trained weight's products at its frozen base. XNNPACK (wasm) packs a
// matmul's weight into its own layout once per weight tensor and reuses it
// while the tensor lives; a weight trained every step is a new tensor every
// step, packed again in the forward product (about 10 ns an entry here) and
// transposed and packed for the input gradient. With few selected entries
// W = W₀ + D, D nonzero only there: x·W = x·W₀ + x·D and δ·Wᵀ = δ·W₀ᵀ + δ·Dᵀ,
// W₀ and W₀ᵀ packed once, x·D and δ·Dᵀ O(rows·n) on the host.

interface FrozenBase {
  /** W₀, and its transpose for the input gradient: the same tensors all along. */
  readonly weight: tf.Tensor;
  readonly transposed: tf.Tensor;
  /** W₀ at the entries, and W − W₀ there (set from the current weight each step). */
  readonly values: Float32Array;
  readonly delta: Float32Array;
  /** The data of the weight `delta` was taken from: any other weight takes the plain product. */
  current: object;
}
const bases = new WeakMap<SparseGradEntries, FrozenBase>();
/** The most rows a marked weight's product has had (recorded in withSparseWeightGrads), for keepBasePacked's decision. */
const rowsSeen = new WeakMap<SparseGradEntries, number>();

/**
 * Whether a product with `rows` rows is cheaper on the frozen base: the
 * repacking it saves (K·N entries, ~10 ns each on wasm) against the copies
 * and host sums it adds (rows·(N + 2n), ~1.5 ns each).
 */
const baseIsCheaper = (e: SparseGradEntries, rows: number) => e.shape[0] * e.shape[1] * 10 > rows * (e.shape[1] + 2 * e.count) * 1.5;

/** `y += x·D` (forward, y [R, N], x [R, K]) or `y += δ·Dᵀ` (input gradient, y [R, K], δ [R, N]), D the entries' `delta`. */
function addEntries(y: Float32Array, x: Float32Array, e: SparseGradEntries, delta: Float32Array, way: 'forward' | 'input'): void {
  const [k, n] = e.shape;
  const [inW, outW] = way === 'forward' ? [k, n] : [n, k];
  const [from, to] = way === 'forward' ? [e.host.rows, e.host.cols] : [e.host.cols, e.host.rows];
  const rows = x.length / inW;
  for (let r = 0; r < rows; r++) {
    const xo = r * inW;
    const yo = r * outW;
    for (let q = 0; q < delta.length; q++) y[yo + to[q]!]! += x[xo + from[q]!]! * delta[q]!;
  }
}

/**
 * What {@link keepBasePacked} returns.
 * @example
 * ```ts
 * const kept: BasePacked | undefined = keepBasePacked(entries, w0, 32);
 * ```
 * @category Backends
 */
export interface BasePacked {
  /** Takes the weight as it is after a step (its entries outside the selection unchanged from the base). */
  update(current: tf.Tensor): void;
  /** Frees the base's copy and its transpose; products go back to the current weight. */
  dispose(): void;
}

/**
 * Keeps the products of a weight with sparse gradient `entries` on its
 * frozen `base` (the weight when training starts) while only the entries
 * change: inside {@link withSparseWeightGrads}, the forward product and
 * the input gradient run on `base` (packed once on wasm) plus a host
 * correction for the change at the entries, wherever the cost model
 * favours it for the batch's rows; the values agree with the product on
 * the current weight to float rounding. Call `update(current)` after every
 * step with the weight as it now is (entries outside the selection must be
 * `base`'s), and `dispose()` at the end; a product on any other weight
 * than the one `update` (or the call) last saw takes the plain path.
 * Returns `undefined` (nothing to do) unless the backend's data lives in
 * this thread (wasm, cpu), the weight is a matrix, and the base would be
 * the cheaper for products of `rows` rows, or of the most rows its
 * products have had inside {@link withSparseWeightGrads} if more (the
 * fewer the rows, the more the base saves). `fineTune` does this for the
 * matrices it differentiates through their probe.
 * @example
 * ```ts
 * const kept = keepBasePacked(entries, w0, 32);
 * for (const batch of data) {
 *   const g = withSparseWeightGrads(new Map([[w, entries]]), () => tf.grads(loss)([entries.probe]));
 *   w = step(w, g);
 *   kept?.update(w);
 * }
 * kept?.dispose();
 * ```
 * @category Backends
 */
export function keepBasePacked(entries: SparseGradEntries, base: tf.Tensor, rows = 1): BasePacked | undefined {
  const most = Math.max(rows, rowsSeen.get(entries) ?? 0);
  if (!hostData() || entries.weightShape.length !== 2 || !baseIsCheaper(entries, most)) return undefined;
  // Kept: fineTune decides inside a step's tidy.
  const weight = tf.keep(tf.clone(base));
  let values: Float32Array;
  let transposed: tf.Tensor;
  try {
    transposed = tf.keep(tf.transpose(weight));
    const at = tf.gatherND(weight, entries.coords);
    values = at.dataSync() as Float32Array;
    at.dispose();
  } catch (e) {
    weight.dispose();
    throw e;
  }
  const kept: FrozenBase = { weight, transposed, values, delta: new Float32Array(entries.count), current: base.dataId };
  bases.set(entries, kept);
  return {
    update: (current) => {
      const now = tf.tidy(() => tf.gatherND(current, entries.coords));
      const v = now.dataSync();
      now.dispose();
      for (let q = 0; q < kept.delta.length; q++) kept.delta[q] = v[q]! - values[q]!;
      kept.current = current.dataId;
    },
    dispose: () => {
      bases.delete(entries);
      tf.dispose([weight, transposed]);
    },
  };
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

// The weights whose gradient is wanted at some entries (by their data, so a
// copy of the same tensor object counts too), each with a key into `byKey`.
let wanted: ReadonlyMap<object, number> | undefined;
let byKey: readonly SparseGradEntries[] = [];

/**
 * Runs `f` (a gradient computation: `tf.grads`, `tf.valueAndGrads`, …) with
 * the gradient of each weight in `weights` computed at its listed entries
 * only, zeros elsewhere, wherever the weight enters the matmul kernel as
 * the right-hand operand of a 2-D product (`matmul`, `linear`, `dense`),
 * or the convolution kernel as its filter (`conv2d`, `stridedConv2d`; on
 * wasm and cpu). The result equals the dense gradient at those entries to
 * float rounding (a sum over rows instead of XNNPACK's product: another
 * summation order).
 * `fineTune` does this for every partly selected kernel the cost model
 * favours. Not reentrant.
 * @example
 * ```ts
 * const [gw] = withSparseWeightGrads(new Map([[w, entries]]), () => tf.grads((w) => tf.sum(linear(x, w)))([w]));
 * ```
 * @category Backends
 */
export function withSparseWeightGrads<T>(weights: ReadonlyMap<tf.Tensor, SparseGradEntries>, f: () => T): T {
  const previous = [wanted, byKey] as const;
  byKey = [...weights.values()];
  wanted = new Map([...weights.keys()].map((w, i) => [w.dataId, i]));
  try {
    return f();
  } finally {
    [wanted, byKey] = previous;
  }
}

/**
 * Which of `weights` the forward pass `forward` uses only as the right-hand
 * operand of our 2-D matmul (`matmul`, `linear`, `dense`) or as the filter
 * of our convolution (`conv2d`, `stridedConv2d`), and at least once: the
 * weights whose gradient {@link SparseGradEntries.probe} carries whole. A
 * weight used any other way as well (reshaped, added, gathered, in a
 * depthwise convolution) would lose that use's share of the gradient there, so
 * it must take the weight's own (dense-shaped) gradient instead. Runs
 * `forward` once on the gradient tape and reads the tape; nothing is
 * differentiated and nothing is left behind.
 * @example
 * ```ts
 * const [ok] = usedOnlyAsWeights([w], () => linear(x, w)); // true
 * ```
 * @category Backends
 */
export function usedOnlyAsWeights(weights: readonly tf.Tensor[], forward: () => unknown): boolean[] {
  let out: boolean[] = weights.map(() => false);
  tf.tidy(() => {
    // A gradient scope records the tape; the constant result leaves nothing to differentiate.
    tf.engine().gradients(
      () => {
        out = usedOnlyAsWeightsOnTape(weights, forward());
        return tf.scalar(0);
      },
      weights.length > 0 ? [...weights] : [tf.scalar(0)],
      undefined,
      true,
    );
  });
  return out;
}

/**
 * What {@link gradsThroughProbes} takes.
 * @example
 * ```ts
 * const step: ProbedStep = { weights: [w, b], entries: new Map([[0, entries]]), probed: undefined, loss: (w, b) => lossOf(w, b) };
 * ```
 * @category Backends
 */
export interface ProbedStep {
  /** The weights differentiated, in the order `loss` takes them. */
  readonly weights: readonly tf.Tensor[];
  /** Sparse-gradient entries of some of them, by index into `weights`. */
  readonly entries: ReadonlyMap<number, SparseGradEntries>;
  /**
   * Which of those go through their probe; `undefined` on a run's first
   * step: every one of `candidates` is tried, and this step's own tape says
   * which qualify (see {@link usedOnlyAsWeights}).
   */
  readonly probed: ReadonlySet<number> | undefined;
  /** The ones that may be probed (default: every one with entries). */
  readonly candidates?: readonly number[];
  /** The step's loss, of the weights in order. */
  readonly loss: (...weights: tf.Tensor[]) => tf.Scalar;
}

/**
 * One step's loss and gradients on the sparse-gradient path, as `fineTune`
 * and its workers take it: inside {@link withSparseWeightGrads}, a probed
 * weight is differentiated through its probe (its gradient is `[n]`, its
 * selected values in the entries' order; the forward pass uses the weight
 * itself), a weight with entries but not probed gets its dense-shaped
 * gradient with zeros outside the entries, the others their plain
 * gradient. On the first step (`probed` undefined) the candidates are
 * checked on the tape of this very step, and the step runs again only if
 * one does not qualify. Returns the probed set to pass next time.
 * @example
 * ```ts
 * let probed: ReadonlySet<number> | undefined;
 * const r = gradsThroughProbes({ weights, entries, probed, loss });
 * probed = r.probed; // r.grads[i] is [n] for i in probed
 * ```
 * @category Backends
 */
export function gradsThroughProbes(o: ProbedStep): { value: tf.Scalar; grads: tf.Tensor[]; probed: ReadonlySet<number> } {
  const marks = new Map([...o.entries].map(([i, e]) => [o.weights[i]!, e]));
  /** `on` through their probes; with `check`, a probe the forward pass never took (a filter used reshaped) gets no gradient rather than an error. */
  const run = (on: ReadonlySet<number>, check?: (loss: tf.Scalar) => void) => {
    const xs = o.weights.map((w, i) => (on.has(i) ? o.entries.get(i)!.probe : w));
    const f = (...ts: tf.Tensor[]) => {
      const loss = o.loss(...ts.map((t, i) => (on.has(i) ? o.weights[i]! : t)));
      check?.(loss);
      return loss;
    };
    if (!check) return withSparseWeightGrads(marks, () => tf.valueAndGrads(f)(xs));
    const r = withSparseWeightGrads(marks, () => tf.engine().gradients(() => f(...xs), xs, undefined, true));
    return { value: r.value as tf.Scalar, grads: r.grads };
  };
  if (o.probed !== undefined) return { ...run(o.probed), probed: o.probed };
  const ps = o.candidates ?? [...o.entries.keys()];
  if (ps.length === 0) return { ...run(new Set()), probed: new Set() };
  let ok: boolean[] = [];
  const first = run(new Set(ps), (loss) => (ok = usedOnlyAsWeightsOnTape(ps.map((i) => o.weights[i]!), loss)));
  const probed = new Set(ps.filter((_, j) => ok[j]));
  // A weight that does not qualify, or one without a gradient (the plain path then says so as tfjs does): again without them.
  if (probed.size < ps.length || first.grads.some((g) => g == null)) return { ...run(probed), probed };
  return { ...first, probed };
}

/**
 * {@link usedOnlyAsWeights} for the forward pass that has just computed `y`
 * inside a gradient computation (`tf.valueAndGrads`' function, say): reads
 * the active tape, so the check costs no forward pass of its own.
 */
function usedOnlyAsWeightsOnTape(weights: readonly tf.Tensor[], y: unknown): boolean[] {
  const ids = new Map(weights.map((w, i) => [w.dataId, i]));
  const seen = weights.map(() => false);
  const other = weights.map(() => false);
  const tape = (tf.engine().state as unknown as { activeTape: { kernelName: string; inputs: Record<string, tf.Tensor>; outputs: tf.Tensor[] }[] | null }).activeTape ?? [];
  // The tape also holds the copies a kernel saves for its gradient
  // (clone nodes whose output nothing consumes): a use counts only
  // when its output feeds the computation.
  const consumed = new Set<number>(y instanceof tf.Tensor ? [y.id] : []);
  for (const node of tape) for (const t of Object.values(node.inputs)) if (t !== undefined) consumed.add(t.id);
  for (const node of tape) {
    for (const [name, t] of Object.entries(node.inputs)) {
      const i = t === undefined ? undefined : ids.get(t.dataId);
      if (i === undefined) continue;
      const asWeight = node.kernelName === KERNEL ? name === 'b' && t.rank === 2 : node.kernelName === CONV && name === 'filter';
      if (asWeight && sameShape(t.shape, weights[i]!.shape)) seen[i] = true;
      else if (node.outputs.some((o) => consumed.has(o.id))) other[i] = true;
    }
  }
  return weights.map((_, i) => seen[i]! && !other[i]!);
}

/**
 * Σ_r a[r, i]·g[r, j] at the wanted (i, j), as a vector `[n]` in the
 * entries' order. On the backends whose data lives in this thread (wasm,
 * cpu: reading it needs no device sync) the sums run here, in float64
 * (hostsums.ts): wasm's GatherV2 is an element-by-element loop that costs
 * more than the whole dense product. Elsewhere: gathered columns, a
 * product and a column sum.
 */
function sparseWeightGradValues(a: tf.Tensor, g: tf.Tensor, e: SparseGradEntries): tf.Tensor1D {
  if (!hostData()) return tf.sum(tf.mul(tf.gather(a, e.rows, 1), tf.gather(g, e.cols, 1)), 0) as tf.Tensor1D;
  const [k, n] = e.shape;
  return tf.tensor1d(Float32Array.from(entrySums(a, g, matrixOrigins(a.size / k, k), n, e.host.rows, e.host.cols)));
}

/** Whether the backend's data lives in this thread (reading it needs no device sync). */
const hostData = () => tf.getBackend() === 'wasm' || tf.getBackend() === 'cpu';

/**
 * A filter's gradient at the wanted entries, `[n]`, on the host (only
 * filters on wasm and cpu get entries): Σ over output positions p of
 * xpad[window origin of p + offset of the entry]·dy[p, o], in float64:
 * the matmul's sums (hostsums.ts), with each position's window corner as
 * its row's origin.
 */
function sparseFilterGradValues(x: tf.Tensor4D, dy: tf.Tensor4D, e: SparseGradEntries, pads: Pads, sh: number, sw: number): tf.Tensor1D {
  const [, kw, c] = e.weightShape as [number, number, number, number];
  const xp = pad4(x, pads);
  const [batch, hp, wp] = xp.shape;
  const [, ho, wo] = dy.shape;
  // Entry q reads the input at (window origin) + off[q], the output gradient at channel col[q].
  const off = Int32Array.from(e.host.rows, (r) => (Math.floor(r / (kw * c)) * wp + (Math.floor(r / c) % kw)) * c + (r % c));
  const origin = new Int32Array(batch * ho * wo);
  for (let b = 0, p = 0; b < batch; b++) for (let h = 0; h < ho; h++) for (let w = 0; w < wo; w++, p++) origin[p] = ((b * hp + h * sh) * wp + w * sw) * c;
  try {
    return tf.tensor1d(Float32Array.from(entrySums(xp, dy, origin, e.weightShape[3]!, off, e.host.cols)));
  } finally {
    if (xp !== x) xp.dispose();
  }
}

/** The weight's gradient dense-shaped from its `values` at the entries, zeros elsewhere (the weight's own gradient inside withSparseWeightGrads). */
function scatterEntries(values: tf.Tensor1D, e: SparseGradEntries): tf.Tensor {
  if (!hostData()) return tf.reshape(tf.scatterND(e.coords, values, [...e.shape]), [...e.weightShape]);
  const v = values.dataSync();
  values.dispose();
  const out = new Float32Array(e.shape[0] * e.shape[1]);
  for (let q = 0; q < v.length; q++) out[e.host.flat[q]!] = v[q]!;
  return tf.tensor(out, [...e.weightShape]);
}

tf.registerGradient({
  kernelName: KERNEL,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved as [tf.Tensor, tf.Tensor];
    const g = dy as tf.Tensor;
    const key = attrs['entries'] as number | undefined;
    return {
      a: () => {
        const e = key === undefined ? undefined : byKey[key];
        // The forward pass ran on the base (its 'base' attribute): so does the input gradient.
        const base = e && attrs['base'] ? bases.get(e) : undefined;
        if (!base) return kernelMatMul(g, tf.transpose(b, swapLast(b.rank)));
        // δ·Wᵀ = δ·W₀ᵀ + δ·Dᵀ, W₀ᵀ packed once; the correction goes into dx's own memory (only we hold it).
        const dx = kernelMatMul(g, base.transposed);
        addEntries(hostView(dx), hostView(g), e!, base.delta, 'input');
        return dx;
      },
      b: () => {
        const e = key === undefined ? undefined : byKey[key];
        return e ? scatterEntries(sparseWeightGradValues(a, g, e), e) : kernelMatMul(tf.transpose(a, swapLast(a.rank)), g);
      },
      // Asked for only when the probe is differentiated (see SparseGradEntries.probe).
      probe: () => sparseWeightGradValues(a, g, byKey[key!]!),
    };
  },
});

/** The matmul every typed op uses: ours unless {@link useStockGradients} is on. */
export const fastMatMul = (x: tf.Tensor, w: tf.Tensor): tf.Tensor => (stock ? tf.matMul(x, w) : kernelMatMul(x, w));

/**
 * `dy [B, Ho, Wo, C]` with `s − 1` zero rows/columns between entries: the
 * gradient of a strided window seen by a stride-1 one. Plain reshape + pad.
 */
function dilateGrad(dy: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  if (sh === 1 && sw === 1) return dy;
  const [b, ho, wo, c] = dy.shape;
  const spread = tf.pad(tf.reshape(dy, [b, ho, 1, wo, 1, c]), [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
  return tf.slice(tf.reshape(spread, [b, ho * sh, wo * sw, c]) as tf.Tensor4D, [0, 0, 0, 0], [b, (ho - 1) * sh + 1, (wo - 1) * sw + 1, c]);
}

/**
 * The gradient w.r.t. a padded input `[B, Hp, Wp, ·]`, from the full
 * correlation `full` of the dilated output gradient with the flipped filter
 * (`[B, (Ho−1)s + K, …]`): rows the windows never reached get zero, then
 * the padding is cut away.
 */
function cropInputGrad(full: tf.Tensor4D, hp: number, wp: number, pads: [number, number, number, number]): tf.Tensor4D {
  const [b, fh, fw, c] = full.shape;
  const [t, bo, l, r] = pads;
  const whole = fh < hp || fw < wp ? tf.pad(full, [[0, 0], [0, hp - fh], [0, wp - fw], [0, 0]]) : full;
  return tf.slice(whole, [0, t, l, 0], [b, hp - t - bo, wp - l - r, c]);
}

function pad4(x: tf.Tensor4D, [t, bo, l, r]: [number, number, number, number]): tf.Tensor4D {
  return t + bo + l + r > 0 ? tf.pad(x, [[0, 0], [t, bo], [l, r], [0, 0]]) : x;
}

type Pads = [number, number, number, number];

/** tfjs's explicit padding of NHWC spatial dims, or 'valid' for none. */
const explicit = ([t, bo, l, r]: readonly number[]): 'valid' | [[number, number], [number, number], [number, number], [number, number]] =>
  t! + bo! + l! + r! > 0 ? [[0, 0], [t!, bo!], [l!, r!], [0, 0]] : 'valid';

const CONV = 'SparsetuneConv2D';
const DEPTHWISE = 'SparsetuneDepthwiseConv2D';
// The backends' own kernels, with the padding passed explicitly (no padded copy of the input).
const convAttrs = (attrs: tf.NamedAttrMap): tf.NamedAttrMap => ({
  strides: attrs['strides'] as number[],
  pad: explicit(attrs['pads'] as number[]),
  dataFormat: 'NHWC',
  dilations: [1, 1],
  dimRoundingMode: undefined as unknown as string,
});

function runConv(kernel: string, base: string, x: tf.Tensor, f: tf.Tensor, pads: Pads, sh: number, sw: number): tf.Tensor4D {
  ensureKernel(kernel, base, convAttrs);
  const attrs = { strides: [sh, sw], pads } as unknown as tf.NamedAttrMap;
  // A filter whose gradient is wanted at some entries: as the matmul's weight (the probe rides along).
  const key = kernel === CONV ? wanted?.get(f.dataId) : undefined;
  if (key === undefined || !sameShape(byKey[key]!.weightShape, f.shape)) return tf.engine().runKernel(kernel, { x, filter: f }, attrs) as tf.Tensor4D;
  return tf.engine().runKernel(kernel, { x, filter: f, probe: byKey[key]!.probe }, { ...attrs, entries: key }) as tf.Tensor4D;
}

/**
 * Conv2d at any stride (stride 1 included), a kernel of its own with a
 * registered gradient of forward ops only, lazy per input (see
 * `ensureKernel`): d input = the output gradient dilated by the
 * stride, fully padded and convolved with the flipped, in/out-swapped
 * filter; d filter = the padded input convolved with the dilated output
 * gradient, batch and channels swapped.
 */
tf.registerGradient({
  kernelName: CONV,
  inputsToSave: ['x', 'filter'],
  gradFunc: (dy, saved, attrs) => {
    const [x, sf] = saved as [tf.Tensor4D, tf.Tensor4D];
    const pads = attrs['pads'] as Pads;
    const [sh, sw] = attrs['strides'] as [number, number];
    const [kh, kw] = sf.shape;
    const [, h, w] = x.shape;
    const hp = h + pads[0] + pads[1];
    const wp = w + pads[2] + pads[3];
    const g = () => dilateGrad(dy as tf.Tensor4D, sh, sw);
    return {
      x: () => {
        const flipped = tf.transpose(tf.reverse(sf, [0, 1]), [0, 1, 3, 2]);
        const full = tf.conv2d(g(), flipped as tf.Tensor4D, 1, explicit([kh - 1, kh - 1, kw - 1, kw - 1]));
        return cropInputGrad(full, hp, wp, pads);
      },
      filter: () => {
        const key = attrs['entries'] as number | undefined;
        if (key !== undefined) return scatterEntries(sparseFilterGradValues(x, dy as tf.Tensor4D, byKey[key]!, pads, sh, sw), byKey[key]!);
        // df[i,j,c,o] = Σ_{b,h,w} xpad[b, h·s+i, w·s+j, c]·dy[b,h,w,o]: a 'valid' convolution of
        // xpadᵀ [C, Hp, Wp, B] with the dilated dyᵀ [Hd, Wd, B, O]; windows past the last one
        // the forward pass used (padding it never reached) are cut off.
        const dfc = tf.conv2d(tf.transpose(x, [3, 1, 2, 0]), tf.transpose(g(), [1, 2, 0, 3]), 1, explicit(pads));
        const cropped = dfc.shape[1] === kh && dfc.shape[2] === kw ? dfc : tf.slice(dfc, [0, 0, 0, 0], [dfc.shape[0], kh, kw, dfc.shape[3]]);
        return tf.transpose(cropped, [1, 2, 0, 3]);
      },
      // Asked for only when the probe is differentiated (see SparseGradEntries.probe).
      probe: () => sparseFilterGradValues(x, dy as tf.Tensor4D, byKey[attrs['entries'] as number]!, pads, sh, sw),
    };
  },
});

/**
 * Stride-1 conv2d with the zero padding `pads` ([top, bottom, left, right]);
 * its gradient is made of forward ops (wasm has no `Conv2DBackpropFilter`).
 */
export const fastConv2d = (pads: Pads) => (x: tf.Tensor, f: tf.Tensor): tf.Tensor4D => runConv(CONV, 'Conv2D', x, f, pads, 1, 1);

/** Strided conv2d with the zero padding `pads`, gradient of forward ops only (as {@link fastConv2d}'s). */
export const fastStridedConv2d = (pads: Pads, sh: number, sw: number) => (x: tf.Tensor, f: tf.Tensor): tf.Tensor4D => runConv(CONV, 'Conv2D', x, f, pads, sh, sw);

/**
 * Depthwise conv2d, a kernel of its own with a registered gradient of
 * forward ops only, lazy per input: wasm registers no
 * `DepthwiseConv2dNativeBackpropInput`/`…Filter`, so tfjs's own gradient
 * fails there. d input = a depthwise correlation of the dilated, fully
 * padded output gradient with the flipped filter (multiplier as channels),
 * summed over the multiplier; d filter = a depthwise convolution over a
 * batch-of-one whose channels are (batch, channel) pairs, with the dilated
 * output gradient as filter, summed over the batch.
 */
tf.registerGradient({
  kernelName: DEPTHWISE,
  inputsToSave: ['x', 'filter'],
  gradFunc: (dy, saved, attrs) => {
    const [x, sf] = saved as [tf.Tensor4D, tf.Tensor4D];
    const pads = attrs['pads'] as Pads;
    const [sh, sw] = attrs['strides'] as [number, number];
    const [kh, kw, c, m] = sf.shape;
    const [batch, h, w] = x.shape;
    const hp = h + pads[0] + pads[1];
    const wp = w + pads[2] + pads[3];
    const g = () => dilateGrad(dy as tf.Tensor4D, sh, sw);
    return {
      x: () => {
        // Channel c·M+q of g correlates with the flipped f[:, :, c, q]; a depthwise
        // conv over C·M channels (multiplier 1), then the M outputs of each c summed.
        const flipped = tf.reshape(tf.reverse(sf, [0, 1]), [kh, kw, c * m, 1]);
        const full = tf.depthwiseConv2d(g(), flipped as tf.Tensor4D, 1, explicit([kh - 1, kh - 1, kw - 1, kw - 1]));
        const [, fh, fw] = full.shape;
        const summed = m === 1 ? full : (tf.sum(tf.reshape(full, [batch, fh, fw, c, m]), 4) as tf.Tensor4D);
        return cropInputGrad(summed, hp, wp, pads);
      },
      filter: () => {
        // df[i,j,c,q] = Σ_{b,h,w} xpad[b, h·s+i, w·s+j, c]·dy[b,h,w,c·M+q]. With (b, c) as the
        // channel of one image [1, Hp, Wp, B·C] and the dilated dy as its depthwise filter
        // [Hd, Wd, B·C, M], the output [1, ·, ·, B·C·M] holds it per b.
        const gd = g();
        const [, hd, wd] = gd.shape;
        const xbc = tf.reshape(tf.transpose(pad4(x, pads), [1, 2, 0, 3]), [1, hp, wp, batch * c]) as tf.Tensor4D;
        const gbc = tf.reshape(tf.transpose(tf.reshape(gd, [batch, hd, wd, c, m]), [1, 2, 0, 3, 4]), [hd, wd, batch * c, m]) as tf.Tensor4D;
        const dfb = tf.depthwiseConv2d(xbc, gbc, 1, 'valid');
        const cropped = tf.slice(dfb, [0, 0, 0, 0], [1, kh, kw, batch * c * m]);
        return tf.sum(tf.reshape(cropped, [kh, kw, batch, c, m]), 2);
      },
    };
  },
});

/** Depthwise conv2d with the zero padding `pads`, gradient of forward ops only. */
export const fastDepthwiseConv2d = (pads: Pads, sh: number, sw: number) => (x: tf.Tensor, f: tf.Tensor): tf.Tensor4D =>
  runConv(DEPTHWISE, 'DepthwiseConv2dNative', x, f, pads, sh, sw);

// ---------------------------------------------------------------------------
// GELU and layer norm with hand-written gradients: fewer kernels than tfjs's
// autodiff of their compositions, and GELU without wasm's Tanh (a scalar
// loop there, ~10× slower than its XNNPACK Sigmoid).

const GELU_A = 2 * Math.sqrt(2 / Math.PI);
const GELU_B = GELU_A * 0.044715;

/**
 * GELU, tanh approximation, as `x·σ(x·(a + b·x²))` with a = 2√(2/π),
 * b = 0.044715·a (since ½(1 + tanh u) = σ(2u)); gradient
 * `σ + x·σ(1−σ)·(a + 3b·x²)`.
 */
export const fastGelu = tf.customGrad((a, save) => {
  const x = a as tf.Tensor;
  const x2 = tf.square(x);
  const s = tf.sigmoid(tf.mul(x, tf.add(tf.mul(x2, GELU_B), GELU_A)));
  (save as tf.GradSaveFunc)([x, x2, s]);
  return {
    value: tf.mul(x, s),
    gradFunc: (dy, saved) => {
      const [sx, sx2, ss] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
      const slope = tf.add(tf.mul(sx2, 3 * GELU_B), GELU_A);
      const ds = tf.mul(tf.mul(ss, tf.sub(1, ss)), tf.mul(sx, slope));
      return tf.mul(dy as tf.Tensor, tf.add(ss, ds));
    },
  };
}) as (x: tf.Tensor) => tf.Tensor;

/**
 * Layer norm over the last axis with its gradient written out:
 * x̂ = (x − μ)·r, r = 1/√(σ² + ε); dx = r·(g − mean(g) − x̂·mean(g·x̂)) with
 * g = dy·γ, dγ = Σ dy·x̂, dβ = Σ dy over the leading axes.
 */
export const fastLayerNorm = (epsilon: number) => (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor): tf.Tensor => {
  const d = x.shape[x.rank - 1]!;
  if (x.rank >= 2 && d % 4 === 0 && [x, gamma, beta].every((t) => t.dtype === 'float32') && tf.getBackend() === 'wasm' && layerNormRunsOn()) {
    ensureLayerNormKernels();
    const [y, xhat, rstd] = tf.engine().runKernel(LAYER_NORM, { x, gamma, beta }, { epsilon }) as tf.Tensor[];
    // The tape keeps its own copies of x̂ and r where it records (their data shared): the caller gets y alone.
    tf.dispose([xhat!, rstd!]);
    return y!;
  }
  return layerNormOps(epsilon)(x, gamma, beta);
};

/**
 * On wasm (a width that is a multiple of 4), layer norm is one kernel of ours
 * each way, `SparsetuneLayerNorm` (outputs y, x̂ and r; the last two only
 * for the gradient) and `SparsetuneLayerNormGrad`, SIMD passes over the rows
 * on the heap (hostsums.ts LN_MODULE): about 0.1 ms forward and 0.05 back
 * for a batch-32 ViT block's [544, 64], where the ops above took about 1 ms
 * in some twenty dispatches. Each sum adds four lanes, then the lanes: other
 * float rounding than the ops, checked against them.
 */
const LAYER_NORM = 'SparsetuneLayerNorm';
const LAYER_NORM_GRAD = 'SparsetuneLayerNormGrad';

function ensureLayerNormKernels(): void {
  registerOnce(LAYER_NORM, ({ inputs, backend: be, attrs }) => {
    const { x, gamma, beta } = inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
    const kb = be as tf.KernelBackend;
    return hostOutputs(kb, [[...x.shape], [...x.shape], x.shape.slice(0, -1)], ([y, xhat, rstd]) => {
      if (!layerNormInto({ x, gamma, beta, y: y!, xhat: xhat!, rstd: rstd! }, attrs!['epsilon'] as number, kb)) throw new Error(`${LAYER_NORM}: cannot run on this heap`);
    });
  });
  // One pass gives all three gradients; `want` picks the one returned (each input's gradient is asked for on its own).
  registerOnce(LAYER_NORM_GRAD, ({ inputs, backend: be, attrs }) => {
    const { dy, gamma, xhat, rstd } = inputs as { dy: tf.TensorInfo; gamma: tf.TensorInfo; xhat: tf.TensorInfo; rstd: tf.TensorInfo };
    const kb = be as tf.KernelBackend;
    const outs = hostOutputs(kb, [[...dy.shape], [...gamma.shape], [...gamma.shape]], ([dx, dgamma, dbeta]) => {
      hostView(dgamma!, kb).fill(0);
      hostView(dbeta!, kb).fill(0);
      if (!layerNormGradInto({ dy, gamma, xhat, rstd, dx: dx!, dgamma: dgamma!, dbeta: dbeta! }, kb)) throw new Error(`${LAYER_NORM_GRAD}: cannot run on this heap`);
    });
    const want = ['x', 'gamma', 'beta'].indexOf(attrs!['want'] as string);
    for (const [i, o] of outs.entries()) if (i !== want) kb.disposeData(o.dataId);
    return outs[want]!;
  });
}

tf.registerGradient({
  kernelName: LAYER_NORM,
  inputsToSave: ['gamma'],
  outputsToSave: [false, true, true],
  gradFunc: (dy, saved) => {
    const [gamma, xhat, rstd] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
    // Only y reaches the loss (x̂ and r are outputs for this gradient alone).
    const g = (Array.isArray(dy) ? dy[0] : dy) as tf.Tensor;
    const grad = (want: string) => () => tf.engine().runKernel(LAYER_NORM_GRAD, { dy: g, gamma, xhat, rstd }, { want }) as tf.Tensor;
    return { x: grad('x'), gamma: grad('gamma'), beta: grad('beta') };
  },
});

/** Layer norm by tfjs ops with the gradient written out (every backend; see {@link fastLayerNorm}). */
const layerNormOps = (epsilon: number) =>
  tf.customGrad((a, b, c, save) => {
    const [x, gamma, beta] = [a, b, c] as tf.Tensor[] as [tf.Tensor, tf.Tensor, tf.Tensor];
    const centred = tf.sub(x, tf.mean(x, -1, true));
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), epsilon));
    const xhat = tf.mul(centred, rstd);
    (save as tf.GradSaveFunc)([xhat, rstd, gamma]);
    return {
      value: tf.add(tf.mul(xhat, gamma), beta),
      gradFunc: (dy, saved) => {
        const [sx, sr, sg] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const d = dy as tf.Tensor;
        const g = tf.mul(d, sg);
        const dx = tf.mul(sr, tf.sub(tf.sub(g, tf.mean(g, -1, true)), tf.mul(sx, tf.mean(tf.mul(g, sx), -1, true))));
        return [dx, columnSums(tf.mul(d, sx)), columnSums(d)];
      },
    };
  }) as (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor;

/**
 * Softmax cross-entropy as one kernel of our own, `SparsetuneCrossEntropy`:
 * the batch-mean loss and, as a second output, its gradient with respect to
 * the logits, `(softmax(z) − t) / B`, both computed on the host in float64
 * (logits are `[B, K]`: small). The registered gradient is one product,
 * `dy · that`. tfjs's own path (one-hot, log-softmax, product, sums and
 * their gradients) is about 33 kernel calls a step, which on a head-only
 * step (linear probing on cached features) was half the step.
 * Labels outside `[0, K)` are a `DataError`: a one-hot of them is all zeros,
 * which would silently drop their samples from the loss.
 */
const CROSS_ENTROPY = 'SparsetuneCrossEntropy';

/** Registers a kernel of our own on the current backend, once per backend. */
function registerOnce(name: string, kernelFunc: tf.KernelFunc): void {
  const backend = tf.getBackend();
  if (tf.getKernel(name, backend) === undefined) tf.registerKernel({ kernelName: name, backendName: backend, kernelFunc });
}

function ensureCrossEntropyKernel(): void {
  registerOnce(CROSS_ENTROPY, ({ inputs, backend: be, attrs }) => {
    const { logits, labels } = inputs as { logits: tf.TensorInfo; labels: tf.TensorInfo };
    const kb = be as tf.KernelBackend;
    const [b, k] = logits.shape as [number, number];
    const eps = (attrs?.['labelSmoothing'] as number | undefined) ?? 0;
    const z = hostView(logits, kb);
    const y = hostView(labels, kb) as unknown as Int32Array;
    const grad = new Float32Array(b * k);
    const off = eps / k;
    let total = 0;
    for (let r = 0, at = 0; r < b; r++, at += k) {
      const label = y[r]!;
      if (!(label >= 0 && label < k)) throw new DataError(`crossEntropy: label ${label} of sample ${r} is not a class of the ${k} logits (0 to ${k - 1})`);
      let m = -Infinity;
      for (let j = 0; j < k; j++) m = Math.max(m, z[at + j]!);
      let s = 0;
      for (let j = 0; j < k; j++) s += Math.exp(z[at + j]! - m);
      const lse = m + Math.log(s);
      for (let j = 0; j < k; j++) {
        const t = (j === label ? 1 - eps : 0) + off;
        const v = z[at + j]!;
        total += t === 0 ? 0 : t * (lse - v);
        grad[at + j] = (Math.exp(v - lse) - t) / b;
      }
    }
    // `write` is what every backend has (tfjs's own makeTensor uses it).
    const out = (values: Float32Array, shape: number[]): tf.TensorInfo => ({ dataId: kb.write(values, shape, 'float32'), shape, dtype: 'float32' });
    return [out(Float32Array.of(total / b), []), out(grad, [b, k])];
  });
}

tf.registerGradient({
  kernelName: CROSS_ENTROPY,
  outputsToSave: [false, true],
  gradFunc: (dy, saved) => {
    const [dLoss] = dy as tf.Tensor[];
    // Labels computed from what is differentiated (pseudo-labels, argMax of the logits) get zero, as tfjs's one-hot gives its indices.
    return { logits: () => tf.mul(dLoss!, saved[0]!), labels: () => tf.zeros([saved[0]!.shape[0]!]) };
  },
});

/** Batch-mean softmax cross-entropy of `logits` `[B, K]` against int32 class `labels` `[B]`, with label smoothing `eps`. */
export function fastCrossEntropy(logits: tf.Tensor, labels: tf.Tensor, eps: number): tf.Scalar {
  ensureCrossEntropyKernel();
  const [loss] = tf.engine().runKernel(CROSS_ENTROPY, { logits, labels }, { labelSmoothing: eps }) as tf.Tensor[];
  return loss as tf.Scalar;
}

/**
 * Adam's moments and step as one kernel of our own, `SparsetuneAdam`, where
 * the data lives in this thread (wasm, cpu): `m ← b1·m + (1−b1)·g`,
 * `v ← b2·v + (1−b2)·g²`, `u = (m / c1) / (√(v / c2) + eps)`, a loop on
 * the host instead of twelve kernel calls (each about as dear as the loop
 * over a small leaf: on a head-only step they were a third of it). Every
 * operation is rounded to float32 where tfjs's kernels round it, and a
 * float32 `+`, `×`, `÷` or `√` computed in float64 and rounded once is the
 * float32 result, so the outputs are bit for bit those of the ops.
 */
const ADAM = 'SparsetuneAdam';

function ensureAdamKernel(): void {
  registerOnce(ADAM, ({ inputs, backend: be, attrs }) => {
    const { g, m, v } = inputs as { g: tf.TensorInfo; m: tf.TensorInfo; v: tf.TensorInfo };
    const kb = be as tf.KernelBackend;
    const f = Math.fround;
    const a = attrs as { b1: number; b2: number; eps: number; c1: number; c2: number };
    // The scalars as tfjs makes them: float32 tensors of the JS numbers.
    const s = [a.b1, 1 - a.b1, a.b2, 1 - a.b2, a.c1, a.c2, a.eps].map(f) as [number, number, number, number, number, number, number];
    const [b1, r1, b2, r2, c1, c2, eps] = s;
    const n = g.shape.reduce((x, y) => x * y, 1);
    // On wasm the outputs live on its heap and WebAssembly SIMD does all but the last n % 4 entries
    // (hostsums.ts: 0.56 ms for 200,000 entries where the twelve ops took 1.8 and this loop in JavaScript
    // several times that); on cpu, all of them here.
    let outs: tf.TensorInfo[] | undefined;
    let done = 0;
    if (adamRunsOn(kb)) {
      const make = (kb as unknown as { makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo }).makeOutput.bind(kb);
      outs = [make([...g.shape], 'float32'), make([...g.shape], 'float32'), make([...g.shape], 'float32')];
      done = adamInWasm({ g, m, v, u: outs[0]!, m2: outs[1]!, v2: outs[2]! }, s, kb);
    }
    // Views taken after every allocation (a new tensor may grow wasm's heap and detach older ones).
    const [gs, ms, vs] = [hostView(g, kb), hostView(m, kb), hostView(v, kb)];
    const [u, m2, v2] = outs ? outs.map((t) => hostView(t, kb)) as [Float32Array, Float32Array, Float32Array] : [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
    for (let i = done; i < n; i++) {
      const x = gs[i]!;
      const mi = f(f(ms[i]! * b1) + f(x * r1));
      const vi = f(f(vs[i]! * b2) + f(f(x * x) * r2));
      m2[i] = mi;
      v2[i] = vi;
      u[i] = f(mi / c1) / f(f(Math.sqrt(f(vi / c2))) + eps);
    }
    if (outs) return outs;
    const out = (values: Float32Array): tf.TensorInfo => ({ dataId: kb.write(values, g.shape, 'float32'), shape: g.shape, dtype: 'float32' });
    return [out(u), out(m2), out(v2)];
  });
}

/**
 * One Adam step of a leaf (`scaleByAdam`): the update and the new moments,
 * through {@link ADAM} where the data lives in this thread, and through
 * tfjs's ops elsewhere or under {@link useStockGradients} (the reference).
 * `c1 = 1 − b1^t`, `c2 = 1 − b2^t`.
 */
export function adamStep(g: tf.Tensor, m: tf.Tensor, v: tf.Tensor, a: { readonly b1: number; readonly b2: number; readonly eps: number; readonly c1: number; readonly c2: number }): [u: tf.Tensor, m: tf.Tensor, v: tf.Tensor] {
  // (Moments of another shape or type take the ops, which broadcast or refuse them as before.)
  const same = (t: tf.Tensor) => t.dtype === 'float32' && t.shape.length === g.shape.length && t.shape.every((d, i) => d === g.shape[i]);
  if (adamIsOneKernel() && same(g) && same(m) && same(v)) {
    ensureAdamKernel();
    return tf.engine().runKernel(ADAM, { g, m, v }, { ...a }) as [tf.Tensor, tf.Tensor, tf.Tensor];
  }
  const m2 = tf.add(tf.mul(m, a.b1), tf.mul(g, 1 - a.b1));
  const v2 = tf.add(tf.mul(v, a.b2), tf.mul(tf.square(g), 1 - a.b2));
  return [tf.div(tf.div(m2, a.c1), tf.add(tf.sqrt(tf.div(v2, a.c2)), a.eps)), m2, v2];
}

/**
 * Σ over every leading axis of `x` `[..., C]`: a bias's gradient, a layer
 * norm's scale and shift gradients. On wasm one pass of our own over the
 * rows, `SparsetuneColumnSum` (hostsums.ts: the floats of tfjs's `Sum`
 * without the transpose it makes first, which made those sums about a
 * tenth of a ViT step); elsewhere, and under {@link useStockGradients},
 * `tf.sum`.
 */
const COLUMN_SUM = 'SparsetuneColumnSum';

export function columnSums(x: tf.Tensor): tf.Tensor {
  if (stock || x.rank < 2 || x.dtype !== 'float32' || tf.getBackend() !== 'wasm' || !columnSumsInWasm()) return tf.sum(x, [...Array(x.rank - 1).keys()]);
  registerOnce(COLUMN_SUM, ({ inputs, backend: be }) => {
    const { x: t } = inputs as { x: tf.TensorInfo };
    const kb = be as tf.KernelBackend;
    const c = t.shape[t.shape.length - 1]!;
    const out = new Float32Array(c);
    if (!columnSumsInto(t, out, kb)) throw new Error(`${COLUMN_SUM}: the column sums cannot run on this heap`);
    return { dataId: kb.write(out, [c], 'float32'), shape: [c], dtype: 'float32' };
  });
  return tf.engine().runKernel(COLUMN_SUM, { x }, {}) as tf.Tensor;
}

/**
 * `x + b` for a bias `b` `[C]` over `x` `[..., C]`, as its own kernel,
 * `SparsetuneBiasAdd` (the backend's `Add`), so that the bias's gradient is
 * {@link columnSums} instead of tfjs's sum over the broadcast axes.
 */
const BIAS_ADD = 'SparsetuneBiasAdd';

export function fastBiasAdd(x: tf.Tensor, b: tf.Tensor): tf.Tensor {
  // (Other dtypes take tf.add, which casts them to one: a kernel called directly would not.)
  if (stock || x.dtype !== 'float32' || b.dtype !== 'float32') return tf.add(x, b);
  ensureKernel(BIAS_ADD, 'Add', (attrs) => attrs);
  return tf.engine().runKernel(BIAS_ADD, { a: x, b }, {}) as tf.Tensor;
}

tf.registerGradient({
  kernelName: BIAS_ADD,
  gradFunc: (dy) => {
    const d = dy as tf.Tensor;
    // x has the output's shape. (A reshape, as tfjs's own Add gradient gives: a tensor of its own, not dy itself.)
    return { a: () => tf.reshape(d, d.shape), b: () => columnSums(d) };
  },
});

/**
 * Whether `scaleByAdam` runs as one kernel a leaf here (adamStep), unless
 * {@link useStockGradients}: on cpu (a JavaScript loop, where tfjs's ops
 * are JavaScript loops too, twelve of them), and on wasm where our SIMD
 * function links to the heap. Not on a heap it cannot link to (the
 * threaded build of a cross-origin-isolated page): there a JavaScript loop
 * would be slower than the ops on large leaves.
 */
export function adamIsOneKernel(): boolean {
  if (stock) return false;
  const backend = tf.getBackend();
  return backend === 'cpu' || (backend === 'wasm' && adamRunsOn());
}

// ---------------------------------------------------------------------------
// Attention heads as two data movements of our own, each one kernel where the
// data lives in this thread (wasm, cpu): `SparsetuneSplitHeads` takes
// `[B, T, P·H·E]` to P tensors `[B, H, T, E]` (P = 3 splits a fused q/k/v
// projection), `SparsetuneMergeHeads` is its inverse, and each is the
// other's gradient. tfjs spells them as a split, a reshape and a transpose
// per part (and a concat, reshapes and transposes back): on wasm its SplitV
// copies its whole input out of the heap first, about 1 ms a block of the
// ViT at batch 64, and the ops are a dozen dispatches a block.
const SPLIT_HEADS = 'SparsetuneSplitHeads';
const MERGE_HEADS = 'SparsetuneMergeHeads';

/**
 * Copies between x `[B, T, P·H·E]` and parts[p] `[B, H, T, E]`: into the
 * parts (split) or into x (merge). Runs of E entries, in WebAssembly on
 * wasm's heap (hostsums.ts copyRunsInto); elsewhere here.
 */
function moveHeads(kb: tf.KernelBackend, xt: tf.TensorInfo, partTs: readonly tf.TensorInfo[], [b, t, h, e]: readonly [number, number, number, number], split: boolean): void {
  const w = partTs.length * h * e;
  // Run (bb, tt, hh) of part p: in x at (bb·T + tt)·W + (p·H + hh)·E, in the part at ((bb·H + hh)·T + tt)·E.
  const [xs, ys] = [[t * w, w, e], [h * t * e, e, t * e]] as const;
  if (partTs.every((y, p) => (split ? copyRunsInto(xt, p * h * e, y, 0, [b, t, h], xs, ys, e, kb) : copyRunsInto(y, 0, xt, p * h * e, [b, t, h], ys, xs, e, kb)))) return;
  const x = hostView(xt, kb);
  const parts = partTs.map((y) => hostView(y, kb));
  for (let bb = 0; bb < b; bb++)
    for (let tt = 0; tt < t; tt++)
      for (let p = 0; p < parts.length; p++) {
        const y = parts[p]!;
        for (let hh = 0; hh < h; hh++) {
          const xo = (bb * t + tt) * w + (p * h + hh) * e;
          const yo = ((bb * h + hh) * t + tt) * e;
          if (split) for (let i = 0; i < e; i++) y[yo + i] = x[xo + i]!;
          else for (let i = 0; i < e; i++) x[xo + i] = y[yo + i]!;
        }
      }
}

/**
 * Fresh float32 outputs of a kernel of ours, for `fill` to write on the host
 * (through hostView, after every allocation): on wasm's heap (makeOutput),
 * on cpu zeros written first (its values array is then the tensor's own).
 */
function hostOutputs(kb: tf.KernelBackend, shapes: readonly number[][], fill: (outs: tf.TensorInfo[]) => void): tf.TensorInfo[] {
  // (cpu has a makeOutput too, of values: wasm's is known by its heap.)
  const wasm = kb as unknown as { makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo; typedArrayFromHeap?: unknown };
  const outs = shapes.map((s): tf.TensorInfo =>
    wasm.typedArrayFromHeap ? wasm.makeOutput(s, 'float32') : { dataId: kb.write(new Float32Array(s.reduce((a, d) => a * d, 1)), s, 'float32'), shape: s, dtype: 'float32' },
  );
  fill(outs);
  return outs;
}

function ensureHeadsKernels(): void {
  registerOnce(SPLIT_HEADS, ({ inputs, backend: be, attrs }) => {
    const { x } = inputs as { x: tf.TensorInfo };
    const kb = be as tf.KernelBackend;
    const [b, t, w] = x.shape as [number, number, number];
    const [p, h] = [attrs!['parts'] as number, attrs!['heads'] as number];
    const dims = [b, t, h, w / (p * h)] as const;
    return hostOutputs(kb, Array.from({ length: p }, () => [b, h, t, w / (p * h)]), (parts) => moveHeads(kb, x, parts, dims, true));
  });
  registerOnce(MERGE_HEADS, ({ inputs, backend: be }) => {
    const kb = be as tf.KernelBackend;
    const parts = Array.from({ length: Object.keys(inputs).length }, (_, i) => inputs[`p${i}`]!);
    const [b, h, t, e] = parts[0]!.shape as [number, number, number, number];
    return hostOutputs(kb, [[b, t, parts.length * h * e]], ([x]) => moveHeads(kb, x!, parts, [b, t, h, e], false))[0]!;
  });
}

/** Whether the heads kernels run here: data in this thread, and not the stock reference. */
const headsOnHost = (x: tf.Tensor) => !stock && x.dtype === 'float32' && hostData();

/**
 * `[B, T, P·H·E]` → P tensors `[B, H, T, E]` (`parts` = P: 1 for one
 * projection's heads, 3 for a fused q/k/v): one kernel of ours on wasm and
 * cpu, tfjs's split, reshape and transpose elsewhere and under
 * {@link useStockGradients}. The same floats either way.
 */
export function fastSplitHeads(x: tf.Tensor, heads: number, parts: number): tf.Tensor[] {
  const [b, t, w] = x.shape as [number, number, number];
  const e = w / (parts * heads);
  if (!headsOnHost(x)) return (parts === 1 ? [x] : tf.split(x, parts, -1)).map((z) => tf.transpose(tf.reshape(z, [b, t, heads, e]), [0, 2, 1, 3]));
  ensureHeadsKernels();
  return tf.engine().runKernel(SPLIT_HEADS, { x }, { parts, heads }) as tf.Tensor[];
}

/** The inverse of {@link fastSplitHeads}: P tensors `[B, H, T, E]` → `[B, T, P·H·E]`. */
export function fastMergeHeads(parts: readonly tf.Tensor[]): tf.Tensor {
  const [b, h, t, e] = parts[0]!.shape as [number, number, number, number];
  if (!parts.every(headsOnHost)) return tf.concat(parts.map((z) => tf.reshape(tf.transpose(z, [0, 2, 1, 3]), [b, t, h * e])), -1);
  ensureHeadsKernels();
  // Inputs named p0, p1, … so their order survives the tape.
  return tf.engine().runKernel(MERGE_HEADS, Object.fromEntries(parts.map((z, i) => [`p${i}`, z])), { parts: parts.length, heads: h }) as tf.Tensor;
}

tf.registerGradient({
  kernelName: SPLIT_HEADS,
  // (A part the loss does not reach arrives as zeros: tfjs fills them in.)
  gradFunc: (dy) => ({ x: () => fastMergeHeads(Array.isArray(dy) ? dy : [dy]) }),
});

tf.registerGradient({
  kernelName: MERGE_HEADS,
  // Each part's gradient in a tidy of its own (the tape's): a split per part wanted. Only a
  // second-order gradient differentiates a merge of several parts.
  gradFunc: (dy, _saved, attrs) => {
    const [parts, heads] = [attrs['parts'] as number, attrs['heads'] as number];
    return Object.fromEntries(Array.from({ length: parts }, (_, i) => [`p${i}`, () => fastSplitHeads(dy as tf.Tensor, heads, parts)[i]!]));
  },
});
