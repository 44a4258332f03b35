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

/**
 * From `init` to `end` linearly over `transitionSteps` steps starting at
 * `transitionBegin`, `init` before and `end` after, as optax's
 * `linear_schedule` (a non-positive `transitionSteps` gives `init` throughout).
 * @example
 * ```ts
 * linearSchedule(1e-3, 0, 100)(50); // 5e-4
 * ```
 * @category Schedules
 */
export function linearSchedule(init: number, end: number, transitionSteps: number, transitionBegin = 0): Schedule {
  finite('linearSchedule', { init, end, transitionSteps });
  checkSteps('linearSchedule', { transitionBegin });
  if (transitionSteps <= 0) return () => init;
  return (t) => {
    const c = Math.min(Math.max(t - transitionBegin, 0), transitionSteps);
    return (init - end) * (1 - c / transitionSteps) + end;
  };
}

/**
 * Options of {@link exponentialDecay}.
 * @category Schedules
 */
export interface ExponentialDecayOptions {
  /** Value until `transitionBegin`. */
  readonly init: number;
  /** Steps over which the value is multiplied by `decayRate` once. */
  readonly transitionSteps: number;
  /** Factor per `transitionSteps` steps. */
  readonly decayRate: number;
  /** Steps before the decay starts (default 0). */
  readonly transitionBegin?: number;
  /** Decay in whole multiples of `transitionSteps` (default false). */
  readonly staircase?: boolean;
  /** A floor (when decaying) or ceiling (when `decayRate` > 1). */
  readonly end?: number;
}

/**
 * `init · decayRate^((t − begin) / transitionSteps)` after `transitionBegin`,
 * `init` before, as optax's `exponential_decay` (with `staircase` the
 * exponent is floored; `end` bounds the value; a non-positive
 * `transitionSteps` or a zero `decayRate` gives `init` throughout, as optax).
 * @example
 * ```ts
 * exponentialDecay({ init: 1e-2, transitionSteps: 100, decayRate: 0.5 })(200); // 2.5e-3
 * ```
 * @category Schedules
 */
export function exponentialDecay(o: ExponentialDecayOptions): Schedule {
  finite('exponentialDecay', { init: o.init, transitionSteps: o.transitionSteps, decayRate: o.decayRate, ...(o.end === undefined ? {} : { end: o.end }) });
  checkSteps('exponentialDecay', { transitionBegin: o.transitionBegin ?? 0 });
  if (o.transitionSteps <= 0 || o.decayRate === 0) return () => o.init;
  const begin = o.transitionBegin ?? 0;
  return (t) => {
    const c = t - begin;
    if (c <= 0) return o.init;
    const p = o.staircase ? Math.floor(c / o.transitionSteps) : c / o.transitionSteps;
    const v = o.init * o.decayRate ** p;
    if (o.end === undefined) return v;
    return o.decayRate < 1 ? Math.max(v, o.end) : Math.min(v, o.end);
  };
}

/**
 * Schedules one after another, as optax's `join_schedules`: `schedules[i+1]`
 * takes over at `boundaries[i]` and sees the steps since that boundary.
 * @example
 * ```ts
 * joinSchedules([linearSchedule(0, 1e-3, 100), exponentialDecay({ init: 1e-3, transitionSteps: 1000, decayRate: 0.1 })], [100]);
 * ```
 * @category Schedules
 */
export function joinSchedules(schedules: readonly Schedule[], boundaries: readonly number[]): Schedule {
  if (schedules.length === 0 || boundaries.length !== schedules.length - 1) {
    throw new ConfigError(`joinSchedules: needs one boundary fewer than schedules, got ${schedules.length} schedules and ${boundaries.length} boundaries`);
  }
  checkSteps('joinSchedules', Object.fromEntries(boundaries.map((b, i) => [`boundaries[${i}]`, b])));
  return (t) => {
    let out = schedules[0]!(t);
    boundaries.forEach((b, i) => {
      if (t >= b) out = schedules[i + 1]!(t - b);
    });
    return out;
  };
}
