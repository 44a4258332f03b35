/**
 * A TensorFlow.js / Keras `LayersModel` as a sparsetune {@link Model}: the
 * layer graph is read from the model's own JSON topology, every weight
 * becomes a leaf with a role and a neuron axis, and the forward pass is
 * rebuilt from sparsetune's ops, whose gradients run on every backend
 * (tfjs's own conv and depthwise gradients do not run on wasm).
 *
 * @module
 */
import * as tfl from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import {
  assertMatchesSpec,
  depthwiseConv2d,
  linear,
  paramSpec,
  rng,
  SparsetuneError,
  stridedConv2d,
  tree,
  type Dim,
  type LeafSpec,
  type ParamSpec,
  type Params,
  type Role,
  type Shape,
  type Tensor,
  type Tree, ConfigError } from '../core/index.js';
import { checkArgs } from '../core/shape.js';
import { dropout, glorot, ones, zeros, type Init } from '../models/layers.js';
import type { ApplyOptions, Model, Output } from '../models/model.js';

/**
 * A layer, a layer config or a graph the importer cannot rebuild. The
 * message names every offending layer by class and name.
 * @example
 * ```ts
 * try {
 *   importLayersModel(keras);
 * } catch (e) {
 *   if (e instanceof KerasImportError) console.log(e.message); // "… unsupported layers: LSTM 'lstm_1', …"
 * }
 * ```
 * @category Keras
 */
export class KerasImportError extends SparsetuneError {
  /** The class name, as `Error` subclasses report it. */
  override readonly name = 'KerasImportError';
}

/**
 * The Keras layer classes {@link importLayersModel} rebuilds.
 * @example
 * ```ts
 * SUPPORTED_LAYERS.includes('DepthwiseConv2D'); // true
 * ```
 * @category Keras
 */
export const SUPPORTED_LAYERS = [
  'InputLayer',
  'Dense',
  'Conv2D',
  'DepthwiseConv2D',
  'SeparableConv2D',
  'BatchNormalization',
  'LayerNormalization',
  'Activation',
  'ReLU',
  'Softmax',
  'Add',
  'Multiply',
  'Concatenate',
  'MaxPooling2D',
  'AveragePooling2D',
  'GlobalAveragePooling2D',
  'GlobalMaxPooling2D',
  'ZeroPadding2D',
  'Flatten',
  'Reshape',
  'Dropout',
  'Rescaling',
] as const;

/**
 * Options of {@link importLayersModel}.
 * @example
 * ```ts
 * // A fully convolutional Keras model with open spatial dims, and its own classifier as head.
 * importLayersModel(keras, { input: [96, 96, 3], head: 'classifier' });
 * ```
 * @category Keras
 */
export interface ImportOptions<I extends Shape = Shape> {
  /**
   * The name of the `Dense` layer that is the head (role `'head'`, leaves
   * `head.kernel` and `head.bias`): its input is the model's features, its
   * output before its activation the logits. Default: the last `Dense`
   * layer of the graph. Its input must be a vector per sample (`[B, F]`).
   */
  readonly head?: string;
  /**
   * The per-sample input shape, where the Keras input leaves dims open
   * (`[null, null, 3]`); when the Keras input fixes them, this must agree.
   */
  readonly input?: I;
}

/** How one Keras weight sits in the tree: a trainable leaf or a constant buffer. */
interface WeightPlan {
  /** The weight's name within its layer (`kernel`, `gamma`, `moving_mean`, …). */
  readonly weight: string;
  /** Its path in the params (leaves) or the buffers. */
  readonly path: string;
  readonly buffer: boolean;
  /** Leaf spec (leaves only). */
  readonly spec?: Omit<LeafSpec, 'dtype'>;
  readonly init?: Init;
  /** The tensor in sparsetune's layout, from the Keras one (and back). */
  readonly toLeaf: (t: tf.Tensor) => tf.Tensor;
  readonly toKeras: (t: tf.Tensor) => tf.Tensor;
}

/** Reads the layer's weights (leaves from params, buffers from the model) by weight name. */
type Get = (weight: string) => tf.Tensor | undefined;

interface Ctx {
  readonly training: boolean;
  readonly rng: ApplyOptions['rng'];
  readonly tap: ApplyOptions['tap'];
}

/** One Keras layer, compiled: its weights and its function of tensors. */
interface LayerPlan {
  readonly name: string;
  readonly className: string;
  readonly weights: readonly WeightPlan[];
  /** Runs the layer; `preActivation` stops a Dense before its activation (the head's logits). */
  readonly run: (get: Get, xs: readonly tf.Tensor[], ctx: Ctx, preActivation?: boolean) => tf.Tensor;
}

/**
 * What {@link importLayersModel} returns: the model and its pre-trained weights.
 * @example
 * ```ts
 * const { model, params }: Imported<readonly [224, 224, 3], 128, 5> = importLayersModel(keras);
 * ```
 * @category Keras
 */
export interface Imported<I extends Shape = Shape, F extends number = number, K extends number = number> {
  /** The graph as a sparsetune model. */
  readonly model: ImportedModel<I, F, K>;
  /**
   * The pre-trained weights in sparsetune's layout: fresh tensors, owned
   * by the caller. (`model.init(seed)` draws from-scratch weights instead.)
   */
  readonly params: Params;
}

/**
 * An imported Keras / TensorFlow.js model: a {@link Model} (its `apply`
 * gives the head's input as features and the head's output before its
 * activation as logits) plus the constants and the whole graph.
 * @example
 * ```ts
 * const { model, params } = importLayersModel(keras);
 * const { features, logits } = model.apply(params, x); // the head's input and its output before softmax
 * const probabilities = model.predict(params, x);       // the whole graph, as keras.predict(x)
 * const task = model.withClasses(4);                    // a 4-way head on the same backbone
 * ```
 * @category Keras
 */
export interface ImportedModel<I extends Shape = Shape, F extends number = number, K extends number = number> extends Model<I, F, K> {
  /**
   * Constants of the graph that are not parameters: BatchNormalization's
   * moving mean and variance. Never selected, never trained; kept by the
   * model until {@link ImportedModel.dispose}.
   */
  readonly buffers: Tree<tf.Tensor>;
  /** The Keras layer that is the head. */
  readonly head: string;
  /** Every layer with weights: its Keras name, class and leaf paths (the order of `model.layers`). */
  readonly layers: readonly { readonly name: string; readonly className: string; readonly paths: readonly string[] }[];
  /** The model's JSON topology (tfjs's `toJSON`), with the head's units set to {@link Model.classes}. */
  readonly topology: Readonly<Record<string, unknown>>;
  /**
   * The whole Keras graph on a batch `[B, ...I]`, every layer after the
   * head included (its activation, a softmax): what `LayersModel.predict`
   * computes, with gradients that run on every backend.
   */
  predict<B extends Dim>(params: Params, x: Tensor<readonly [B, ...I]>, options?: ApplyOptions): tf.Tensor;
  /**
   * `params` and the buffers in Keras's layout, by Keras layer name and
   * then weight name (`kernel`, `depthwise_kernel`, `moving_mean`, …):
   * what `layer.setWeights` takes. New tensors; the caller disposes them.
   */
  kerasWeights(params: Params): Map<string, Map<string, tf.Tensor>>;
  /** The same graph with a new `classes`-way head (the buffers are shared). */
  withClasses<K2 extends number>(classes: K2): ImportedModel<I, F, K2>;
  /** Frees the buffers; the model is unusable after. */
  dispose(): void;
}

type Json = Record<string, unknown>;
type LayerJson = { readonly name: string; readonly class_name: string; readonly config: Json; readonly inbound_nodes?: unknown };

const pair = (v: unknown, what: string, where: string): [number, number] => {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((d) => typeof d === 'number')) return [v[0] as number, v[1] as number];
  throw new KerasImportError(`${where}: ${what} ${JSON.stringify(v)} is not a number or a pair`);
};

/** An activation by its Keras / tfjs name, as tfjs-layers computes it. */
function activationFn(name: unknown, where: string): (x: tf.Tensor) => tf.Tensor {
  switch (name ?? 'linear') {
    case 'linear':
      return (x) => x;
    case 'relu':
      return (x) => tf.relu(x);
    case 'relu6':
      return (x) => tf.relu6(x);
    case 'sigmoid':
      return (x) => tf.sigmoid(x);
    case 'tanh':
      return (x) => tf.tanh(x);
    case 'softmax':
      return (x) => tf.softmax(x);
    case 'softplus':
      return (x) => tf.softplus(x);
    case 'softsign':
      return (x) => tf.div(x, tf.add(tf.abs(x), 1));
    case 'swish':
      return (x) => tf.mul(x, tf.sigmoid(x));
    case 'hard_sigmoid':
    case 'hardSigmoid':
      return (x) => tf.clipByValue(tf.add(tf.mul(x, 0.2), 0.5), 0, 1);
    case 'gelu':
      // tfjs-layers' 'gelu' is the exact one, 0.5·x·(1 + erf(x/√2)).
      return (x) => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.div(x, Math.SQRT2)), 1));
    default:
      throw new KerasImportError(`${where}: activation '${String(name)}' is not supported (linear, relu, relu6, sigmoid, tanh, softmax, softplus, softsign, swish, hard_sigmoid, gelu are)`);
  }
}

function checkChannelsLast(config: Json, where: string): void {
  const f = config.data_format;
  if (f !== undefined && f !== null && f !== 'channels_last') throw new KerasImportError(`${where}: data_format '${String(f)}' is not supported, only channels_last`);
}

function checkNoDilation(config: Json, where: string): void {
  const d = config.dilation_rate;
  if (d !== undefined && d !== null && pair(d, 'dilation_rate', where).some((v) => v !== 1)) {
    throw new KerasImportError(`${where}: dilation_rate ${JSON.stringify(d)} is not supported, only 1`);
  }
}

function paddingOf(config: Json, where: string): 'same' | 'valid' {
  const p = config.padding ?? 'valid';
  if (p !== 'same' && p !== 'valid') throw new KerasImportError(`${where}: padding '${String(p)}' is not supported (same, valid are)`);
  return p;
}

const identity = (t: tf.Tensor) => t;

/** A leaf taken as it is in Keras. */
function leafPlan(prefix: string, weight: string, shape: readonly number[], role: Role, neuronAxis: number, init: Init): WeightPlan {
  return { weight, path: `${prefix}.${weight}`, buffer: false, spec: { shape, role, neuronAxis }, init, toLeaf: identity, toKeras: identity };
}

/**
 * A depthwise kernel `[KH, KW, C, M]` as a leaf `[KH, KW, C·M]`: output
 * channel `c·M + q` is a neuron whose fan-in is its own `KH×KW` window, so
 * the neuron axis must be the merged `C·M` axis (a leaf has one).
 */
function depthwisePlan(prefix: string, weight: string, shape: readonly number[]): WeightPlan {
  const [kh, kw, c, m] = shape as [number, number, number, number];
  return {
    weight,
    path: `${prefix}.${weight}`,
    buffer: false,
    spec: { shape: [kh, kw, c * m], role: 'kernel', neuronAxis: 2 },
    init: glorot,
    toLeaf: (t) => tf.reshape(t, [kh, kw, c * m]),
    toKeras: (t) => tf.reshape(t, [kh, kw, c, m]),
  };
}

/**
 * A weight's name within its layer (`kernel`, `moving_mean`, …): the part
 * of its variable's name after the last '/', less the `_1` suffix tfjs adds
 * to a repeated variable name.
 */
export function weightName(w: tfl.LayerVariable): string {
  return (w.originalName ?? w.name).split('/').pop()!.replace(/_\d+$/, '');
}

/** The shapes of a layer's weights by weight name. */
function weightNames(layer: tfl.layers.Layer): Map<string, number[]> {
  return new Map(layer.weights.map((w) => [weightName(w), w.shape.map((d) => d ?? -1)]));
}

function need(shapes: Map<string, number[]>, weight: string, where: string): number[] {
  const s = shapes.get(weight);
  if (s === undefined) throw new KerasImportError(`${where}: has no weight '${weight}' (it has ${[...shapes.keys()].join(', ') || 'none'})`);
  return s;
}

const one = (xs: readonly tf.Tensor[]) => xs[0]!;
const got = (get: Get, w: string) => get(w)!;

/**
 * Compiles one layer: checks its config, lays out its weights, and returns
 * the function the forward pass calls. Every config the function would
 * compute differently from tfjs is refused here, before anything is built.
 */
function compileLayer(className: string, name: string, config: Json, prefix: string, shapes: Map<string, number[]>, isHead: boolean): LayerPlan {
  const where = `importLayersModel: ${className} '${name}'`;
  const plan = (weights: WeightPlan[], run: LayerPlan['run']): LayerPlan => ({ name, className, weights, run });
  const bias = (cout: number, role: Role = 'bias') => leafPlan(prefix, 'bias', [cout], role, 0, zeros);
  const useBias = config.use_bias !== false;
  switch (className) {
    case 'InputLayer':
      return plan([], (_g, xs) => one(xs));
    case 'Dense': {
      const act = activationFn(config.activation, where);
      const [din, dout] = need(shapes, 'kernel', where) as [number, number];
      const role: Role = isHead ? 'head' : 'kernel';
      const ws = [leafPlan(isHead ? 'head' : prefix, 'kernel', [din, dout], role, 1, glorot), ...(useBias ? [leafPlan(isHead ? 'head' : prefix, 'bias', [dout], isHead ? 'head' : 'bias', 0, zeros)] : [])];
      const kernelPath = `${isHead ? 'head' : prefix}.kernel`;
      return plan(ws, (get, xs, ctx, pre) => {
        ctx.tap?.({ path: kernelPath, input: one(xs) });
        const y = linear(one(xs) as Tensor<readonly [number, number]>, got(get, 'kernel') as Tensor<readonly [number, number]>);
        const z = useBias ? tf.add(y, got(get, 'bias')) : y;
        return pre ? z : act(z);
      });
    }
    case 'Conv2D': {
      checkChannelsLast(config, where);
      checkNoDilation(config, where);
      if (config.groups !== undefined && config.groups !== 1) throw new KerasImportError(`${where}: groups ${String(config.groups)} is not supported, only 1`);
      const act = activationFn(config.activation, where);
      const padding = paddingOf(config, where);
      const strides = pair(config.strides ?? 1, 'strides', where);
      const shape = need(shapes, 'kernel', where) as [number, number, number, number];
      const ws = [leafPlan(prefix, 'kernel', shape, 'kernel', 3, glorot), ...(useBias ? [bias(shape[3])] : [])];
      // A 1×1 stride-1 convolution is a dense product over the channels (MobileNet's
      // expand and project layers): the matmul path is the faster one.
      const pointwise = shape[0] === 1 && shape[1] === 1 && strides[0] === 1 && strides[1] === 1;
      return plan(ws, (get, xs, ctx) => {
        const x = one(xs) as Tensor<readonly [number, number, number, number]>;
        ctx.tap?.({ path: `${prefix}.kernel`, input: x, ...(pointwise ? {} : { window: { size: [shape[0], shape[1]], strides, padding, depthwise: false } }) });
        const k = got(get, 'kernel');
        const y = pointwise
          ? linear(x, tf.reshape(k, [shape[2], shape[3]]) as Tensor<readonly [number, number]>)
          : stridedConv2d(x, k as Tensor<readonly [number, number, number, number]>, { strides, padding });
        return act(useBias ? tf.add(y, got(get, 'bias')) : y);
      });
    }
    case 'DepthwiseConv2D': {
      checkChannelsLast(config, where);
      checkNoDilation(config, where);
      const act = activationFn(config.activation, where);
      const padding = paddingOf(config, where);
      const strides = pair(config.strides ?? 1, 'strides', where);
      const shape = need(shapes, 'depthwise_kernel', where) as [number, number, number, number];
      const dw = depthwisePlan(prefix, 'depthwise_kernel', shape);
      const ws = [dw, ...(useBias ? [bias(shape[2] * shape[3])] : [])];
      return plan(ws, (get, xs, ctx) => {
        ctx.tap?.({ path: dw.path, input: one(xs), window: { size: [shape[0], shape[1]], strides, padding, depthwise: true } });
        const y = depthwiseConv2d(one(xs) as Tensor<readonly [number, number, number, number]>, dw.toKeras(got(get, 'depthwise_kernel')) as Tensor<readonly [number, number, number, number]>, { strides, padding });
        return act(useBias ? tf.add(y, got(get, 'bias')) : y);
      });
    }
    case 'SeparableConv2D': {
      checkChannelsLast(config, where);
      checkNoDilation(config, where);
      const act = activationFn(config.activation, where);
      const padding = paddingOf(config, where);
      const strides = pair(config.strides ?? 1, 'strides', where);
      const dshape = need(shapes, 'depthwise_kernel', where) as [number, number, number, number];
      const pshape = need(shapes, 'pointwise_kernel', where) as [number, number, number, number];
      const dw = depthwisePlan(prefix, 'depthwise_kernel', dshape);
      const ws = [dw, leafPlan(prefix, 'pointwise_kernel', pshape, 'kernel', 3, glorot), ...(useBias ? [bias(pshape[3])] : [])];
      return plan(ws, (get, xs, ctx) => {
        ctx.tap?.({ path: dw.path, input: one(xs), window: { size: [dshape[0], dshape[1]], strides, padding, depthwise: true } });
        const d = depthwiseConv2d(one(xs) as Tensor<readonly [number, number, number, number]>, dw.toKeras(got(get, 'depthwise_kernel')) as Tensor<readonly [number, number, number, number]>, { strides, padding });
        // The pointwise 1×1 convolution as a dense product over the channels.
        ctx.tap?.({ path: `${prefix}.pointwise_kernel`, input: d });
        const y = linear(d, tf.reshape(got(get, 'pointwise_kernel'), [pshape[2], pshape[3]]) as Tensor<readonly [number, number]>);
        return act(useBias ? tf.add(y, got(get, 'bias')) : y);
      });
    }
    case 'BatchNormalization': {
      const eps = (config.epsilon as number | undefined) ?? 1e-3;
      const ws: WeightPlan[] = [];
      need(shapes, 'moving_mean', where);
      need(shapes, 'moving_variance', where);
      // gamma and beta are parameters (role 'norm', which GPS leaves frozen unless asked);
      // the moving statistics are constants: normalisation always uses them, in training
      // mode too, as fine-tuning a pre-trained net with frozen statistics does.
      if (shapes.has('gamma')) ws.push(leafPlan(prefix, 'gamma', need(shapes, 'gamma', where), 'norm', 0, ones));
      if (shapes.has('beta')) ws.push(leafPlan(prefix, 'beta', need(shapes, 'beta', where), 'norm', 0, zeros));
      for (const w of ['moving_mean', 'moving_variance']) ws.push({ weight: w, path: `${prefix}.${w}`, buffer: true, toLeaf: identity, toKeras: identity });
      const axis = config.axis;
      return plan(ws, (get, xs) => {
        const x = one(xs);
        const ax = Array.isArray(axis) ? axis : [axis ?? -1];
        if (ax.length !== 1 || ((ax[0] as number) + x.rank) % x.rank !== x.rank - 1) {
          throw new KerasImportError(`${where}: normalising axis ${JSON.stringify(axis)} of a rank-${x.rank} input is not supported, only the last axis`);
        }
        // (x − mean)·(gamma·rsqrt(var + ε)) + beta: the per-channel factor is formed on the
        // small vectors, and absent gamma/beta are skipped (tf.batchNorm's gradient on wasm
        // cannot save an absent scale).
        const inv = tf.rsqrt(tf.add(got(get, 'moving_variance'), eps));
        const gamma = get('gamma');
        const beta = get('beta');
        const y = tf.mul(tf.sub(x, got(get, 'moving_mean')), gamma === undefined ? inv : tf.mul(gamma, inv));
        return beta === undefined ? y : tf.add(y, beta);
      });
    }
    case 'LayerNormalization': {
      const eps = (config.epsilon as number | undefined) ?? 1e-3;
      const ws: WeightPlan[] = [];
      if (shapes.has('gamma')) ws.push(leafPlan(prefix, 'gamma', need(shapes, 'gamma', where), 'norm', 0, ones));
      if (shapes.has('beta')) ws.push(leafPlan(prefix, 'beta', need(shapes, 'beta', where), 'norm', 0, zeros));
      const axis = config.axis;
      return plan(ws, (get, xs) => {
        const x = one(xs);
        const ax = Array.isArray(axis) ? axis : [axis ?? -1];
        if (ax.length !== 1 || ((ax[0] as number) + x.rank) % x.rank !== x.rank - 1) {
          throw new KerasImportError(`${where}: normalising axes ${JSON.stringify(axis)} of a rank-${x.rank} input is not supported, only the last axis`);
        }
        // As tfjs-layers: moments over the axis, then (x − mean)·rsqrt(var + ε)·gamma + beta.
        const { mean, variance } = tf.moments(x, [x.rank - 1], true);
        const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
        const gamma = get('gamma');
        const beta = get('beta');
        const scaled = gamma === undefined ? normed : tf.mul(normed, gamma);
        return beta === undefined ? scaled : tf.add(scaled, beta);
      });
    }
    case 'Activation': {
      const act = activationFn(config.activation, where);
      return plan([], (_g, xs) => act(one(xs)));
    }
    case 'ReLU': {
      for (const k of ['negative_slope', 'threshold'] as const) {
        const v = config[k];
        if (v !== undefined && v !== null && v !== 0) throw new KerasImportError(`${where}: ${k} ${String(v)} is not supported, only 0`);
      }
      const max = config.max_value as number | null | undefined;
      return plan([], (_g, xs) => (max === null || max === undefined ? tf.relu(one(xs)) : tf.clipByValue(tf.relu(one(xs)), 0, max)));
    }
    case 'Softmax': {
      const axis = config.axis ?? -1;
      return plan([], (_g, xs) => {
        const x = one(xs);
        if (axis !== -1 && axis !== x.rank - 1) throw new KerasImportError(`${where}: softmax over axis ${String(axis)} is not supported, only the last`);
        return tf.softmax(x);
      });
    }
    case 'Add':
      return plan([], (_g, xs) => xs.slice(1).reduce((a, b) => tf.add(a, b), xs[0]!));
    case 'Multiply':
      return plan([], (_g, xs) => xs.slice(1).reduce((a, b) => tf.mul(a, b), xs[0]!));
    case 'Concatenate': {
      const axis = (config.axis as number | undefined) ?? -1;
      return plan([], (_g, xs) => tf.concat([...xs], axis < 0 ? axis + xs[0]!.rank : axis));
    }
    case 'MaxPooling2D':
    case 'AveragePooling2D': {
      checkChannelsLast(config, where);
      const size = pair(config.pool_size ?? 2, 'pool_size', where);
      const strides = config.strides === null || config.strides === undefined ? size : pair(config.strides, 'strides', where);
      const padding = paddingOf(config, where);
      const pool = className === 'MaxPooling2D' ? tf.maxPool : tf.avgPool;
      return plan([], (_g, xs) => pool(one(xs) as tf.Tensor4D, size, strides, padding));
    }
    case 'GlobalAveragePooling2D':
    case 'GlobalMaxPooling2D': {
      checkChannelsLast(config, where);
      if (config.keepdims === true) throw new KerasImportError(`${where}: keepdims is not supported`);
      const reduce = className === 'GlobalMaxPooling2D' ? tf.max : tf.mean;
      return plan([], (_g, xs) => reduce(one(xs), [1, 2]));
    }
    case 'ZeroPadding2D': {
      checkChannelsLast(config, where);
      // Keras accepts n, [rows, cols] or [[top, bottom], [left, right]].
      const p = (config.padding ?? 1) as number | unknown[];
      const [[t, b], [l, r]] = typeof p === 'number' ? [[p, p], [p, p]] : [pair(p[0], 'padding', where), pair(p[1], 'padding', where)];
      return plan([], (_g, xs) => tf.pad(one(xs), [[0, 0], [t!, b!], [l!, r!], [0, 0]]));
    }
    case 'Flatten':
      return plan([], (_g, xs) => tf.reshape(one(xs), [one(xs).shape[0]!, -1]));
    case 'Reshape': {
      const target = config.target_shape as number[];
      return plan([], (_g, xs) => tf.reshape(one(xs), [one(xs).shape[0]!, ...target]));
    }
    case 'Dropout': {
      if (config.noise_shape !== undefined && config.noise_shape !== null) throw new KerasImportError(`${where}: noise_shape is not supported`);
      const rate = (config.rate as number | undefined) ?? 0;
      return plan([], (_g, xs, ctx) => dropout(one(xs) as Tensor<readonly number[]>, rate, ctx.training, ctx.rng?.fork(prefix)));
    }
    case 'Rescaling': {
      const scale = config.scale as number;
      const offset = (config.offset as number | undefined) ?? 0;
      return plan([], (_g, xs) => tf.add(tf.mul(one(xs), scale), offset));
    }
    default:
      throw new KerasImportError(`${where}: unsupported layer`);
  }
}

/** A Keras name as one path segment (`[A-Za-z_][A-Za-z0-9_]*`). */
function segment(name: string): string {
  const s = name.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[A-Za-z_]/.test(s) ? s : `_${s}`;
}

/** `[[layer, node, tensor, kwargs], …]` of one inbound node, as keys of producing nodes. */
function inboundKeys(raw: unknown, where: string): string[] {
  if (!Array.isArray(raw)) throw new KerasImportError(`${where}: malformed inbound node ${JSON.stringify(raw)}`);
  // tfjs's toJSON writes each inbound node as a list of [layer, node, tensor, kwargs].
  return raw.map((e) => {
    if (!Array.isArray(e) || typeof e[0] !== 'string') throw new KerasImportError(`${where}: malformed inbound node ${JSON.stringify(raw)}`);
    if ((e[2] ?? 0) !== 0) throw new KerasImportError(`${where}: layers with several output tensors are not supported`);
    return `${e[0]}#${e[1] ?? 0}`;
  });
}

interface Graph {
  readonly layers: readonly LayerJson[];
  readonly nodes: readonly { key: string; layer: LayerJson; inputs: string[] }[];
  readonly input: string;
  readonly output: string;
}

/** The call graph of a Sequential or functional topology, in order. */
function graphOf(topology: Json): Graph {
  const cls = topology.class_name;
  const config = topology.config as Json;
  const raw = (Array.isArray(config) ? config : config.layers) as (Omit<LayerJson, 'name'> & { name?: string })[];
  // Sequential layers carry their name in their config only.
  const layers: LayerJson[] = raw.map((l) => ({ ...l, name: l.name ?? (l.config.name as string) }));
  if (cls === 'Sequential') {
    // A Sequential model's first call is on its input; tfjs omits the InputLayer.
    const nodes = layers.filter((l) => l.class_name !== 'InputLayer').map((l, i, all) => ({ key: `${l.name}#0`, layer: l, inputs: i === 0 ? ['input#0'] : [`${all[i - 1]!.name}#0`] }));
    if (nodes.length === 0) throw new KerasImportError('importLayersModel: the Sequential model has no layers');
    return { layers, nodes, input: 'input#0', output: nodes[nodes.length - 1]!.key };
  }
  if (cls !== 'Model' && cls !== 'Functional') throw new KerasImportError(`importLayersModel: a topology of class '${String(cls)}' is not a Sequential or functional model`);
  const ins = config.input_layers as [string, number, number][];
  const outs = config.output_layers as [string, number, number][];
  if (ins.length !== 1) throw new KerasImportError(`importLayersModel: the model has ${ins.length} inputs; one is supported`);
  if (outs.length !== 1) throw new KerasImportError(`importLayersModel: the model has ${outs.length} outputs; one is supported`);
  const nodes: Graph['nodes'][number][] = [];
  for (const l of layers) {
    const inbound = (l.inbound_nodes ?? []) as unknown[];
    if (l.class_name === 'InputLayer') continue;
    inbound.forEach((n, i) => nodes.push({ key: `${l.name}#${i}`, layer: l, inputs: inboundKeys(n, `${l.class_name} '${l.name}'`) }));
  }
  // tfjs writes layers in an order where each call's inputs come first; check rather than trust.
  const seen = new Set(layers.filter((l) => l.class_name === 'InputLayer').map((l) => `${l.name}#0`));
  for (const n of nodes) {
    const missing = n.inputs.find((k) => !seen.has(k));
    if (missing !== undefined) throw new KerasImportError(`importLayersModel: ${n.layer.class_name} '${n.layer.name}' reads '${missing}' before it is computed`);
    seen.add(n.key);
  }
  return { layers, nodes, input: `${ins[0]![0]}#${ins[0]![1]}`, output: `${outs[0]![0]}#${outs[0]![1]}` };
}

/**
 * Imports a tfjs `LayersModel` (built with `tf.sequential` / `tf.model`,
 * or loaded with `tf.loadLayersModel`) as a sparsetune {@link Model}.
 *
 * Leaves: `layers.<i>.<name>.<weight>`, `i` the layer's index in
 * `model.layers` (so tree order is depth order) and `name` its Keras name;
 * the head's are `head.kernel` and `head.bias`. Roles: Dense and conv
 * kernels `'kernel'` (neuron axis: the output unit / channel), biases
 * `'bias'`, BatchNormalization and LayerNormalization gamma and beta
 * `'norm'`, the head `'head'`. A depthwise kernel `[KH, KW, C, M]` is the
 * leaf `[KH, KW, C·M]` (neuron axis 2: each output channel's fan-in is its
 * own window). BatchNormalization's moving statistics are
 * {@link ImportedModel.buffers}, not parameters.
 *
 * The head is the last `Dense` layer unless {@link ImportOptions.head}
 * names another; `apply` returns its input as features and its output
 * before its activation as logits (what cross-entropy wants), and
 * {@link ImportedModel.predict} runs the whole graph. Every layer whose
 * class is not in {@link SUPPORTED_LAYERS} is listed in one
 * {@link KerasImportError} before anything is built.
 * @example
 * ```ts
 * const keras = tf.sequential({ layers: [tf.layers.dense({ inputShape: [8], units: 16, activation: 'relu' }), tf.layers.dense({ units: 3, activation: 'softmax' })] });
 * const { model, params } = importLayersModel<readonly [8], 16, 3>(keras);
 * const mask = select(bitfit(), selectionEnv({ spec: model.spec, params }));
 * ```
 * @category Keras
 */
export function importLayersModel<I extends Shape = Shape, F extends number = number, K extends number = number>(
  model: tfl.LayersModel,
  options: ImportOptions<I> = {},
): Imported<I, F, K> {
  const topology = model.toJSON(null, false) as unknown as Json;
  // tfjs 4.22 leaves SeparableConv2D's depth_multiplier out of its JSON, so a model rebuilt
  // from it would get multiplier 1; the weights say what it is.
  for (const l of layersOf(topology)) {
    if (l.class_name !== 'SeparableConv2D' || l.config.depth_multiplier !== undefined) continue;
    const dw = model.getLayer(l.name ?? (l.config.name as string)).weights.find((w) => weightName(w) === 'depthwise_kernel');
    if (dw !== undefined) l.config.depth_multiplier = dw.shape[3];
  }
  const graph = graphOf(topology);
  const unknown = graph.layers.filter((l) => !(SUPPORTED_LAYERS as readonly string[]).includes(l.class_name));
  if (unknown.length) {
    const list = unknown.map((l) => `${l.class_name} '${l.name}'`).join(', ');
    throw new KerasImportError(`importLayersModel: unsupported layers: ${list}. Supported: ${SUPPORTED_LAYERS.join(', ')}`);
  }
  const dense = graph.layers.filter((l) => l.class_name === 'Dense');
  const head = options.head ?? dense[dense.length - 1]?.name;
  if (head === undefined) throw new KerasImportError('importLayersModel: the model has no Dense layer to be the head; name one with options.head');
  const headJson = graph.layers.find((l) => l.name === head);
  if (headJson === undefined || headJson.class_name !== 'Dense') throw new KerasImportError(`importLayersModel: options.head '${head}' is not a Dense layer of the model`);
  const headNodes = graph.nodes.filter((n) => n.layer.name === head);
  if (headNodes.length !== 1) throw new KerasImportError(`importLayersModel: the head '${head}' is called ${headNodes.length} times; it must be called once`);
  const headLayer = model.getLayer(head);
  const headIn = headLayer.inputSpec?.[0]?.shape ?? (headLayer.input as tfl.SymbolicTensor).shape;
  if (headIn.length !== 2) throw new KerasImportError(`importLayersModel: the head '${head}' takes [${headIn.map((d) => d ?? 'B').join(', ')}]; the head must take one vector per sample. Flatten or pool before it, or name another head with options.head`);

  const kerasInput = model.inputs[0]!.shape.slice(1);
  const input = (options.input ?? kerasInput) as readonly (number | null)[];
  if (!input.every((d) => typeof d === 'number' && Number.isInteger(d) && d > 0)) {
    throw new KerasImportError(`importLayersModel: the input [${kerasInput.map((d) => d ?? 'null').join(', ')}] leaves dims open; give options.input`);
  }
  if (input.length !== kerasInput.length || kerasInput.some((d, i) => d !== null && d !== input[i])) {
    throw new KerasImportError(`importLayersModel: options.input [${input.join(', ')}] does not match the model's input [${kerasInput.map((d) => d ?? 'null').join(', ')}]`);
  }

  const order = model.layers.map((l) => l.name);
  const plans = new Map<string, LayerPlan>();
  for (const l of graph.layers) {
    const i = order.indexOf(l.name);
    const prefix = `layers.${i < 0 ? 0 : i}.${segment(l.name)}`;
    const shapes = l.class_name === 'InputLayer' ? new Map<string, number[]>() : weightNames(model.getLayer(l.name));
    plans.set(l.name, compileLayer(l.class_name, l.name, l.config, prefix, shapes, l.name === head));
  }

  // Values: every weight of every layer, matched to its plan by name.
  const leaves: [string, tf.Tensor][] = [];
  const buffers: [string, tf.Tensor][] = [];
  for (const [name, plan] of plans) {
    if (plan.weights.length === 0) continue;
    const layer = model.getLayer(name);
    const current = layer.getWeights();
    const values = new Map(layer.weights.map((w, k) => [weightName(w), current[k]!]));
    for (const w of plan.weights) {
      const v = values.get(w.weight)!;
      if (v.dtype !== 'float32') throw new KerasImportError(`importLayersModel: ${plan.className} '${name}': weight '${w.weight}' is ${v.dtype}; only float32 is supported`);
      // Copies, kept: the caller owns them, whatever happens to the LayersModel or an enclosing tidy.
      (w.buffer ? buffers : leaves).push([w.path, tf.keep(tf.tidy(() => w.toLeaf(tf.clone(v))))]);
    }
  }
  const built = build<I, F, K>({
    topology,
    graph,
    plans,
    head,
    input: input as unknown as I,
    buffers: tree(buffers),
    classes: (headJson.config as { units: number }).units as K,
  });
  return { model: built, params: tree(leaves) };
}

interface BuildArgs<I extends Shape, K extends number> {
  readonly topology: Json;
  readonly graph: Graph;
  readonly plans: ReadonlyMap<string, LayerPlan>;
  readonly head: string;
  readonly input: I;
  readonly buffers: Tree<tf.Tensor>;
  readonly classes: K;
}

/** The layers of a topology, by reference. */
function layersOf(topology: Json): (Omit<LayerJson, 'name'> & { name?: string })[] {
  const config = topology.config as Json;
  return (Array.isArray(config) ? config : config.layers) as (Omit<LayerJson, 'name'> & { name?: string })[];
}

/** The head layer's config with `units` set to `classes`, in a copy of the topology. */
function withHeadUnits(topology: Json, head: string, classes: number): Json {
  const copy = JSON.parse(JSON.stringify(topology)) as Json;
  for (const l of layersOf(copy)) if ((l.name ?? (l.config.name as string)) === head) (l.config as { units: number }).units = classes;
  return copy;
}

function build<I extends Shape, F extends number, K extends number>(a: BuildArgs<I, K>): ImportedModel<I, F, K> {
  const { graph, plans, head, input, buffers, classes } = a;
  // The head's plan for this class count: its leaves' shapes follow `classes`.
  const headPlan = plans.get(head)!;
  const features = headPlan.weights.find((w) => w.weight === 'kernel')!.spec!.shape[0]! as F;
  const resized = (w: WeightPlan): WeightPlan => ({ ...w, spec: { ...w.spec!, shape: w.weight === 'kernel' ? [features, classes] : [classes] } });
  const allWeights = [...plans.values()].flatMap((p) => (p.name === head ? p.weights.map(resized) : p.weights));
  const leafWeights = allWeights.filter((w) => !w.buffer);
  const spec: ParamSpec = paramSpec(leafWeights.map((w) => [w.path, w.spec!] as const));
  const headNode = graph.nodes.find((n) => n.layer.name === head)!;
  const pattern = ['B', ...input];

  /** Runs the graph, to the head's pre-activation output or to the end; returns every node's output. */
  const run = (params: Params, x: tf.Tensor, options: ApplyOptions, stopAtHead: boolean): Map<string, tf.Tensor> => {
    const ctx: Ctx = { training: options.training ?? false, rng: options.rng, tap: options.tap };
    const values = new Map<string, tf.Tensor>([[graph.input, x]]);
    for (const n of graph.nodes) {
      const plan = plans.get(n.layer.name as string)!;
      const byWeight = new Map(plan.weights.map((w) => [w.weight, w.buffer ? buffers[w.path]! : params[w.path]!]));
      const get: Get = (w) => byWeight.get(w);
      const isHead = n.key === headNode.key;
      values.set(n.key, plan.run(get, n.inputs.map((k) => values.get(k)!), ctx, isHead && stopAtHead));
      if (isHead && stopAtHead) break;
    }
    return values;
  };

  return {
    name: 'keras',
    config: { source: (a.topology.config as Json | undefined)?.name ?? 'keras', head, input: [...input], classes },
    input,
    features,
    classes,
    spec,
    buffers,
    head,
    layers: [...plans.values()].filter((p) => p.weights.length > 0).map((p) => ({ name: p.name, className: p.className, paths: p.weights.filter((w) => !w.buffer).map((w) => w.path) })),
    topology: withHeadUnits(a.topology, head, classes),
    init(seed) {
      const r = rng(seed).fork('keras');
      return tree(leafWeights.map((w) => [w.path, w.init!(r.fork(w.path), w.spec!.shape)] as const));
    },
    initHead(seed) {
      const r = rng(seed).fork('keras');
      return tree(leafWeights.filter((w) => w.spec!.role === 'head').map((w) => [w.path, w.init!(r.fork(w.path), w.spec!.shape)] as const));
    },
    apply<B extends Dim>(params: Params, x: Tensor<readonly [B, ...I]>, options: ApplyOptions = {}): Output<B, F, K> {
      checkArgs('keras.apply', [['x', x, pattern]]);
      assertMatchesSpec(spec, params, 'keras.apply: params');
      return tf.tidy(() => {
        const values = run(params, x, options, true);
        return { features: values.get(headNode.inputs[0]!)!, logits: values.get(headNode.key)! };
      }) as unknown as Output<B, F, K>;
    },
    predict<B extends Dim>(params: Params, x: Tensor<readonly [B, ...I]>, options: ApplyOptions = {}): tf.Tensor {
      checkArgs('keras.predict', [['x', x, pattern]]);
      assertMatchesSpec(spec, params, 'keras.predict: params');
      return tf.tidy(() => run(params, x, options, false).get(graph.output)!);
    },
    kerasWeights(params: Params) {
      assertMatchesSpec(spec, params, 'keras.kerasWeights: params');
      const out = new Map<string, Map<string, tf.Tensor>>();
      for (const p of plans.values()) {
        if (p.weights.length === 0) continue;
        out.set(p.name, new Map(p.weights.map((w) => [w.weight, tf.tidy(() => (w.buffer ? tf.clone(buffers[w.path]!) : w.toKeras(tf.clone(params[w.path]!))))])));
      }
      return out;
    },
    withClasses: <K2 extends number>(k: K2): ImportedModel<I, F, K2> => {
      if (!Number.isInteger(k) || k < 1) throw new ConfigError(`keras.withClasses: classes must be a positive integer, got ${k}`);
      return build<I, F, K2>({ ...a, classes: k });
    },
    dispose() {
      for (const t of Object.values(buffers)) t.dispose();
    },
  };
}

