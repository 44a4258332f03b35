// Typed shapes: the compiler catches what it can, the run-time checks the rest.
import * as tf from '@tensorflow/tfjs-core';
import { biasAdd, checked, initBackend, matmul, randomNormal, relu, rng, ShapeError } from 'sparsetune';

await initBackend(); // wasm

// Plain tfjs tensors enter typed code through `checked`, which binds 'B'.
const images = checked(tf.zeros([32, 784]), ['B', 784]);
const r = rng(0);
const w1 = checked(randomNormal(r.fork('w1'), [784, 256], 0.05), [784, 256]);
const b1 = checked(tf.zeros([256]), [256]);
const w2 = checked(randomNormal(r.fork('w2'), [256, 10], 0.05), [256, 10]);

const hidden = relu(biasAdd(matmul(images, w1), b1)); // Tensor<['B', 256]>
const logits = matmul(hidden, w2); //                      Tensor<['B', 10]>
console.log('logits', logits.shape);

// matmul(images, w2) would not compile: inner dims 784 and 256 differ.
// Past the compiler (data from a file, say), the run-time check names the problem:
try {
  checked(tf.zeros([32, 785]), ['B', 784], 'images');
} catch (e) {
  if (!(e instanceof ShapeError)) throw e;
  console.log(e.message); // checked: argument images: expected [B, 784], got [32, 785]
}
