/**
 * The `workers` option of `fineTune` and `selectionEnv`: a pool started
 * synchronously for one run and stopped after it. Starting threads needs
 * Node, so `sparsetune/node` registers the starter; this file (not part of
 * the public surface) only resolves the option and calls it.
 *
 * @module
 */
import { ConfigError, type Shape } from '../core/index.js';
import type { Loss, Model } from '../models/index.js';
import type { GradientEngine } from './parallel.js';

/**
 * What starts a pool synchronously for the `workers` option of `fineTune`
 * and `selectionEnv`: registered by `sparsetune/node` (worker threads), so
 * that the root entry stays free of Node built-ins.
 * @internal
 */
export interface PoolStarter {
  /** The machine's cores. */
  readonly cores: number;
  /** Starts `workers` workers and returns once they are up; errors name `caller`. */
  start(workers: number, caller: string): GradientEngine & { terminate(): Promise<void> };
  /** Whether a pool runs this model with this loss (`fineTune`'s loss option; undefined: cross-entropy). */
  runs(model: Model<Shape, number, number>, loss: Loss | undefined): boolean;
}

let starter: PoolStarter | undefined;

/**
 * Registers (or, with `undefined`, removes) the starter behind the `workers` option.
 * @internal
 */
export function setPoolStarter(s: PoolStarter | undefined): void {
  starter = s;
}

/**
 * Resolves a `workers` option to a worker count, or to 1 where no pool
 * should start: `'auto'` asks for the machine's cores (at most `useful`,
 * what the job can keep busy) where `worthIt` says a pool pays for its
 * start-up (and runs the job); a number asks for that many, and needs the
 * starter `sparsetune/node` registers.
 * @internal
 */
export function workersFor(caller: string, workers: number | 'auto' | undefined, worthIt: () => boolean, useful = Infinity): number {
  if (workers === undefined) return 1;
  // 'auto' starts no more threads than the job can use (a batch's shards, a pass's batches).
  if (workers === 'auto') return starter !== undefined && starter.cores > 1 && useful > 1 && worthIt() ? Math.min(starter.cores, useful) : 1;
  if (!Number.isSafeInteger(workers) || workers < 1) throw new ConfigError(`${caller}: workers must be a positive integer or 'auto', got ${String(workers)}`);
  if (workers > 1 && starter === undefined) {
    throw new ConfigError(`${caller}: workers: ${workers} starts worker threads, which needs \`import 'sparsetune/node'\` (Node); in a browser, pass parallel: await webWorkerPool({ … }) instead`);
  }
  return workers;
}

/**
 * Starts a pool of `workers` through the registered starter.
 * @internal
 */
export function startPool(workers: number, caller: string): GradientEngine & { terminate(): Promise<void> } {
  return starter!.start(workers, caller);
}

/**
 * Whether a pool could run this model and loss (false without a starter).
 * @internal
 */
export function poolRunsModel(model: Model<Shape, number, number>, loss: Loss | undefined): boolean {
  return starter !== undefined && starter.runs(model, loss);
}
