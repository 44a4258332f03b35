/**
 * Typed errors. Every message says what was expected, what was found and,
 * where it helps, what to do about it.
 *
 * @module
 */

/**
 * Base class of every error sparsetune throws on purpose.
 * @category Errors
 */
export class SparsetuneError extends Error {
  /** The class name, as `Error` subclasses report it. */
  override readonly name: string = 'SparsetuneError';
}

/**
 * A tensor's shape does not match what an op declared.
 * @category Errors
 */
export class ShapeError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'ShapeError';
}

/**
 * A parameter tree does not match its spec (missing or extra paths, wrong shapes, bad paths).
 * @category Errors
 */
export class SpecError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'SpecError';
}

/**
 * A selection budget is out of range (negative, a fraction outside [0, 1], more than exists).
 * @category Errors
 */
export class BudgetError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'BudgetError';
}

/**
 * A mask is used with a spec it was not built for, or is malformed.
 * @category Errors
 */
export class MaskError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'MaskError';
}

/**
 * A backend cannot be loaded or initialised.
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
 * @category Errors
 */
export class FormatError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'FormatError';
}
