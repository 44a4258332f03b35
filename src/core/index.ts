/**
 * The core: typed-shape tensors and ops, parameter trees, seeded
 * randomness, backends and errors. Everything else builds on it; it knows
 * nothing of selection or optimisers.
 *
 * @module
 */
export * from './errors.js';
export { checked, type Dim, type Shape, type Tensor, type ShapeErrorMessage, type Product, type Divide, type ReshapeCheck, type DropAxis, type SetAxis, type Permute, type BroadcastsTo } from './shape.js';
export { add, sub, mul, div, matmul, batchMatmul, linear, biasAdd, reshape, transpose, concat, slice, split, sum, mean, max, sumAll, meanAll, oneHot } from './ops.js';
export { gradsThroughProbes, keepBasePacked, type BasePacked, type ProbedStep, usedOnlyAsWeights, SPARSE_ENTRY_COST, sparseGradEntries, useStockGradients, withSparseWeightGrads, type SparseGradEntries } from './kernels.js';
export * from './nn.js';
export * from './tree.js';
export * from './rng.js';
export { initBackend, requireBackend, type BackendName } from './backend.js';
