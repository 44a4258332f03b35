/**
 * Method configs: each fine-tuning method the library implements, as plain
 * serialisable data with the papers' (and the demo's) defaults, and the one
 * registry that names them.
 *
 * @module
 */
import { ConfigError } from '../core/index.js';
import type { FpsOptions, GpsOptions, SelectionLoss } from '../selection/index.js';

/**
 * GPS (Zhang et al., CVPR 2024): per neuron, the top-`k` input connections
 * by |Σ ∇W| of a head-free SupCon loss; biases and the head trained whole.
 * The fields are {@link GpsOptions}'.
 * @category Methods
 */
export interface GpsConfig extends Pick<GpsOptions, 'k' | 'loss' | 'biases' | 'head' | 'norms' | 'tokens'> {
  readonly method: 'gps';
  /** Peak learning rate (default 1e-2). */
  readonly learningRate?: number;
}

/**
 * FPS (arXiv 2510.27359): GPS's per-neuron top-`k` recipe on a forward-only
 * score, |w| · mean |input| over one forward pass (no gradient tape). The
 * fields are {@link FpsOptions}' (without the score's batching).
 * @category Methods
 */
export interface FpsConfig extends Pick<FpsOptions, 'k' | 'biases' | 'head'> {
  readonly method: 'fps';
  /** Peak learning rate (default 1e-2). */
  readonly learningRate?: number;
}

/**
 * One of GPS's Tab. 6 ablations (see {@link ablations}): as many kernel
 * entries as GPS with the same `k` and `loss` would choose, chosen another way.
 * @category Methods
 */
export type GpsAblation = 'net' | 'layer' | 'neuron-random' | 'net-random' | 'magnitude' | 'head-ce';

/**
 * A GPS ablation as a method.
 * @category Methods
 */
export interface GpsAblationConfig {
  readonly method: 'gps-ablation';
  /** Which ablation (required). */
  readonly ablation: GpsAblation;
  /** GPS's `k`, which fixes the count to match (default 1). */
  readonly k?: number;
  /** GPS's selection loss (default `'supcon'`). */
  readonly loss?: SelectionLoss;
  /** Peak learning rate (default 1e-2). */
  readonly learningRate?: number;
}

/**
 * SPT-LoRA (He et al., ICCV 2023): a global sensitivity budget; kernels
 * holding at least `rank·(d_in + d_out)/alpha` of it are tuned with LoRA of
 * that same rank, the rest entry by entry. The fields are {@link SptOptions}'.
 * @category Methods
 */
export interface SptLoraConfig {
  readonly method: 'spt-lora';
  /** Budget, as a fraction of the eligible entries (default 0.01). */
  readonly budget?: number;
  /** LoRA rank r, used both for the switch threshold and the adapters (default 8). */
  readonly rank?: number;
  /** α of the switch threshold `r·(d_in + d_out)/α` (default 10). */
  readonly alpha?: number;
  /** β of the vector threshold `length/β` (default 5). */
  readonly beta?: number;
  /** The adapters' scale numerator: their product is scaled by `loraAlpha/rank` (default: the rank, a scale of 1). */
  readonly loraAlpha?: number;
  /** Peak learning rate (default 1e-2). */
  readonly learningRate?: number;
}

/**
 * LoRA (Hu et al., 2022) on 2-D kernels, plus the head trained whole.
 * @category Methods
 */
export interface LoraMethodConfig {
  readonly method: 'lora';
  /** Rank r (default 8, PEFT's and the paper's). */
  readonly rank?: number;
  /** α; the adapters' product is scaled by α/r (default: the rank). */
  readonly alpha?: number;
  /** The adapted kernels (default: every 2-D kernel outside the head and the patch embedding). */
  readonly kernels?: readonly string[];
  /** Train the head whole too (default true: a new task's head starts random). */
  readonly head?: boolean;
  /** Peak learning rate (default 3e-3). */
  readonly learningRate?: number;
}

/**
 * BitFit: every bias and the head.
 * @category Methods
 */
export interface BitFitConfig {
  readonly method: 'bitfit';
  /** Peak learning rate (default 1e-2). */
  readonly learningRate?: number;
}

/**
 * Linear probing: the head alone.
 * @category Methods
 */
export interface LinearConfig {
  readonly method: 'linear';
  /** Peak learning rate (default 3e-2). */
  readonly learningRate?: number;
}

/**
 * Full fine-tuning: every parameter.
 * @category Methods
 */
export interface FullConfig {
  readonly method: 'full';
  /** Peak learning rate (default 1e-3). */
  readonly learningRate?: number;
}

/**
 * A fine-tuning method and its settings, as plain JSON: what {@link prepare}
 * takes and what a tuned file records.
 * @example
 * ```ts
 * const configs: MethodConfig[] = [{ method: 'gps', k: 1 }, { method: 'spt-lora', budget: 0.01, rank: 8 }, { method: 'linear' }];
 * ```
 * @category Methods
 */
export type MethodConfig = GpsConfig | FpsConfig | GpsAblationConfig | SptLoraConfig | LoraMethodConfig | BitFitConfig | LinearConfig | FullConfig;

/**
 * The name of a method.
 * @category Methods
 */
export type MethodName = MethodConfig['method'];

/**
 * A method config with every default filled in (for LoRA, the kernels are
 * filled in by {@link prepare}, which knows the model).
 * @category Methods
 */
export type ResolvedMethodConfig = MethodConfig extends infer C
  ? C extends LoraMethodConfig
    ? { readonly [K in Exclude<keyof C, 'kernels'>]-?: Exclude<C[K], undefined> } & Pick<C, 'kernels'>
    : C extends MethodConfig
      ? { readonly [K in keyof C]-?: Exclude<C[K], undefined> }
      : never
  : never;

/**
 * What the registry knows of a method.
 * @category Methods
 */
export interface MethodInfo {
  /** A name for tables and logs. */
  readonly label: string;
  /** One line on what it trains. */
  readonly summary: string;
  /** Its settings' defaults (the papers', or the demo's for the learning rate). */
  readonly defaults: Readonly<Record<string, unknown>>;
  /** A learning-rate grid around the default, as the accuracy benchmark searches it. */
  readonly learningRates: readonly number[];
}

/** A field's check: a description of what it must be, and the test. */
type Check = readonly [string, (v: unknown) => boolean];
const posInt: Check = ['a positive integer', (v) => Number.isSafeInteger(v) && (v as number) >= 1];
const positive: Check = ['a finite number > 0', (v) => typeof v === 'number' && Number.isFinite(v) && v > 0];
const bool: Check = ['true or false', (v) => typeof v === 'boolean'];
const fractionCheck: Check = ['a fraction in (0, 1]', (v) => typeof v === 'number' && v > 0 && v <= 1];
const lossCheck: Check = ["'supcon' or 'ce'", (v) => v === 'supcon' || v === 'ce'];
const GPS_ABLATIONS: readonly GpsAblation[] = ['net', 'layer', 'neuron-random', 'net-random', 'magnitude', 'head-ce'];
const ablationCheck: Check = [GPS_ABLATIONS.map((a) => `'${a}'`).join(', '), (v) => GPS_ABLATIONS.includes(v as GpsAblation)];
const kernelsCheck: Check = ['a list of distinct kernel paths', (v) => Array.isArray(v) && v.every((x) => typeof x === 'string') && new Set(v).size === v.length];

/** Per method: its fields' checks and defaults (a default of `undefined`: filled in later, or required). */
const FIELDS: { readonly [M in MethodName]: Readonly<Record<string, readonly [Check, unknown]>> } = {
  gps: { k: [posInt, 1], loss: [lossCheck, 'supcon'], biases: [bool, true], head: [bool, true], norms: [bool, false], tokens: [bool, false], learningRate: [positive, 1e-2] },
  fps: { k: [posInt, 1], biases: [bool, true], head: [bool, true], learningRate: [positive, 1e-2] },
  'gps-ablation': { ablation: [ablationCheck, undefined], k: [posInt, 1], loss: [lossCheck, 'supcon'], learningRate: [positive, 1e-2] },
  'spt-lora': { budget: [fractionCheck, 0.01], rank: [posInt, 8], alpha: [positive, 10], beta: [positive, 5], loraAlpha: [positive, undefined], learningRate: [positive, 1e-2] },
  lora: { rank: [posInt, 8], alpha: [positive, undefined], kernels: [kernelsCheck, undefined], head: [bool, true], learningRate: [positive, 3e-3] },
  bitfit: { learningRate: [positive, 1e-2] },
  linear: { learningRate: [positive, 3e-2] },
  full: { learningRate: [positive, 1e-3] },
};

// Half-decade steps around each default, as bench/accuracy.ts searches them;
// LoRA, whose adapters start at zero, wants higher rates than full fine-tuning.
const SELECTION_GRID = [3e-3, 1e-2, 3e-2, 1e-1];
const defaultsOf = (m: MethodName) => Object.fromEntries(Object.entries(FIELDS[m]).filter(([, [, d]]) => d !== undefined).map(([k, [, d]]) => [k, d]));

/**
 * Every method the library implements, by name: a label, a one-line
 * summary, its defaults and a learning-rate grid. The demo, the benchmark
 * and the examples take their methods from here.
 * @example
 * ```ts
 * for (const [name, info] of Object.entries(METHODS)) console.log(name, info.label, info.defaults);
 * ```
 * @category Methods
 */
export const METHODS: { readonly [M in MethodName]: MethodInfo } = {
  gps: { label: 'GPS', summary: 'top-k input connections per neuron by gradient; biases and head whole', defaults: defaultsOf('gps'), learningRates: SELECTION_GRID },
  fps: { label: 'FPS', summary: 'top-k input connections per neuron by |w|·|input| from a forward pass; biases and head whole', defaults: defaultsOf('fps'), learningRates: SELECTION_GRID },
  'gps-ablation': { label: 'GPS ablation', summary: "GPS's kernel count, chosen another way (Tab. 6)", defaults: defaultsOf('gps-ablation'), learningRates: SELECTION_GRID },
  'spt-lora': { label: 'SPT-LoRA', summary: 'a global sensitivity budget; dense-enough kernels tuned with LoRA', defaults: defaultsOf('spt-lora'), learningRates: SELECTION_GRID },
  lora: { label: 'LoRA', summary: 'low-rank adapters on the kernels, plus the head', defaults: defaultsOf('lora'), learningRates: [3e-4, 1e-3, 3e-3, 1e-2, 3e-2] },
  bitfit: { label: 'BitFit', summary: 'every bias, plus the head', defaults: defaultsOf('bitfit'), learningRates: SELECTION_GRID },
  linear: { label: 'Linear probing', summary: 'the head alone', defaults: defaultsOf('linear'), learningRates: [1e-2, 3e-2, 1e-1, 3e-1] },
  full: { label: 'Full fine-tuning', summary: 'every parameter', defaults: defaultsOf('full'), learningRates: [3e-4, 1e-3, 3e-3, 1e-2] },
};

/**
 * Checks a method config (plain data from anywhere: code, JSON, a file)
 * and fills in its defaults. An unknown method, an unknown field (a typo
 * such as `rnak`) or a bad value is a {@link ConfigError} naming it. LoRA's
 * `alpha` defaults to its rank, SPT-LoRA's `loraAlpha` to its rank.
 * @example
 * ```ts
 * resolveMethod({ method: 'spt-lora', rank: 4 });
 * // { method: 'spt-lora', budget: 0.01, rank: 4, alpha: 10, beta: 5, loraAlpha: 4, learningRate: 0.01 }
 * ```
 * @category Methods
 */
export function resolveMethod(config: unknown): ResolvedMethodConfig {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new ConfigError(`method config: expected an object such as { method: 'gps' }, got ${show(config)}`);
  const c = config as Record<string, unknown>;
  const name = c['method'];
  if (typeof name !== 'string' || !Object.hasOwn(FIELDS, name)) throw new ConfigError(`method config: unknown method ${show(name)}; known: ${Object.keys(FIELDS).join(', ')}`);
  const fields = FIELDS[name as MethodName];
  const out: Record<string, unknown> = { method: name };
  for (const key of Object.keys(c)) {
    if (key !== 'method' && !Object.hasOwn(fields, key)) throw new ConfigError(`method config '${name}': unknown field '${key}'; its fields: ${Object.keys(fields).join(', ') || 'none'}`);
  }
  for (const [key, [[expected, ok], fallback]] of Object.entries(fields)) {
    const v = c[key];
    if (v === undefined) {
      if (fallback !== undefined) out[key] = fallback;
      continue;
    }
    if (!ok(v)) throw new ConfigError(`method config '${name}': '${key}' must be ${expected}, got ${show(v)}`);
    out[key] = Array.isArray(v) ? [...(v as unknown[])] : v;
  }
  if (name === 'gps-ablation' && out['ablation'] === undefined) throw new ConfigError(`method config 'gps-ablation': 'ablation' is required: one of ${ablationCheck[0]}`);
  if (name === 'lora') out['alpha'] ??= out['rank'];
  if (name === 'spt-lora') out['loraAlpha'] ??= out['rank'];
  return out as ResolvedMethodConfig;
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}
