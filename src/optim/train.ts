/**
 * The fine-tuning loop: epochs of `tidy`-scoped masked steps over a task's
 * training images, evaluation every epoch, optional keep-best, progress.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { requireBackend } from '../core/backend.js';
import { adamIsOneKernel, stockGradients } from '../core/kernels.js';
import { ConfigError, gradsThroughProbes, keepBasePacked, type BasePacked, leafSize, MaskError, NonFiniteError, paths, rng, ShapeError, sparseGradEntries, type Params, type Shape, type SparseGradEntries, type Tensor } from '../core/index.js';
import { assertDataSet, batches, type DataFits, type DataSet, type Labels, type SampleShape } from '../data/index.js';
import { assertFits, labelWidth, showShape } from '../data/images.js';
import { accuracy, crossEntropy, type Loss, type Model } from '../models/index.js';
import { assertMaskFor, countOnes, maskAlgebra, maskToIndices, select, selectionEnv, type GradientEngine, type GradientTrainer, type Mask, type Selector } from '../selection/index.js';
import { poolRunsModel, startPool, workersFor } from '../selection/pools.js';
import { BudgetError } from '../core/index.js';
import { applySelectedUpdates, disposeReplaced, trainableLeaves, trainOnly, type SparseState } from './masked.js';
import { flatten } from './wrappers.js';
import { carryState, maskChange } from './reselect.js';
import { warmupCosine } from './schedule.js';
import { adamw, applyUpdates, type GradientTransformation, type OptState } from './transform.js';

/**
 * One epoch's record.
 * @category Training
 */
export interface EpochRecord {
  /** 1-based epoch number. */
  readonly epoch: number;
  /** Mean training loss over the epoch's steps. */
  readonly loss: number;
  /** Validation accuracy, when validation data with class labels was given. */
  readonly valAccuracy?: number;
  /** Mean validation loss, when validation data with regression targets was given. */
  readonly valLoss?: number;
  /** Seconds since training started. */
  readonly seconds: number;
  /** Steps skipped for a non-finite loss (with `nonFinite: 'skip'`); absent when none was. */
  readonly skipped?: number;
}

/**
 * Progress within training, reported after every step.
 * @category Training
 */
export interface StepProgress {
  /** 1-based epoch. */
  readonly epoch: number;
  /** Steps done in this epoch. */
  readonly step: number;
  /** Steps in an epoch. */
  readonly steps: number;
  /** This step's loss. */
  readonly loss: number;
  /** The re-selection that ran after this step (with {@link FineTuneOptions.reselect}), and the mask it chose. */
  readonly reselection?: Reselection & { readonly mask: Mask };
}

// --- Re-selection during training (reselect): its option and record.
/**
 * {@link FineTuneOptions.reselect}: re-run a selector every `every` steps.
 * @category Training
 */
export interface ReselectOptions {
  /** Steps between re-selections (counted over the whole run, across epochs); none runs after the last step. */
  readonly every: number;
  /**
   * The selector; default the one `mask` was given as (a fixed Mask needs
   * one here). It must select as many entries as the first mask: a
   * {@link BudgetError} otherwise.
   */
  readonly selector?: Selector;
}

/**
 * One re-selection during {@link fineTune}: when it ran and how the mask changed.
 * @category Training
 */
export interface Reselection {
  /** The step it ran after, counted over the whole run (1-based). */
  readonly step: number;
  /** The epoch of that step. */
  readonly epoch: number;
  /** Entries the new mask selects (always the first mask's count). */
  readonly selected: number;
  /** Entries selected before and after: their optimizer state carried over. */
  readonly kept: number;
  /** Entries selected before, not after: frozen at their trained values, their state dropped. */
  readonly dropped: number;
  /** Entries newly selected: starting from a fresh state (zero moments). */
  readonly added: number;
}
// ---

/**
 * Options of {@link fineTune}: a model taking samples of shape `I`,
 * training data of shape `S` and validation data of shape `V` (each must
 * fit `I`: a compile error where both are literal, a `ShapeError` at run
 * time otherwise), labels `L`.
 * @category Training
 */
export interface FineTuneOptions<I extends Shape = Shape, S extends SampleShape = SampleShape, V extends SampleShape = S, L extends Labels = Labels> {
  /** The model (with the task's head; for regression, `classes` is the number of outputs). */
  readonly model: Model<I, number, number>;
  /** Starting parameters; they are not modified or disposed. */
  readonly params: Params;
  /** What trains: a mask, or a selector run on the training data first. */
  readonly mask: Mask | Selector;
  /** Training data: class labels, or float32 regression targets (then give `loss`). */
  readonly train: DataSet<S, L> & DataFits<I, S>;
  /** Validation data, evaluated after every epoch: accuracy for class labels, mean loss for regression targets. */
  readonly val?: DataSet<V, L> & DataFits<I, V>;
  /**
   * The training loss, `(logits [B, K], labels) → scalar`: e.g.
   * `meanSquaredError` for regression targets, or your own. Default:
   * cross-entropy with `labelSmoothing` (class labels only).
   */
  readonly loss?: Loss;
  /**
   * The optimizer, masked by the loop (default AdamW, weight decay 1e-4,
   * warm-up + cosine to `learningRate`; where 8 or more small leaves train,
   * run as `flatten(adamw(…), { maxLeafSize: 4096 })`: one AdamW over all
   * small leaves, the same numbers in fewer kernel calls). Wrap an
   * element-wise optimizer of your own in {@link flatten} for the same saving.
   */
  readonly optimizer?: GradientTransformation;
  /** Peak learning rate of the default optimizer (default 1e-3). */
  readonly learningRate?: number;
  /** Default 10. */
  readonly epochs?: number;
  /** Default 32. */
  readonly batchSize?: number;
  /** Shuffling (and, for a selector, selection) seed; default 0. */
  readonly seed?: number;
  /** Cross-entropy label smoothing of the default loss (default 0; not with `loss`). */
  readonly labelSmoothing?: number;
  /** Return the parameters of the epoch with the best validation accuracy, or lowest validation loss for regression (needs `val`). */
  readonly keepBest?: boolean;
  /** Optimizer state only for selected entries (default true). */
  readonly sparseState?: boolean;
  /** Called after every step. */
  readonly onStep?: (p: StepProgress) => void;
  /** Called after every epoch. */
  readonly onEpoch?: (r: EpochRecord) => void;
  /**
   * Progress after every step: a function to draw it, `false` for none, or
   * `true`/absent for the default set with {@link setDefaultProgress}.
   * Importing `sparsetune/node` makes that default a bar on stderr when
   * stderr is a terminal; in a browser there is no default.
   */
  readonly progressBar?: boolean | ((p: StepProgress) => void);
  /**
   * What a step with a non-finite loss does: `'error'` (the default) stops
   * with a {@link NonFiniteError} naming the epoch and step; `'skip'` drops
   * that step's update and optimizer state change and goes on, as optax's
   * `apply_if_finite`, also when the loss is finite but the update is not
   * (the epoch's record counts the skipped steps). With `'error'` the check
   * reads the loss the loop reads anyway, so it costs nothing; `'skip'` adds
   * one reduction over the updates to that same read.
   */
  readonly nonFinite?: 'error' | 'skip';
  /**
   * Computes each step's gradients (and a selector's gradient pass) in a
   * {@link GradientEngine}: `workerPool` from `sparsetune/node` shards each
   * batch over worker threads and sums the shards in a fixed order, so a run
   * is identical for a given worker count and equal to one in this thread
   * within float tolerance. The loss must be one the engine can ship:
   * the default cross-entropy or `meanSquaredError`.
   */
  readonly parallel?: GradientEngine;
  /**
   * Worker threads for this call (Node, where `sparsetune/node` is
   * imported): `n` starts that many, as `workerPool` does, for this run and
   * its selector, and stops them after; `'auto'` takes the machine's cores
   * (no more than a batch has shards of 16 samples) where a pool pays for
   * its start-up of a second or two (two cores or
   * more, batches of 32 or more, 4,096 samples or more over the run) and
   * can run the model and loss, and this thread otherwise. Default: this
   * thread, so that a run's result does not depend on the machine it runs
   * on (a pool's equals it within float tolerance, not bit for bit). Not
   * with `parallel`; in a browser, pass `parallel: await webWorkerPool(…)`.
   */
  readonly workers?: number | 'auto';
  /**
   * Compute a partly selected dense kernel's gradient at its selected
   * entries only (Σ over the batch of input × output gradient) where that
   * is cheaper than the whole product (default true). Equal to the dense
   * gradient up to float rounding (another summation order).
   */
  readonly sparseGradients?: boolean;
  /**
   * When only head leaves train and the model has {@link Model.applyHead},
   * compute the backbone's features once per image and train the head on
   * them (default true). `fineTune` feeds images as they are (no
   * augmentation, evaluation mode), so the features do not change between
   * epochs; the result equals the uncached run's up to float rounding.
   */
  readonly cacheFeatures?: boolean;
  // --- Re-selection during training (reselect).
  /**
   * Re-select every `every` steps (as SpIEL's drop-and-grow): the selector
   * runs on the current weights (the base with what has trained so far), on
   * the training data, with a seed derived from `seed` and the re-selection's
   * number. The budget stays fixed (the new mask must select as many entries
   * as the first; a {@link BudgetError} otherwise). Entries dropped keep their
   * trained values and stop moving; entries selected in both masks keep
   * their optimizer state; new ones start from a fresh state, while the step
   * count (bias correction, the schedule) carries on ({@link carryState}).
   * `result.mask` is then every entry that trained at some point, and
   * `result.reselections` says what each re-selection changed.
   */
  readonly reselect?: ReselectOptions;
  // ---
}

/**
 * What {@link fineTune} returns.
 * @category Training
 */
export interface FineTuneResult {
  /** The tuned parameters: new tensors for trained leaves, the caller's own tensors for frozen ones. */
  readonly params: Params;
  /**
   * The mask that was trained; with {@link FineTuneOptions.reselect}, every
   * entry that trained at some point up to the returned epoch (the union of
   * the masks), which is what may differ from the base: give it to `extractDelta`.
   */
  readonly mask: Mask;
  /** One record per epoch. */
  readonly history: readonly EpochRecord[];
  /** The epoch whose parameters are returned. */
  readonly epoch: number;
  /** Whether the head trained on features computed once (see {@link FineTuneOptions.cacheFeatures}). */
  readonly cachedFeatures: boolean;
  /** The leaves whose gradient was computed at the selected entries only (see {@link FineTuneOptions.sparseGradients}). */
  readonly sparseGradientLeaves: readonly string[];
  /** The re-selections that ran, in order (empty without {@link FineTuneOptions.reselect}). */
  readonly reselections: readonly Reselection[];
  /**
   * Of those, the leaves whose gradient reached the optimizer as the
   * selected values alone and whose update was written to those entries
   * alone (with sparse state, for kernels the model uses as matmul weights only).
   */
  readonly selectedValueLeaves: readonly string[];
}

/**
 * Accuracy of `model` on `set` (class labels), in batches.
 * @example
 * ```ts
 * evaluate(model, params, task.test); // 0.93
 * ```
 * @category Training
 */
export function evaluate<I extends Shape, S extends SampleShape>(
  model: Model<I, number, number>,
  params: Params,
  set: DataSet<S, Labels> & DataFits<I, S>,
  batchSize = 256,
): number {
  requireBackend('evaluate');
  assertDataSet(set, 'evaluate: set', model.classes);
  assertFits('evaluate', 'set', model.input, set.shape);
  positiveInteger('evaluate', { batchSize });
  if (!(set.labels instanceof Int32Array)) throw new ShapeError('evaluate: argument set: accuracy needs int32 class labels; for regression targets use evaluateLoss');
  return accuracyOn(model, params, set as DataSet<S>, batchSize);
}

/** {@link evaluate} without the checks, for sets checked on entry. */
function accuracyOn<I extends Shape>(model: Model<I, number, number>, params: Params, set: DataSet<SampleShape>, batchSize: number): number {
  let hits = 0;
  for (const { x, y } of batches(set, batchSize)) {
    hits += tf.tidy(() => accuracy(model.apply(params, x as unknown as Tensor<readonly ['B', ...I]>).logits, y)) * x.shape[0]!;
  }
  return hits / set.n;
}

/** A ConfigError unless each named value is a positive integer. */
function positiveInteger(what: string, values: Readonly<Record<string, unknown>>): void {
  for (const [k, v] of Object.entries(values)) if (!Number.isSafeInteger(v) || (v as number) < 1) throw new ConfigError(`${what}: ${k} must be a positive integer, got ${String(v)}`);
}

/**
 * Mean of `loss` over `set`, in batches (weighted by batch size): the
 * validation measure for regression.
 * @example
 * ```ts
 * evaluateLoss(model, params, test, meanSquaredError); // 0.012
 * ```
 * @category Training
 */
export function evaluateLoss<I extends Shape, S extends SampleShape>(
  model: Model<I, number, number>,
  params: Params,
  set: DataSet<S, Labels> & DataFits<I, S>,
  loss: Loss,
  batchSize = 256,
): number {
  requireBackend('evaluateLoss');
  assertDataSet(set, 'evaluateLoss: set');
  assertFits('evaluateLoss', 'set', model.input, set.shape);
  positiveInteger('evaluateLoss', { batchSize });
  return lossOn(model, params, set, loss, batchSize);
}

/** {@link evaluateLoss} without the checks, for sets checked on entry. */
function lossOn<I extends Shape>(model: Model<I, number, number>, params: Params, set: DataSet<SampleShape, Labels>, loss: Loss, batchSize: number): number {
  let sum = 0;
  for (const { x, y } of batches(set, batchSize)) {
    const v = tf.tidy(() => loss(model.apply(params, x as unknown as Tensor<readonly ['B', ...I]>).logits, y));
    sum += v.dataSync()[0]! * x.shape[0]!;
    v.dispose();
  }
  return sum / set.n;
}

// The core never touches `process`, so it runs in a browser; the Node entry
// installs its terminal bar here.
let defaultProgress: ((p: StepProgress) => void) | undefined;

/**
 * Sets the progress reporter {@link fineTune} uses when its `progressBar`
 * option is absent or `true`; `undefined` turns the default off.
 * `sparsetune/node` sets a bar on stderr when stderr is a terminal.
 * @example
 * ```ts
 * setDefaultProgress((p) => (status.textContent = `epoch ${p.epoch}: ${p.step}/${p.steps}`));
 * ```
 * @category Training
 */
export function setDefaultProgress(report: ((p: StepProgress) => void) | undefined): void {
  defaultProgress = report;
}

/**
 * Fine-tunes the entries a mask (or selector) picks and nothing else.
 * Everything the loop creates is disposed; bad input is an error before any step.
 * @example
 * ```ts
 * const { params: tuned, history } = fineTune({
 *   model, params, mask: gps({ k: 1 }), train: task.train, val: task.val, epochs: 10, keepBest: true,
 * });
 * ```
 * @category Training
 */
export function fineTune<I extends Shape, S extends SampleShape, V extends SampleShape = S, L extends Labels = Int32Array>(o: FineTuneOptions<I, S, V, L>): FineTuneResult {
  requireBackend('fineTune');
  if (o.workers !== undefined && o.parallel !== undefined) throw new ConfigError('fineTune: give workers or parallel, not both');
  // 'auto': a pool where it pays for its start-up (a second or two) and can run this model and loss.
  const worthIt = () => (o.batchSize ?? 32) >= 32 && (o.epochs ?? 10) * (o.train?.n ?? 0) >= 4096 && poolRunsModel(o.model as Model<Shape, number, number>, o.loss);
  // A batch is split into shards of at least 16 samples (the pool's minShard): more threads would idle.
  const workers = workersFor('fineTune', o.workers, worthIt, Math.floor((o.batchSize ?? 32) / 16));
  if (workers === 1) return fineTuneOn(o, () => o.parallel);
  let pool: ReturnType<typeof startPool> | undefined;
  try {
    // Started once the options are checked: a bad one costs no thread.
    return fineTuneOn(o, () => (pool ??= startPool(workers, 'fineTune')));
  } finally {
    // Its threads do not hold the process; they go when terminated.
    void pool?.terminate();
  }
}

/** {@link fineTune}, its gradients computed in the engine `parallelOf` gives (called once, after the checks), if any. */
function fineTuneOn<I extends Shape, S extends SampleShape, V extends SampleShape = S, L extends Labels = Int32Array>(o: FineTuneOptions<I, S, V, L>, parallelOf: () => GradientEngine | undefined): FineTuneResult {
  const { model } = o;
  const epochs = o.epochs ?? 10;
  const batchSize = o.batchSize ?? 32;
  const seed = o.seed ?? 0;
  const nonFinite = o.nonFinite ?? 'error';
  // Validate everything before the first step (and before any state exists).
  for (const [name, set] of [['train', o.train], ['val', o.val]] as const) {
    if (!set) continue;
    assertDataSet(set, `fineTune: ${name}`, model.classes);
    assertFits('fineTune', name, model.input, set.shape);
    if (set.labels instanceof Float32Array) {
      if (o.loss === undefined) throw new ConfigError(`fineTune: ${name} holds float32 regression targets; give a loss for them (e.g. loss: meanSquaredError)`);
      const t = labelWidth(set);
      if (t !== model.classes) throw new ShapeError(`fineTune: argument ${name}: ${t} regression targets per sample do not match the model's ${model.classes} outputs ${showShape([model.classes])}`);
    }
  }
  if (o.loss !== undefined && o.labelSmoothing !== undefined) throw new ConfigError('fineTune: labelSmoothing applies to the default cross-entropy; put smoothing into your own loss');
  const lossOf: Loss = o.loss ?? ((logits, labels) => crossEntropy(logits, labels as Tensor<readonly ['B']>, o.labelSmoothing === undefined ? {} : { labelSmoothing: o.labelSmoothing }));
  if (o.keepBest && !o.val) throw new ConfigError('fineTune: keepBest needs validation data');
  positiveInteger('fineTune', { epochs, batchSize });
  if (!Number.isSafeInteger(seed)) throw new ConfigError(`fineTune: seed must be a safe integer, got ${String(seed)}`);
  if (o.learningRate !== undefined && !(typeof o.learningRate === 'number' && Number.isFinite(o.learningRate) && o.learningRate > 0)) {
    throw new ConfigError(`fineTune: learningRate must be a finite number > 0, got ${String(o.learningRate)}`);
  }
  if (o.labelSmoothing !== undefined && !(typeof o.labelSmoothing === 'number' && o.labelSmoothing >= 0 && o.labelSmoothing < 1)) {
    throw new ConfigError(`fineTune: labelSmoothing must be in [0, 1), got ${String(o.labelSmoothing)}`);
  }
  if (nonFinite !== 'error' && nonFinite !== 'skip') throw new ConfigError(`fineTune: nonFinite must be 'error' or 'skip', got ${String(nonFinite)}`);
  const parallel = parallelOf();
  let mask = typeof o.mask === 'function' ? select(o.mask, selectionEnv({ model, params: o.params, data: o.train, seed, ...(parallel ? { parallel } : {}) })) : o.mask;
  assertMaskFor(model.spec, mask, 'fineTune');
  if (paths(mask.spec).every((p) => countOnes(mask.bits[p]!) === 0)) throw new MaskError('fineTune: the mask selects nothing to train');
  // --- Re-selection during training (reselect): checked before any state exists.
  const reselector = o.reselect && (o.reselect.selector ?? (typeof o.mask === 'function' ? o.mask : undefined));
  if (o.reselect) {
    positiveInteger('fineTune: reselect', { every: o.reselect.every });
    if (typeof reselector !== 'function') throw new ConfigError('fineTune: reselect needs a selector (reselect.selector) when mask is a fixed Mask');
  }
  // ---

  // A head-only selection trains on backbone features computed once per image
  // (before anything needing disposal exists).
  const cache = (o.cacheFeatures ?? true) && model.applyHead !== undefined && paths(mask.spec).every((p) => countOnes(mask.bits[p]!) === 0 || model.spec[p]!.role === 'head');
  const features = (set: DataSet<SampleShape, Labels>): DataSet<SampleShape, Labels> => ({
    images: featuresOf(model, o.params, set),
    labels: set.labels,
    n: set.n,
    shape: [model.features],
  });
  let trainSet = cache ? features(o.train) : (o.train as DataSet<SampleShape, Labels>);
  let valSet = o.val && (cache ? features(o.val) : (o.val as DataSet<SampleShape, Labels>));
  let net: Model<Shape, number, number> = cache ? headOnly(model) : model;

  const steps = Math.ceil(o.train.n / batchSize);
  // Leaves with nothing selected get no gradient at all; trainOnly keeps the rest's frozen entries exact.
  let trainable = trainableLeaves(mask);
  const adam = adamw(warmupCosine({ init: 0, peak: o.learningRate ?? 1e-3, warmupSteps: Math.min(steps, Math.floor((epochs * steps) / 10)), totalSteps: epochs * steps }));
  // Flattened (one AdamW over the small leaves: biases, selected entries) where that saves kernel calls:
  // joining k leaves costs about 3k + 3 (reshapes, concats, a split) and saves AdamW's calls for all but one,
  // 4 a leaf where Adam is one kernel (wasm, cpu: kernels.ts) and 15 elsewhere. (With sparse state the
  // optimizer sees a leaf's selected entries only.)
  const seen = (p: string) => ((o.sparseState ?? true) ? countOnes(mask.bits[p]!) : leafSize(model.spec[p]!));
  const small = trainable.filter((p) => seen(p) <= 4096).length;
  const inner = o.optimizer ?? (small >= (adamIsOneKernel() ? 8 : 2) ? flatten(adam, { maxLeafSize: 4096 }) : adam);
  let tx: GradientTransformation = trainOnly(inner, mask, { sparseState: o.sparseState ?? true });
  let frozen: Params = Object.fromEntries(paths(o.params).filter((p) => !trainable.includes(p)).map((p) => [p, o.params[p]!]));
  // --- Cost that follows the selection (kernels.ts): partly selected kernels'
  // gradients at their selected entries, where that is the cheaper.
  const sparse = new Map<string, SparseGradEntries>();
  /** Fills `sparse` for a mask: its partly selected leaves that the cost model makes sparse. */
  const sparseFor = (m: Mask, leaves: readonly string[]) => {
    if (!(o.sparseGradients ?? true)) return;
    const flat = maskToIndices(m);
    for (const p of leaves) {
      const whole = countOnes(m.bits[p]!) === leafSize(model.spec[p]!);
      const e = whole ? undefined : sparseGradEntries(model.spec[p]!.shape, flat[p]!);
      if (e) sparse.set(p, e);
    }
  };
  sparseFor(mask, trainable);
  // With sparse state, those leaves' gradients go to the optimizer as their
  // selected values alone (the probe's gradient, kernels.ts), and their
  // updates are written to those entries alone: no dense-shaped gradient,
  // update or add. Decided on the first step, for the leaves the forward
  // pass uses as matmul weights only (the probe carries no other use).
  const selectedValues = (o.sparseState ?? true) && !stockGradients() && sparse.size > 0;
  let probed: ReadonlySet<string> | undefined;
  // Probed kernels whose products stay on their frozen base (kernels.ts keepBasePacked), where that is the cheaper.
  const kept = new Map<string, BasePacked>();
  const releaseBases = () => {
    for (const k of kept.values()) k.dispose();
    kept.clear();
  };
  // ---
  // The trained leaves live in `current`; the caller's own tensors are never disposed.
  let current: Params = Object.fromEntries(trainable.map((p) => [p, o.params[p]!]));
  // The state holds trainOnly's device mask too, so disposing it frees that.
  let state: OptState = tf.tidy(() => tx.init(current, model.spec));
  let engine: GradientTrainer | undefined;
  const owned = new Set<tf.Tensor>();
  const full = () => ({ ...frozen, ...current });
  const report = typeof o.progressBar === 'function' ? o.progressBar : o.progressBar === false ? undefined : defaultProgress;
  const history: EpochRecord[] = [];
  // Higher is better: accuracy, or minus the loss for regression.
  let best: { score: number; epoch: number; params: Params; trained: Mask } | undefined;
  const r = rng(seed).fork('fineTune');
  const t0 = performance.now();
  // --- Re-selection during training (reselect): what it changes at a step boundary.
  // Every entry that trained so far (what may differ from the base), and the record.
  let trained = mask;
  const reselections: Reselection[] = [];
  const budget = paths(mask.spec).reduce((n, p) => n + countOnes(mask.bits[p]!), 0);
  // Whether the loop still trains the head on cached features (until a re-selection leaves the head).
  let cachedNow = cache;
  const headOnlyMask = (m: Mask) => paths(m.spec).every((p) => countOnes(m.bits[p]!) === 0 || model.spec[p]!.role === 'head');
  /** The epoch's batches: cached features while they serve, the images (in the same order) from a re-selection that leaves the head. */
  function* epochBatches(epoch: number) {
    const order = () => r.fork(`epoch${epoch}`);
    let it = batches(trainSet, batchSize, { rng: order() });
    let onFeatures = cachedNow;
    let done = 0;
    try {
      for (;;) {
        if (onFeatures && !cachedNow) {
          // Same fork, same shuffle: skip the batches this epoch has trained on.
          it.return(undefined);
          it = batches(trainSet, batchSize, { rng: order() });
          for (let i = 0; i < done; i++) it.next();
          onFeatures = false;
        }
        const b = it.next();
        if (b.done) return;
        done++;
        yield b.value;
      }
    } finally {
      it.return(undefined);
    }
  }
  /** Runs the selector on the current weights and moves training to its mask; `at` is the step it follows. */
  const reselectAfter = (at: number, epoch: number): Reselection & { mask: Mask } => {
    const n = reselections.length + 1;
    const all = full();
    // Host-side first (nothing to free if these throw): the new mask and its budget.
    const next = select(reselector!, selectionEnv({ model, params: all, data: o.train, seed: rng(seed).fork('reselect').fork(n).int(2 ** 31 - 1), ...(parallel ? { parallel } : {}) }));
    assertMaskFor(model.spec, next, `fineTune: re-selection ${n}`);
    const change = maskChange(mask, next);
    // Not enforced through sameAs: a selector's budget is its own (neuron's k per neuron, net's count), and most keep it by construction.
    if (change.selected !== budget) {
      throw new BudgetError(
        `fineTune: re-selection ${n} (after step ${at}) selected ${change.selected} entries where the first mask selected ${budget}; ` +
          're-selection keeps the budget fixed, so its selector must select a fixed count (neuron, layer or net with exactly, fraction or sameAs)',
      );
    }
    const nextTrainable = trainableLeaves(next);
    const nextCurrent = Object.fromEntries(nextTrainable.map((p) => [p, all[p]!]));
    // Consumes the old state; from here on `state` is the new one (freed in finally).
    ({ optimizer: tx, state } = carryState({ inner, state, from: mask, to: next, params: nextCurrent, spec: model.spec }));
    // Dropped leaves keep their trained tensors (still in `owned`): frozen at their trained values.
    frozen = Object.fromEntries(paths(all).filter((p) => !nextTrainable.includes(p)).map((p) => [p, all[p]!]));
    current = nextCurrent;
    trainable = nextTrainable;
    mask = next;
    trained = maskAlgebra(model.spec).join(trained, next);
    // The sparse-gradient entries (and their probes) of the new mask.
    releaseBases();
    for (const e of sparse.values()) e.dispose();
    sparse.clear();
    sparseFor(next, nextTrainable);
    // The probed leaves are decided again on the next step, for the new mask's leaves and probes.
    probed = undefined;
    // Cached features stay valid while only the head trains (the backbone never moves); not after.
    if (cachedNow && !headOnlyMask(next)) {
      cachedNow = false;
      trainSet = o.train as DataSet<SampleShape, Labels>;
      valSet = o.val as DataSet<SampleShape, Labels> | undefined;
      net = model;
    }
    // Workers hold the frozen leaves and the mask: they start again on the new ones.
    if (engine) {
      engine.dispose();
      engine = undefined;
      engine = parallel!.trainer({ model, params: all, mask: next, trainable: nextTrainable, train: o.train, loss: o.loss, labelSmoothing: o.labelSmoothing });
    }
    const record: Reselection = { step: at, epoch, ...change };
    reselections.push(record);
    return { ...record, mask: next };
  };
  // ---
  try {
    engine = parallel?.trainer({ model, params: o.params, mask, trainable, train: o.train, loss: o.loss, labelSmoothing: o.labelSmoothing });
    for (let epoch = 1; epoch <= epochs; epoch++) {
      let lossSum = 0;
      let step = 0;
      let skipped = 0;
      for (const { x, y, indices } of epochBatches(epoch)) {
        const out = tf.tidy(() => {
          const lossFn = (...ts: tf.Tensor[]) => {
            const params = { ...frozen, ...Object.fromEntries(trainable.map((p, i) => [p, ts[i]!])) };
            const loss = lossOf(net.apply(params, x as unknown as Tensor<readonly ['B', ...Shape]>).logits, y);
            if (loss.rank !== 0) throw new ShapeError(`fineTune: the loss must return a scalar, got shape ${showShape(loss.shape)}`);
            return loss as tf.Scalar;
          };
          let value: tf.Scalar;
          let g: Params;
          if (engine) ({ value, grads: g } = engine.step(current, indices));
          else {
            // Sparse-gradient leaves by index; on a mask's first step the candidates are checked on its own tape.
            const entries = new Map(trainable.flatMap((p, i) => (sparse.has(p) ? [[i, sparse.get(p)!] as const] : [])));
            const first = probed === undefined;
            const vg = gradsThroughProbes({
              weights: trainable.map((p) => current[p]!),
              entries,
              probed: probed && new Set(trainable.flatMap((p, i) => (probed!.has(p) ? [i] : []))),
              candidates: selectedValues ? [...entries.keys()] : [],
              loss: lossFn,
            });
            probed = new Set([...vg.probed].map((i) => trainable[i]!));
            if (first) {
              for (const p of probed) {
                const k = keepBasePacked(sparse.get(p)!, current[p]!, batchSize);
                if (k) kept.set(p, k);
              }
            }
            value = vg.value;
            g = Object.fromEntries(trainable.map((p, i) => [p, vg.grads[i]!]));
          }
          const [updates, nextState] = tx.update(g, state, current);
          const next = selectedValues ? applySelectedUpdates(current, updates, nextState as SparseState) : applyUpdates(current, updates);
          // With 'skip', as optax's apply_if_finite, a non-finite update (from a
          // finite loss) is caught too: Σ u·0 is 0 for finite updates and NaN
          // otherwise, so the one scalar the loop reads carries both checks.
          const checked = nonFinite === 'skip' ? tf.add(value, tf.addN(trainable.map((p) => tf.sum(tf.mul(updates[p]!, 0))))) : value;
          return { value: checked, next, nextState };
        });
        // The loop reads the loss anyway (for the history); checking it here adds no sync.
        // (With 'error', a non-finite update from a finite loss shows as a non-finite loss one step later.)
        const loss = out.value.dataSync()[0]!;
        out.value.dispose();
        step++;
        if (!Number.isFinite(loss)) {
          // Drop this step's parameters and state; what they share with the current ones stays.
          for (const p of trainable) if (out.next[p] !== current[p]) out.next[p]!.dispose();
          disposeReplaced(out.nextState, state);
          if (nonFinite === 'error') {
            throw new NonFiniteError(
              `fineTune: the loss is ${loss} at step ${step} of epoch ${epoch} (step ${(epoch - 1) * steps + step} overall); that update was not applied. ` +
                "Lower the learning rate, check the data, or pass nonFinite: 'skip' to skip such steps",
              epoch,
              step,
            );
          }
          skipped++;
        } else {
          for (const p of trainable) {
            if (owned.has(current[p]!)) {
              current[p]!.dispose();
              owned.delete(current[p]!);
            }
            owned.add(out.next[p]!);
          }
          current = out.next;
          for (const [p, k] of kept) k.update(current[p]!);
          disposeReplaced(state, out.nextState);
          state = out.nextState;
          lossSum += loss;
        }
        // --- Re-selection during training (reselect): at a step boundary, never after the last step.
        const overall = (epoch - 1) * steps + step;
        const reselection = o.reselect && overall % o.reselect.every === 0 && overall < epochs * steps ? reselectAfter(overall, epoch) : undefined;
        // ---
        const p = { epoch, step, steps, loss, ...(reselection ? { reselection } : {}) };
        o.onStep?.(p);
        report?.(p);
      }
      const regression = o.val?.labels instanceof Float32Array;
      const valAccuracy = valSet && !regression ? accuracyOn(net, full(), valSet as DataSet<SampleShape>, 256) : undefined;
      const valLoss = valSet && regression ? lossOn(net, full(), valSet, lossOf, 256) : undefined;
      // The mean over the steps that counted (NaN if every step of the epoch was skipped).
      const record: EpochRecord = {
        epoch,
        loss: lossSum / (steps - skipped),
        ...(valAccuracy === undefined ? {} : { valAccuracy }),
        ...(valLoss === undefined ? {} : { valLoss }),
        seconds: (performance.now() - t0) / 1000,
        ...(skipped ? { skipped } : {}),
      };
      history.push(record);
      o.onEpoch?.(record);
      const score = valAccuracy ?? (valLoss === undefined ? undefined : -valLoss);
      if (o.keepBest && score !== undefined && (!best || score > best.score)) {
        if (best) Object.values(best.params).forEach((t) => t.dispose());
        // Every leaf that moved: with re-selection, dropped leaves too.
        const all = full();
        best = { score, epoch, params: Object.fromEntries(paths(all).filter((p) => owned.has(all[p]!)).map((p) => [p, tf.clone(all[p]!)])), trained };
      }
    }
    // A finite loss can still come with a non-finite update; each step's
    // check sees it one step later, so the last step's is checked here: one
    // read per run, Σ x·0 being NaN exactly when some x is not finite.
    const returned = best ? Object.values(best.params) : Object.values(full()).filter((t) => owned.has(t));
    const sum = returned.length === 0 ? undefined : tf.tidy(() => tf.addN(returned.map((t) => tf.sum(tf.mul(t, 0)))));
    const finite = sum === undefined || Number.isFinite(sum.dataSync()[0]);
    sum?.dispose();
    if (!finite) {
      throw new NonFiniteError(
        `fineTune: the parameters of epoch ${best ? best.epoch : epochs} are not finite although every loss was (an update from a finite loss was not); ` +
          "lower the learning rate or clip the gradients (clipByGlobalNorm), or pass nonFinite: 'skip' to skip such updates",
        best ? best.epoch : epochs,
        steps,
      );
    }
  } catch (e) {
    // Whatever the loop made goes with the error (a callback's included), which propagates unchanged.
    releaseAbandonedTape();
    for (const t of owned) t.dispose();
    if (best) tf.dispose(Object.values(best.params));
    throw e;
  } finally {
    engine?.dispose();
    tf.dispose(state);
    releaseBases();
    for (const e of sparse.values()) e.dispose();
  }
  const how = { cachedFeatures: cache, sparseGradientLeaves: [...sparse.keys()], selectedValueLeaves: [...(probed ?? [])], reselections };
  if (best) {
    for (const t of owned) t.dispose();
    return { params: { ...o.params, ...best.params }, mask: best.trained, history, epoch: best.epoch, ...how };
  }
  return { params: full(), mask: trained, history, epoch: epochs, ...how };
}

/** The backbone's features of every sample of `set`, sample-major, in evaluation mode. */
function featuresOf(model: Model<Shape, number, number>, params: Params, set: DataSet<SampleShape, Labels>): Float32Array {
  const out = new Float32Array(set.n * model.features);
  let at = 0;
  for (const { x } of batches(set, 256)) {
    const f = tf.tidy(() => model.apply(params, x as unknown as Tensor<readonly ['B', ...Shape]>).features);
    out.set(f.dataSync(), at);
    at += f.size;
    f.dispose();
  }
  return out;
}

/** `model`'s head as a model of its own, on features `[B, F]`. */
function headOnly(model: Model<Shape, number, number>): Model<Shape, number, number> {
  const head = model.applyHead!;
  return {
    ...model,
    input: [model.features],
    apply: ((params: Params, f: tf.Tensor) => ({ features: f, logits: head(params, f) })) as unknown as Model<Shape, number, number>['apply'],
  };
}

/**
 * tfjs keeps copies of the tensors each op saves for its gradient on the
 * engine's tape and frees them only when the backward pass finishes; when
 * the forward function throws (a user's loss, a shape error), the tape is
 * abandoned with them still alive (about 100 tensors for a small ViT).
 * Freed here, on the error path, when no outer gradient is being taken.
 */
function releaseAbandonedTape(): void {
  const state = tf.engine().state as unknown as { gradientDepth: number; activeTape: { saved?: tf.Tensor[] }[] | null };
  if (state.gradientDepth !== 0 || !state.activeTape) return;
  for (const node of state.activeTape) for (const t of node.saved ?? []) if (!t.isDisposed) t.dispose();
  state.activeTape = null;
}

// Tensors trainStep made: the only parameters it may dispose when it replaces them.
const madeByTrainStep = new WeakSet<tf.Tensor>();

/**
 * One step of a training loop of your own: {@link trainStep}'s input.
 * @category Training
 */
export interface TrainStepInput<I extends Shape = Shape> {
  /** The model. */
  readonly model: Model<I, number, number>;
  /** The current parameters, every leaf. */
  readonly params: Params;
  /** The optimizer (e.g. `trainOnly(adamw(1e-3), mask)`). */
  readonly optimizer: GradientTransformation;
  /** Its state from the previous step, or `undefined` on the first (then `init(params, model.spec)` runs here). */
  readonly state: OptState | undefined;
  /** A batch of samples `[B, ...I]`. */
  readonly x: tf.Tensor;
  /** Its labels or regression targets. */
  readonly y: tf.Tensor;
  /** `(logits, labels) → scalar`; default cross-entropy. */
  readonly loss?: Loss;
  /** The leaves to differentiate (default every leaf); pass a mask to skip leaves it selects nothing in. */
  readonly trainable?: readonly string[] | Mask;
}

/**
 * What {@link trainStep} returns.
 * @category Training
 */
export interface TrainStepOutput {
  /** The new parameters: new tensors for the differentiated leaves, the same objects for the others. */
  readonly params: Params;
  /** The new optimizer state. */
  readonly state: OptState;
  /** This step's loss. */
  readonly loss: number;
}

/**
 * One leak-free step of your own training loop: gradients of `loss` for
 * the trainable leaves, the optimizer's update, and the new parameters,
 * with everything in between disposed. Ownership: the `state` passed in is
 * consumed (what the new state no longer holds is freed); of the `params`
 * passed in, only tensors an earlier `trainStep` made are freed when
 * replaced — your own (say, the pre-trained base) never are, so clone a
 * step's parameters if you keep them past the next step. When the step
 * throws (a non-finite loss is a {@link NonFiniteError}), nothing passed in
 * is freed and nothing made is left behind: `tf.memory().numTensors` is
 * what it was.
 * @example
 * ```ts
 * const tx = trainOnly(adamw(1e-3), mask);
 * let params = base;
 * let state: OptState | undefined;
 * for (const { x, y } of batches(task.train, 32)) {
 *   const out = trainStep({ model, params, optimizer: tx, state, x, y, trainable: mask });
 *   ({ params, state } = out);
 * }
 * tf.dispose(state); // the optimizer's state and its device mask
 * ```
 * @category Training
 */
export function trainStep<I extends Shape>(o: TrainStepInput<I>): TrainStepOutput {
  requireBackend('trainStep');
  const trainable = o.trainable === undefined ? paths(o.params) : Array.isArray(o.trainable) ? [...(o.trainable as readonly string[])] : trainableLeaves(o.trainable as Mask);
  for (const p of trainable) if (o.params[p] === undefined) throw new MaskError(`trainStep: trainable leaf '${p}' is not in the parameters`);
  const lossOf: Loss = o.loss ?? ((logits, labels) => crossEntropy(logits, labels as Tensor<readonly ['B']>));
  const current = Object.fromEntries(trainable.map((p) => [p, o.params[p]!]));
  const fresh = o.state === undefined;
  const state = fresh ? tf.tidy(() => o.optimizer.init(current, o.model.spec)) : o.state!;
  let out: { value: tf.Tensor; next: Params; nextState: OptState };
  try {
    out = tf.tidy(() => {
      const lossFn = (...ts: tf.Tensor[]) => {
        const params = { ...o.params, ...Object.fromEntries(trainable.map((p, i) => [p, ts[i]!])) };
        const loss = lossOf(o.model.apply(params, o.x as unknown as Tensor<readonly ['B', ...I]>).logits, o.y);
        if (loss.rank !== 0) throw new ShapeError(`trainStep: the loss must return a scalar, got shape ${showShape(loss.shape)}`);
        return loss as tf.Scalar;
      };
      const { value, grads } = tf.valueAndGrads(lossFn)(trainable.map((p) => current[p]!));
      const [updates, nextState] = o.optimizer.update(Object.fromEntries(trainable.map((p, i) => [p, grads[i]!])), state, current);
      return { value, next: applyUpdates(current, updates), nextState };
    });
  } catch (e) {
    releaseAbandonedTape();
    if (fresh) tf.dispose(state);
    throw e;
  }
  const loss = out.value.dataSync()[0]!;
  out.value.dispose();
  if (!Number.isFinite(loss)) {
    // Drop what this step made; the inputs stay as they were.
    for (const p of trainable) if (out.next[p] !== current[p]) out.next[p]!.dispose();
    disposeReplaced(out.nextState, state);
    if (fresh) tf.dispose(state);
    throw new NonFiniteError(`trainStep: the loss is ${loss}; the update was not applied (wrap the optimizer in applyIfFinite to skip such steps)`, 0, 0);
  }
  for (const p of trainable) {
    const old = current[p]!;
    const now = out.next[p]!;
    if (now !== old && madeByTrainStep.has(old)) old.dispose();
    madeByTrainStep.add(now);
  }
  disposeReplaced(state, out.nextState);
  return { params: { ...o.params, ...out.next }, state: out.nextState, loss };
}
