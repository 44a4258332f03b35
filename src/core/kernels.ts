/**
 * Kernels and their gradients, apart from the typed ops that call them (as
 * tfjs keeps op, kernel and gradient apart). Two reasons they exist:
 *
 * - matmul: tfjs's gradient of `matMul` uses transposed products, which
 *   leave wasm's XNNPACK fast path and run ~3× slower; ours is a kernel of
 *   its own whose registered gradient uses explicit transposes and plain
 *   products.
 * - convolutions: wasm registers no `Conv2DBackpropFilter` and no depthwise
 *   backprop kernels, so stock tfjs cannot train a conv net there; ours
 *   carry gradients made of forward ops only.
 *
 * `useStockGradients(true)` routes every typed op back through plain tfjs
 * ops and tfjs's own gradients, for side-by-side benchmarks and reference
 * checks.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';

const swapLast = (rank: number): number[] => {
  const perm = [...Array(rank).keys()];
  perm[rank - 1] = rank - 2;
  perm[rank - 2] = rank - 1;
  return perm;
};

let stock = false;

/**
 * Routes `matmul`, `batchMatmul`, `linear` and `conv2d` through plain tfjs
 * ops and tfjs's own gradients (`true`) or the custom gradients (`false`,
 * the default). For side-by-side benchmarks and reference checks only: the
 * stock path is slower on wasm and cannot train a convolution there.
 * @example
 * ```ts
 * useStockGradients(true); // reference run on tfjs's own gradients
 * useStockGradients(false); // back to the default
 * ```
 * @category Backends
 */
export function useStockGradients(on: boolean): void {
  stock = on;
}

/**
 * Whether {@link useStockGradients} is on.
 * @example
 * ```ts
 * if (stockGradients()) console.log('reference run');
 * ```
 * @category Backends
 */
export function stockGradients(): boolean {
  return stock;
}

/**
 * Our matmul is a kernel of its own, `SparsetuneMatMul`, that runs each
 * backend's plain `BatchMatMul` and carries a registered gradient of
 * explicit transposes and plain products. Registered (rather than a
 * `tf.customGrad`) because registered gradients are lazy: the tape skips
 * the gradient of an input that does not depend on what is differentiated
 * — the data entering a model's first layer — while a custom gradient
 * computes every input's gradient.
 */
const KERNEL = 'SparsetuneMatMul';
const registeredOn = new Set<string>();

function kernelMatMul(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const backend = tf.getBackend();
  if (!registeredOn.has(backend)) {
    const plain = tf.getKernel('BatchMatMul', backend);
    if (plain === undefined) throw new Error(`matmul: backend '${backend}' has no BatchMatMul kernel`);
    tf.registerKernel({
      kernelName: KERNEL,
      backendName: backend,
      kernelFunc: ({ inputs, backend: b }) => plain.kernelFunc({ inputs, backend: b, attrs: { transposeA: false, transposeB: false } }),
    });
    registeredOn.add(backend);
  }
  return tf.engine().runKernel(KERNEL, { a, b }, {}) as tf.Tensor;
}

tf.registerGradient({
  kernelName: KERNEL,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved) => {
    const [a, b] = saved as [tf.Tensor, tf.Tensor];
    const g = dy as tf.Tensor;
    return {
      a: () => kernelMatMul(g, tf.transpose(b, swapLast(b.rank))),
      b: () => kernelMatMul(tf.transpose(a, swapLast(a.rank)), g),
    };
  },
});

/** The matmul every typed op uses: ours unless {@link useStockGradients} is on. */
export const fastMatMul = (x: tf.Tensor, w: tf.Tensor): tf.Tensor => (stock ? tf.matMul(x, w) : kernelMatMul(x, w));

/**
 * Stride-1 conv2d whose gradients use only forward ops:
 * d input = 'valid' convolution of the fully padded output gradient with the
 * spatially flipped, in/out-swapped filter; d filter = 'valid' convolution of
 * the padded input with the output gradient, batch and channels swapped.
 */
export const fastConv2d = (pads: [number, number, number, number]) =>
  tf.customGrad((a, b, save) => {
    const x = a as tf.Tensor4D;
    const f = b as tf.Tensor4D;
    const [t, bo, l, r] = pads;
    const xp = t + bo + l + r > 0 ? tf.pad(x, [[0, 0], [t, bo], [l, r], [0, 0]]) : x;
    (save as tf.GradSaveFunc)([xp, f]);
    return {
      value: tf.conv2d(xp, f, 1, 'valid'),
      gradFunc: (dy, saved) => {
        const [xpad, sf] = saved as [tf.Tensor4D, tf.Tensor4D];
        const g = dy as tf.Tensor4D;
        const [kh, kw, cin] = sf.shape;
        const [batch, hp, wp] = xpad.shape;
        // d input: full correlation with the flipped filter, then crop the padding away.
        const flipped = tf.transpose(tf.reverse(sf, [0, 1]), [0, 1, 3, 2]);
        const gp = tf.pad(g, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]);
        const dxp = tf.conv2d(gp, flipped, 1, 'valid');
        const dx = tf.slice(dxp, [0, t, l, 0], [batch, hp - t - bo, wp - l - r, cin]);
        // d filter: df[i,j,c,o] = Σ_{b,h,w} xpad[b,h+i,w+j,c]·dy[b,h,w,o], itself a 'valid'
        // convolution once batch and channels swap places: input xpadᵀ [C, Hp, Wp, B],
        // filter dyᵀ [Ho, Wo, B, O], output [C, KH, KW, O].
        const dfc = tf.conv2d(tf.transpose(xpad, [3, 1, 2, 0]), tf.transpose(g, [1, 2, 0, 3]), 1, 'valid');
        const df = tf.transpose(dfc, [1, 2, 0, 3]);
        return [dx, df];
      },
    };
  });

/**
 * `dy [B, Ho, Wo, C]` with `s − 1` zero rows/columns between entries: the
 * gradient of a strided window seen by a stride-1 one. Plain reshape + pad.
 */
function dilateGrad(dy: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  if (sh === 1 && sw === 1) return dy;
  const [b, ho, wo, c] = dy.shape;
  const spread = tf.pad(tf.reshape(dy, [b, ho, 1, wo, 1, c]), [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
  return tf.slice(tf.reshape(spread, [b, ho * sh, wo * sw, c]) as tf.Tensor4D, [0, 0, 0, 0], [b, (ho - 1) * sh + 1, (wo - 1) * sw + 1, c]);
}

/**
 * The gradient w.r.t. a padded input `[B, Hp, Wp, ·]`, from the full
 * correlation `full` of the dilated output gradient with the flipped filter
 * (`[B, (Ho−1)s + K, …]`): rows the windows never reached get zero, then
 * the padding is cut away.
 */
function cropInputGrad(full: tf.Tensor4D, hp: number, wp: number, pads: [number, number, number, number]): tf.Tensor4D {
  const [b, fh, fw, c] = full.shape;
  const [t, bo, l, r] = pads;
  const whole = fh < hp || fw < wp ? tf.pad(full, [[0, 0], [0, hp - fh], [0, wp - fw], [0, 0]]) : full;
  return tf.slice(whole, [0, t, l, 0], [b, hp - t - bo, wp - l - r, c]);
}

function pad4(x: tf.Tensor4D, [t, bo, l, r]: [number, number, number, number]): tf.Tensor4D {
  return t + bo + l + r > 0 ? tf.pad(x, [[0, 0], [t, bo], [l, r], [0, 0]]) : x;
}

/**
 * Strided conv2d with a gradient of forward ops only (as {@link conv2d}'s):
 * d input = the output gradient dilated by the stride, fully padded and
 * convolved with the flipped, in/out-swapped filter; d filter = the padded
 * input convolved with the dilated output gradient, batch and channels swapped.
 */
export const fastStridedConv2d = (pads: [number, number, number, number], sh: number, sw: number) =>
  tf.customGrad((a, b, save) => {
    const xp = pad4(a as tf.Tensor4D, pads);
    const f = b as tf.Tensor4D;
    (save as tf.GradSaveFunc)([xp, f]);
    return {
      value: tf.conv2d(xp, f, [sh, sw], 'valid'),
      gradFunc: (dy, saved) => {
        const [xpad, sf] = saved as [tf.Tensor4D, tf.Tensor4D];
        const [kh, kw] = sf.shape;
        const [, hp, wp] = xpad.shape;
        const g = dilateGrad(dy as tf.Tensor4D, sh, sw);
        const flipped = tf.transpose(tf.reverse(sf, [0, 1]), [0, 1, 3, 2]);
        const full = tf.conv2d(tf.pad(g, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]), flipped, 1, 'valid');
        const dx = cropInputGrad(full, hp, wp, pads);
        // df[i,j,c,o] = Σ_{b,h,w} xpad[b, h·s+i, w·s+j, c]·dy[b,h,w,o]: a 'valid' convolution of
        // xpadᵀ [C, Hp, Wp, B] with the dilated dyᵀ [Hd, Wd, B, O]; windows past the last one
        // the forward pass used (padding it never reached) are cut off.
        const dfc = tf.conv2d(tf.transpose(xpad, [3, 1, 2, 0]), tf.transpose(g, [1, 2, 0, 3]), 1, 'valid');
        const df = tf.transpose(tf.slice(dfc, [0, 0, 0, 0], [dfc.shape[0], kh, kw, dfc.shape[3]]), [1, 2, 0, 3]);
        return [dx, df];
      },
    };
  });

/**
 * Depthwise conv2d with a gradient of forward ops only: wasm registers no
 * `DepthwiseConv2dNativeBackpropInput`/`…Filter`, so tfjs's own gradient
 * fails there. d input = a depthwise correlation of the dilated, fully
 * padded output gradient with the flipped filter (multiplier as channels),
 * summed over the multiplier; d filter = a depthwise convolution over a
 * batch-of-one whose channels are (batch, channel) pairs, with the dilated
 * output gradient as filter, summed over the batch.
 */
export const fastDepthwiseConv2d = (pads: [number, number, number, number], sh: number, sw: number) =>
  tf.customGrad((a, b, save) => {
    const xp = pad4(a as tf.Tensor4D, pads);
    const f = b as tf.Tensor4D;
    (save as tf.GradSaveFunc)([xp, f]);
    return {
      value: tf.depthwiseConv2d(xp, f, [sh, sw], 'valid'),
      gradFunc: (dy, saved) => {
        const [xpad, sf] = saved as [tf.Tensor4D, tf.Tensor4D];
        const [kh, kw, c, m] = sf.shape;
        const [batch, hp, wp] = xpad.shape;
        const g = dilateGrad(dy as tf.Tensor4D, sh, sw);
        const [, hd, wd] = g.shape;
        // d input: channel c·M+q of g correlates with the flipped f[:, :, c, q]; a depthwise
        // conv over C·M channels (multiplier 1), then the M outputs of each c summed.
        const flipped = tf.reshape(tf.reverse(sf, [0, 1]), [kh, kw, c * m, 1]);
        const gp = tf.pad(g, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]);
        const full = tf.depthwiseConv2d(gp, flipped as tf.Tensor4D, 1, 'valid');
        const [, fh, fw] = full.shape;
        const summed = tf.sum(tf.reshape(full, [batch, fh, fw, c, m]), 4) as tf.Tensor4D;
        const dx = cropInputGrad(summed, hp, wp, pads);
        // d filter: df[i,j,c,q] = Σ_{b,h,w} xpad[b, h·s+i, w·s+j, c]·dy[b,h,w,c·M+q]. With
        // (b, c) as the channel of one image [1, Hp, Wp, B·C] and the dilated dy as its
        // depthwise filter [Hd, Wd, B·C, M], the output [1, ·, ·, B·C·M] holds it per b.
        const xbc = tf.reshape(tf.transpose(xpad, [1, 2, 0, 3]), [1, hp, wp, batch * c]) as tf.Tensor4D;
        const gbc = tf.reshape(tf.transpose(tf.reshape(g, [batch, hd, wd, c, m]), [1, 2, 0, 3, 4]), [hd, wd, batch * c, m]) as tf.Tensor4D;
        const dfb = tf.depthwiseConv2d(xbc, gbc, 1, 'valid');
        const cropped = tf.slice(dfb, [0, 0, 0, 0], [1, kh, kw, batch * c * m]);
        const df = tf.sum(tf.reshape(cropped, [kh, kw, batch, c, m]), 2);
        return [dx, df];
      },
    };
  });

