/**
 * Typed errors. Every message says what was expected, what was found and,
 * where it helps, what to do about it.
 *
 * @module
 */

/**
 * Base class of every error sparsetune throws on purpose.
 * @example
 * ```ts
 * try { fineTune(options); } catch (e) { if (e instanceof SparsetuneError) console.error(e.name, e.message); else throw e; }
 * ```
 * @category Errors
 */
export class SparsetuneError extends Error {
  /** The class name, as `Error` subclasses report it. */
  override readonly name: string = 'SparsetuneError';
}

/**
 * A tensor's shape does not match what an op declared.
 * @example
 * ```ts
 * matmul(x, w); // x [32, 784], w [785, 10]: ShapeError naming matmul, the argument and both dims
 * ```
 * @category Errors
 */
export class ShapeError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'ShapeError';
}

/**
 * A parameter tree does not match its spec (missing or extra paths, wrong shapes, bad paths).
 * @example
 * ```ts
 * assertMatchesSpec(model.spec, params); // a missing leaf or a wrong shape is a SpecError
 * ```
 * @category Errors
 */
export class SpecError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'SpecError';
}

/**
 * A selection budget is out of range (negative, a fraction outside [0, 1], more than exists).
 * @example
 * ```ts
 * select(net(fraction(2), random()), env); // BudgetError: budget: fraction must be in [0, 1], got 2
 * ```
 * @category Errors
 */
export class BudgetError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'BudgetError';
}

/**
 * A mask is used with a spec it was not built for, or is malformed.
 * @example
 * ```ts
 * fineTune({ model, params, mask: otherModelsMask, train }); // MaskError: built for another spec
 * ```
 * @category Errors
 */
export class MaskError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'MaskError';
}

/**
 * A backend cannot be loaded or initialised.
 * @example
 * ```ts
 * await initBackend('tensorflow'); // BackendError when @tensorflow/tfjs-node is not installed
 * ```
 * @category Errors
 */
export class BackendError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'BackendError';
}

/**
 * A file is not in the expected format: wrong kind, truncated, corrupted, or
 * a header field malformed (the message names the field). Also a delta
 * that cannot become a valid file (`saveDelta`).
 * @example
 * ```ts
 * loadDelta(truncatedBytes); // FormatError naming what is wrong: truncated, a bad checksum, a field
 * ```
 * @category Errors
 */
export class FormatError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'FormatError';
}

/**
 * Data handed to training, evaluation or selection is unusable: empty, a
 * wrong image size, a non-finite pixel, a label out of range, or labels and
 * images that do not pair up. Raised before anything is computed.
 * @example
 * ```ts
 * fineTune({ model, params, mask, train: { images, labels: new Int32Array(0), n: 0, shape: [28, 28, 1] } }); // DataError: the set must hold at least one sample
 * ```
 * @category Errors
 */
export class DataError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'DataError';
}

/**
 * An option or hyper-parameter is out of range or not finite (a learning
 * rate of `NaN`, a negative weight decay, Adam's `b1` of 1, …). Raised when
 * the optimizer or loop is built, before any state exists.
 * @example
 * ```ts
 * adamw(Number.NaN); // ConfigError: learningRate must be a finite number > 0
 * ```
 * @category Errors
 */
export class ConfigError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'ConfigError';
}

/**
 * Training produced a non-finite loss. Nothing of that step was applied;
 * {@link NonFiniteError.epoch} and {@link NonFiniteError.step} say where.
 * @example
 * ```ts
 * try { fineTune(options); } catch (e) { if (e instanceof NonFiniteError) console.log(`diverged at epoch ${e.epoch}, step ${e.step}`); }
 * ```
 * @category Errors
 */
export class NonFiniteError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'NonFiniteError';
  /**
   * @param message - what happened and what to do.
   * @param epoch - 1-based epoch of the step.
   * @param step - 1-based step within that epoch.
   */
  constructor(
    message: string,
    /** 1-based epoch of the step. */
    readonly epoch: number,
    /** 1-based step within the epoch. */
    readonly step: number,
  ) {
    super(message);
  }
}
