// Compile-time shape tests. `tsc --noEmit` (part of `npm test`) checks this
// file: each `@ts-expect-error` line must fail to type-check, or tsc reports
// the directive as unused and the run fails. Nothing here runs.
import {
  add,
  batchMatmul,
  biasAdd,
  conv2d,
  layerNorm,
  linear,
  matmul,
  reshape,
  splitHeads,
  sum,
  transpose,
  type Tensor,
  batches,
  dataSet,
  evaluate,
  fineTune,
  mlp,
  selectionEnv,
  twoViews,
  vit,
  rng,
  type DataSet,
  type ImageSet,
  type Params,
} from '../src/index.js';

type Equal<A, B> = (<G>() => G extends A ? 1 : 2) extends <G>() => G extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(): T | void {}

declare const x: Tensor<readonly ['B', 784]>;
declare const w: Tensor<readonly [784, 10]>;
declare const w785: Tensor<readonly [785, 10]>;
declare const b10: Tensor<readonly [10]>;
declare const b11: Tensor<readonly [11]>;
declare const images: Tensor<readonly ['B', 28, 28, 1]>;
declare const rgbFilter: Tensor<readonly [3, 3, 3, 8]>;
declare const greyFilter: Tensor<readonly [3, 3, 1, 8]>;
declare const tokens: Tensor<readonly ['B', 17, 64]>;
declare const gamma64: Tensor<readonly [64]>;
declare const gamma32: Tensor<readonly [32]>;
declare const qkv: Tensor<readonly [64, 192]>;
declare const scores: Tensor<readonly ['B', 4, 17, 16]>;
declare const keysT: Tensor<readonly ['B', 4, 16, 17]>;
declare const keysBad: Tensor<readonly ['B', 4, 15, 17]>;

// matmul: inner dims must agree; NoInfer stops K widening to 784 | 785.
const logits = matmul(x, w);
expectType<Equal<typeof logits, Tensor<['B', 10]>>>();
// @ts-expect-error inner dims 784 and 785 differ
matmul(x, w785);

// batched matmul: inner dims and leading dims must agree.
const att = batchMatmul(scores, keysT);
expectType<Equal<typeof att, Tensor<['B', 4, 17, 17]>>>();
// @ts-expect-error inner dims 16 and 15 differ
batchMatmul(scores, keysBad);
declare const otherHeads: Tensor<readonly ['B', 8, 16, 17]>;
// @ts-expect-error 4 heads against 8
batchMatmul(scores, otherHeads);

// dense over a sequence keeps the leading dims.
const proj = linear(tokens, qkv);
expectType<Equal<typeof proj, Tensor<['B', 17, 192]>>>();
// @ts-expect-error a [784, 10] kernel does not take width 64
linear(tokens, w);

// bias width.
biasAdd(logits, b10);
// @ts-expect-error bias of width 11 on 10 logits
biasAdd(logits, b11);

// layer norm parameters match the width.
layerNorm(tokens, gamma64, gamma64);
// @ts-expect-error a 32-wide scale on 64-wide tokens
layerNorm(tokens, gamma32, gamma64);

// conv input channels.
const feat = conv2d(images, greyFilter);
expectType<Equal<typeof feat, Tensor<['B', 28, 28, 8]>>>();
// @ts-expect-error a 3-channel filter on 1-channel images
conv2d(images, rgbFilter);

// reshape element counts with small literal dims (a shared leading 'B' cancels).
declare const square: Tensor<readonly [28, 28]>;
reshape(square, [784]);
reshape(images, ['B', 784], { B: 8 });
// @ts-expect-error 784 elements cannot become 785
reshape(square, [785]);
// @ts-expect-error 784 elements per sample cannot become 780
reshape(images, ['B', 780], { B: 8 });

// attention heads must divide the width.
const heads = splitHeads(tokens, 4);
expectType<Equal<typeof heads, Tensor<['B', 4, 17, 16]>>>();
// @ts-expect-error 5 heads do not divide width 64
splitHeads(tokens, 5);

// broadcasting only onto a's shape.
add(logits, b10);
add(logits, 2);
// @ts-expect-error 11 does not broadcast onto ['B', 10]
add(logits, b11);

// reductions drop the axis; transposes permute.
const pooled = sum(tokens, 1);
expectType<Equal<typeof pooled, Tensor<['B', 64]>>>();
const swapped = transpose(scores, [0, 1, 3, 2]);
expectType<Equal<typeof swapped, Tensor<['B', 4, 16, 17]>>>();

// Data sets carry their sample shape; data and model must agree.
declare const params: Params;
declare const grey: ImageSet;
declare const rgb16: DataSet<readonly [16, 16, 3]>;
declare const features20: DataSet<readonly [20]>;
declare const unknownShape: DataSet;
declare const targets: DataSet<readonly [20], Float32Array>;
const vit16 = vit({ input: [16, 16, 3], patch: 4, width: 16, depth: 1, heads: 2, classes: 3 });
const mlp20 = mlp({ input: [20], hidden: [8], classes: 2 });
fineTune({ model: vit16, params, mask: params as never, train: rgb16 });
fineTune({ model: mlp20, params, mask: params as never, train: features20, val: features20 });
// A shape known only at run time is checked then (ShapeError naming both shapes).
fineTune({ model: vit16, params, mask: params as never, train: unknownShape });
fineTune({ model: mlp20, params, mask: params as never, train: targets });
// @ts-expect-error 28×28×1 images do not fit a 16×16×3 model
fineTune({ model: vit16, params, mask: params as never, train: grey });
// @ts-expect-error feature vectors of 20 do not fit a 16×16×3 model
fineTune({ model: vit16, params, mask: params as never, train: rgb16, val: features20 });
evaluate(vit16, params, rgb16);
// @ts-expect-error images do not fit an MLP on 20 features
evaluate(mlp20, params, rgb16);
selectionEnv({ model: mlp20, params, data: features20 });
// @ts-expect-error grey images do not fit an MLP on 20 features
selectionEnv({ model: mlp20, params, data: grey });

// Batches and views keep the sample shape in their types.
for (const { x, y } of batches(rgb16, 4)) {
  expectType<Equal<typeof x, Tensor<['B', 16, 16, 3]>>>();
  expectType<Equal<typeof y, Tensor<['B']>>>();
}
for (const { y } of batches(targets, 4)) expectType<Equal<typeof y, Tensor<['B', number]>>>();
const views = twoViews(features20, rng(0));
expectType<Equal<typeof views, DataSet<readonly [20]>>>();

// dataSet infers the literal shape and, from a Float32Array, regression targets.
const built = dataSet({ images: new Float32Array(40), labels: [0, 1], shape: [20] });
expectType<Equal<typeof built, DataSet<readonly [20]>>>();
const regression = dataSet({ images: new Float32Array(40), labels: new Float32Array(2), shape: [20] });
expectType<Equal<typeof regression, DataSet<readonly [20], Float32Array>>>();
// @ts-expect-error built 20-feature data do not fit a 16×16×3 model
fineTune({ model: vit16, params, mask: params as never, train: built });
