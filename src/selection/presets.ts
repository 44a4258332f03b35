/**
 * The methods of the papers as short presets of the selector algebra.
 *
 * @module
 */
import * as E from 'fp-ts/lib/Either.js';
import { pipe } from 'fp-ts/lib/function.js';
import { leafSize, type Role } from '../core/index.js';
import { maskOf, countOnes, type Mask } from './mask.js';
import { feedforward, gradient, magnitude, random, sensitivity, type FeedforwardOptions, type SelectionEnv, type SelectionLoss } from './scores.js';
import {
  all,
  byRole,
  fraction,
  layer,
  net,
  neuron,
  only,
  sameAs,
  select,
  union,
  type Budget,
  type Selector,
} from './selector.js';
import type { Criterion } from './scores.js';

/**
 * How GPS treats each kind of leaf. Defaults follow the reference code:
 * kernels (dense, conv, patch embedding, fused q/k/v) top-k per neuron;
 * biases and the head trained whole; norms, position embedding and class
 * token frozen.
 * @category Presets
 */
export interface GpsOptions {
  /** Connections kept per neuron (default 1, as on most VTAB tasks). */
  readonly k?: number;
  /** The selection loss (default `'supcon'`; `'ce'` is the "Head+CE" ablation). */
  readonly loss?: SelectionLoss;
  /** Train every bias whole (default true). */
  readonly biases?: boolean;
  /** Train the head whole (default true). */
  readonly head?: boolean;
  /** Train norms whole (default false). */
  readonly norms?: boolean;
  /** Train position embeddings and class tokens whole (default false). */
  readonly tokens?: boolean;
  /** Replaces the kernel selection (the Tab. 6 ablations); default `neuron(k, gradient({ loss }))`. */
  readonly kernels?: Selector;
}

/** The leaves a preset trains whole, by role. */
function wholeRoles(o: { biases?: boolean; head?: boolean; norms?: boolean; tokens?: boolean }): Role[] {
  return [...(o.biases ?? true ? (['bias'] as const) : []), ...(o.head ?? true ? (['head'] as const) : []), ...(o.norms ? (['norm'] as const) : []), ...(o.tokens ? (['embedding', 'token'] as const) : [])];
}

/**
 * GPS: for every neuron of every kernel, the top-`k` input connections by
 * |Σ ∇W| of the head-free SupCon loss; biases and head trained whole.
 * @example
 * ```ts
 * const mask = select(gps({ k: 1 }), selectionEnv({ model, params, data: task.train }));
 * ```
 * @category Presets
 */
export function gps(options: GpsOptions = {}): Selector {
  const kernels = options.kernels ?? neuron(options.k ?? 1, gradient({ loss: options.loss ?? 'supcon' }));
  const whole = wholeRoles(options);
  return union(only(byRole('kernel'), kernels), ...(whole.length ? [only(byRole(...whole), all)] : []));
}

/**
 * Options of {@link fps}: GPS's treatment of each kind of leaf, and the
 * forward pass's batch size and sample count.
 * @category Presets
 */
export interface FpsOptions extends Omit<GpsOptions, 'loss' | 'kernels'>, FeedforwardOptions {}

/**
 * FPS: GPS's recipe with a forward-only criterion — for every neuron of
 * every kernel, the top-`k` input connections by |w| · mean |input| over
 * one forward pass of the training data ({@link feedforward}); biases and
 * head trained whole, norms and tokens frozen, as {@link gps}.
 * @example
 * ```ts
 * const mask = select(fps({ k: 1 }), selectionEnv({ model, params, data: task.train }));
 * ```
 * @category Presets
 */
export function fps(options: FpsOptions = {}): Selector {
  const { batchSize, samples, ...rest } = options;
  const criterion = feedforward({ ...(batchSize === undefined ? {} : { batchSize }), ...(samples === undefined ? {} : { samples }) });
  return gps({ ...rest, kernels: neuron(options.k ?? 1, criterion) });
}

/**
 * BitFit: every bias, plus the head.
 * @example
 * ```ts
 * select(bitfit(), env)
 * ```
 * @category Presets
 */
export const bitfit = (): Selector => only(byRole('bias', 'head'), all);

/**
 * Linear probing: the head alone.
 * @example
 * ```ts
 * select(linearProbe(), env)
 * ```
 * @category Presets
 */
export const linearProbe = (): Selector => only(byRole('head'), all);

/**
 * Full fine-tuning: everything.
 * @example
 * ```ts
 * select(full(), env)
 * ```
 * @category Presets
 */
export const full = (): Selector => all;

/**
 * The kernel part of a GPS mask (what the ablations must match in count).
 * @example
 * ```ts
 * countMask(kernelPart(gpsMask)).trainable // what the ablations match
 * ```
 * @category Presets
 */
export function kernelPart(mask: Mask): Mask {
  return maskOf(mask.spec, (leaf, p) => (leaf.role === 'kernel' ? mask.bits[p]! : false));
}

/**
 * The selection-level and criterion ablations of GPS's Tab. 6, each keeping
 * biases and head whole like GPS and choosing as many kernel entries as the
 * given GPS mask: `net` (one global top-k by gradient), `layer` (per-leaf
 * top-k, GPS's per-leaf counts), `neuronRandom` (k random per neuron),
 * `netRandom` (random entries overall), `magnitude` (top-k |W| per neuron),
 * `headCE` (per-neuron gradient of cross-entropy through the head).
 * @example
 * ```ts
 * const { net, layer, magnitude } = ablations(select(gps(), env));
 * const netMask = select(net, env);
 * ```
 * @category Presets
 */
export function ablations(gpsMask: Mask, options: { readonly k?: number; readonly loss?: SelectionLoss } = {}): Record<'net' | 'layer' | 'neuronRandom' | 'netRandom' | 'magnitude' | 'headCE', Selector> {
  const k = options.k ?? 1;
  const g = gradient({ loss: options.loss ?? 'supcon' });
  const target = kernelPart(gpsMask);
  const with_ = (kernels: Selector) => gps({ k, kernels });
  return {
    net: with_(net(sameAs(target), g)),
    layer: with_(layer(sameAs(target), g)),
    neuronRandom: with_(neuron(k, random())),
    netRandom: with_(net(sameAs(target), random())),
    magnitude: with_(neuron(k, magnitude())),
    headCE: with_(neuron(k, gradient({ loss: 'ce' }))),
  };
}

/**
 * Options of {@link spt}.
 * @category Presets
 */
export interface SptOptions {
  /** Entries to allocate among the eligible leaves (default `fraction(0.01)`). */
  readonly budget?: Budget;
  /** LoRA rank r (default 8). */
  readonly rank?: number;
  /** α of the LoRA threshold `r·(d_in + d_out)/α` (default 10). */
  readonly alpha?: number;
  /** β of the vector threshold `length/β` (default 5). */
  readonly beta?: number;
  /** The sensitivity criterion (default `sensitivity()`: Σ(∇W)² over 512 samples, cross-entropy). */
  readonly criterion?: Criterion;
}

/**
 * SPT's allocation: the unstructured mask to train, the kernels to switch
 * to LoRA, and the vectors tuned whole.
 * @category Presets
 */
export interface SptPlan {
  /** Entries trained directly: unstructured kernel entries, whole vectors, the head and class token. */
  readonly mask: Mask;
  /** Kernels whose share of the budget reached `r·(d_in + d_out)/α`: tune them with LoRA instead. */
  readonly lora: readonly string[];
  /** Vectors (norms, biases) whose share reached `length/β`: tuned whole. */
  readonly vectors: readonly string[];
}

/**
 * SPT as a selector (its mask) that can also report the whole allocation.
 * @category Presets
 */
export interface SptSelector extends Selector {
  /** Runs the allocation on `env`: the mask, the LoRA kernels and the whole vectors. */
  readonly plan: (env: SelectionEnv) => SptPlan;
}

/**
 * SPT: a global top of sensitivity over the eligible leaves (kernels of the
 * blocks, norms and biases; the patch embedding and position embedding
 * frozen; head and class token trained whole). A kernel holding at least
 * `r·(d_in + d_out)/α` of the budget becomes a LoRA kernel (and leaves the
 * unstructured mask); a vector holding at least `length/β` is tuned whole.
 * Our ViT fuses q, k and v into one kernel, which SPT's code treats as
 * three; here it is one matrix of `d × 3d`.
 * @example
 * ```ts
 * const plan = spt({ budget: fraction(0.01) }).plan(env);
 * console.log(plan.lora); // e.g. ['blocks.3.mlp.fc1.kernel', …]
 * ```
 * @category Presets
 */
export function spt(options: SptOptions = {}): SptSelector {
  const budget = options.budget ?? fraction(0.01);
  const r = options.rank ?? 8;
  const alpha = options.alpha ?? 10;
  const beta = options.beta ?? 5;
  const criterion = options.criterion ?? sensitivity();
  const eligible = (path: string, role: Role) => (role === 'kernel' || role === 'norm' || role === 'bias') && !path.startsWith('patch.');
  const allocate: Selector = (ctx) =>
    pipe(
      net(budget, criterion)({ ...ctx, eligible: maskOf(ctx.env.spec, (leaf, p) => (eligible(p, leaf.role) ? ctx.eligible.bits[p]! : false)) }),
      E.map((chosen) => {
        const lora: string[] = [];
        const vectors: string[] = [];
        const mask = maskOf(ctx.env.spec, (leaf, p) => {
          const picked = chosen.bits[p]!;
          const share = countOnes(picked);
          if (leaf.role === 'head' || leaf.role === 'token') return ctx.eligible.bits[p]!;
          if (leaf.shape.length === 2 && share > 0 && share >= (r * (leaf.shape[0]! + leaf.shape[1]!)) / alpha) {
            lora.push(p);
            return false;
          }
          if (leaf.shape.length === 1 && share > 0 && share >= leafSize(leaf) / beta) {
            vectors.push(p);
            return ctx.eligible.bits[p]!;
          }
          return picked;
        });
        plans.set(mask, { mask, lora, vectors });
        return mask;
      }),
    );
  const plans = new WeakMap<Mask, SptPlan>();
  const plan = (env: SelectionEnv): SptPlan => plans.get(select(allocate, env))!;
  return Object.assign(allocate, { plan });
}

