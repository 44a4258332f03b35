/**
 * Learning-rate schedules: functions from the step count (0 for the first
 * update) to a value.
 *
 * @module
 */
import { ConfigError } from '../core/index.js';

/** A ConfigError unless every named value is finite (a NaN here would become a NaN model, silently). */
function finite(what: string, values: Readonly<Record<string, number>>): void {
  for (const [k, v] of Object.entries(values)) if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${what}: ${k} must be a finite number, got ${String(v)}`);
}

/** A ConfigError unless every named value is a step count (an integer ≥ 0). */
function checkSteps(what: string, values: Readonly<Record<string, number>>): void {
  for (const [k, v] of Object.entries(values)) if (!Number.isSafeInteger(v) || v < 0) throw new ConfigError(`${what}: ${k} must be an integer ≥ 0, got ${String(v)}`);
}

/**
 * A schedule: step → value.
 * @category Optimizers
 */
export type Schedule = (step: number) => number;

/**
 * The same value at every step.
 * @example
 * ```ts
 * adam(constant(1e-3))
 * ```
 * @category Schedules
 */
export const constant = (value: number): Schedule => {
  finite('constant', { value });
  return () => value;
};

/**
 * From `init` to `peak` linearly over `steps` steps, then `peak`.
 * @example
 * ```ts
 * linearWarmup(0, 1e-3, 100)(50); // 5e-4
 * ```
 * @category Schedules
 */
export function linearWarmup(init: number, peak: number, steps: number): Schedule {
  finite('linearWarmup', { init, peak });
  checkSteps('linearWarmup', { steps });
  return (t) => (steps <= 0 || t >= steps ? peak : init + ((peak - init) * t) / steps);
}

/**
 * Cosine decay from `init` to `end` over `steps` steps, then `end`.
 * @example
 * ```ts
 * cosineDecay(1e-3, 1000)(1000); // 0
 * ```
 * @category Schedules
 */
export function cosineDecay(init: number, steps: number, end = 0): Schedule {
  finite('cosineDecay', { init, end });
  checkSteps('cosineDecay', { steps });
  return (t) => {
    if (steps <= 0 || t >= steps) return end;
    return end + ((init - end) * (1 + Math.cos((Math.PI * t) / steps))) / 2;
  };
}

/**
 * Options of {@link warmupCosine}.
 * @category Schedules
 */
export interface WarmupCosineOptions {
  /** Value at step 0. */
  readonly init: number;
  /** Value at the end of warm-up. */
  readonly peak: number;
  /** Warm-up steps. */
  readonly warmupSteps: number;
  /** Total steps, warm-up included (as optax's `decay_steps`). */
  readonly totalSteps: number;
  /** Value at the last step and after (default 0). */
  readonly end?: number;
}

/**
 * Linear warm-up then cosine decay, as optax's `warmup_cosine_decay_schedule`:
 * `init` at step 0, `peak` at `warmupSteps`, `end` at `totalSteps`.
 * @example
 * ```ts
 * const lr = warmupCosine({ init: 1e-7, peak: 1e-3, warmupSteps: 100, totalSteps: 1000 });
 * adamw(lr, { weightDecay: 1e-4 });
 * ```
 * @category Schedules
 */
export function warmupCosine(o: WarmupCosineOptions): Schedule {
  finite('warmupCosine', { init: o.init, peak: o.peak, end: o.end ?? 0 });
  checkSteps('warmupCosine', { warmupSteps: o.warmupSteps, totalSteps: o.totalSteps });
  if (o.warmupSteps > o.totalSteps) throw new ConfigError(`warmupCosine: warmupSteps (${o.warmupSteps}) must not exceed totalSteps (${o.totalSteps})`);
  const warm = linearWarmup(o.init, o.peak, o.warmupSteps);
  const decay = cosineDecay(o.peak, o.totalSteps - o.warmupSteps, o.end ?? 0);
  return (t) => (t < o.warmupSteps ? warm(t) : decay(t - o.warmupSteps));
}
