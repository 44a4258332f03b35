/**
 * Reference definitions written as plain sorts, which the laws compare the
 * fast implementations with.
 * @module
 */
import { leafSize, paths, type LeafSpec, type ParamSpec, type Tree } from '../core/index.js';
import { fromScores, type Criterion, type Scores } from '../selection/index.js';

const rankKey = (v: number) => (Number.isNaN(v) ? -Infinity : v);
/** Reference ranking: score descending (NaN as −∞), then index ascending. */
function ranked(idx: number[], s: Float32Array): number[] {
  return [...idx].sort((a, b) => (rankKey(s[a]!) === rankKey(s[b]!) ? a - b : rankKey(s[b]!) > rankKey(s[a]!) ? 1 : -1));
}

/**
 * The granularities' reference definitions, written as sorts.
 * @category Laws
 */
export interface ReferenceSelection {
  /** For every neuron, the `k` best entries of its fan-in. */
  neuron(spec: ParamSpec, scores: Scores, k: number): Tree<Uint8Array>;
  /** The `count` best entries of all leaves concatenated in spec order. */
  net(spec: ParamSpec, scores: Scores, count: number): Tree<Uint8Array>;
  /** In every leaf, its best `round(f · size)` entries. */
  layer(spec: ParamSpec, scores: Scores, f: number): Tree<Uint8Array>;
}

const reference: ReferenceSelection = {
  neuron(spec: ParamSpec, scores: Scores, k: number): Tree<Uint8Array> {
    return Object.fromEntries(
      paths(spec).map((p) => {
        const leaf: LeafSpec = spec[p]!;
        const n = leafSize(leaf);
        const inner = leaf.shape.slice(leaf.neuronAxis + 1).reduce((a, b) => a * b, 1);
        const dim = leaf.shape[leaf.neuronAxis]!;
        const out = new Uint8Array(n);
        for (let j = 0; j < dim; j++) {
          const members = [...Array(n).keys()].filter((i) => Math.floor(i / inner) % dim === j);
          for (const i of ranked(members, scores[p]!).slice(0, k)) out[i] = 1;
        }
        return [p, out];
      }),
    );
  },
  net(spec: ParamSpec, scores: Scores, count: number): Tree<Uint8Array> {
    const ps = paths(spec);
    const flat = Float32Array.from(ps.flatMap((p) => Array.from(scores[p]!)));
    const chosen = new Set(ranked([...flat.keys()], flat).slice(0, count));
    let at = 0;
    return Object.fromEntries(ps.map((p) => [p, Uint8Array.from(scores[p]!, () => (chosen.has(at++) ? 1 : 0))]));
  },
  layer(spec: ParamSpec, scores: Scores, f: number): Tree<Uint8Array> {
    return Object.fromEntries(
      paths(spec).map((p) => {
        const s = scores[p]!;
        const chosen = new Set(ranked([...s.keys()], s).slice(0, Math.floor(f * s.length + 0.5)));
        return [p, Uint8Array.from(s, (_, i) => (chosen.has(i) ? 1 : 0))];
      }),
    );
  },
};

/**
 * The reference selection of the granularities for given scores — what
 * {@link criterionLaws} compares with, exposed for a user's own tests.
 * @example
 * ```ts
 * referenceSelection.neuron(spec, scores, 2)
 * ```
 * @category Laws
 */
export const referenceSelection: ReferenceSelection = reference;

/**
 * Scores of a fixed tree as a criterion, for tests (a fresh key per call).
 * @example
 * ```ts
 * neuron(1, scoresCriterion(scores))
 * ```
 * @category Laws
 */
export const scoresCriterion = (scores: Scores): Criterion => fromScores(scores);
