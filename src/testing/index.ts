/**
 * The testing kit: fast-check arbitraries for specs, parameters, scores,
 * masks and budgets, and law suites for mask algebras, selectors, criteria
 * and optimizers — what sparsetune's own property tests use. Import it from
 * `sparsetune/testing`; it needs `fast-check` (an optional peer dependency).
 *
 * Every suite returns named fast-check properties, usable from any test
 * runner; {@link checkLaws} runs them and reports a failing law by name with
 * the seed and path that replay it.
 *
 * @module
 */export * from './arbitraries.js';
export * from './laws.js';
export * from './references.js';
export * from './optimizer-laws.js';
