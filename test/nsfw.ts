// The MobileNetV2 LayersModel the nsfwjs package ships (Keras 2.2.4, uint8-quantised
// weights, 224×224×3 → 5 classes). nsfwjs bundles model.json and its one weight shard
// as CommonJS modules (the JSON object and the shard in base64); only these data files
// are used, not nsfwjs's JavaScript.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as tfl from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';

/**
 * Loads nsfwjs's MobileNetV2 with stock tfjs. With `side`, the same weights in
 * the same graph built for `side × side` inputs, as Keras builds MobileNetV2
 * for another `input_shape`: the input layer resized, and the final 7×7
 * average pool — a global average at 224 — sized to the `side / 32` map that
 * `side` leaves, so it stays a global average (Flatten needs the pooled
 * shape fixed, so the input dims cannot stay open). The ZeroPadding2D layers
 * pad (0, 1), right while every strided map is even: `side` must be a
 * multiple of 32.
 */
export async function loadNsfwMobileNetV2(side?: number): Promise<tfl.LayersModel> {
  if (side !== undefined && !(Number.isInteger(side) && side >= 32 && side % 32 === 0)) throw new RangeError(`loadNsfwMobileNetV2: side must be a multiple of 32, got ${side}`);
  const require = createRequire(import.meta.url);
  // nsfwjs's exports map hides dist/models; its main entry (dist/cjs/index.js) locates the package.
  const dir = join(dirname(require.resolve('nsfwjs')), '..', 'models', 'mobilenet_v2');
  // The files are UMD bundles inside a "type": "module" package: plain Node loads them as ES
  // modules, where `module` is undefined and the value lands on a global. Evaluating the text
  // with a CommonJS \`module\` of our own gives the value under any loader (tsx, plain Node, a bundle).
  const umd = <T>(file: string): T => {
    const module = { exports: {} as unknown };
    new Function('module', 'exports', readFileSync(join(dir, file), 'utf8'))(module, module.exports);
    return module.exports as T;
  };
  const json = umd<tf.io.ModelJSON>('model.min.js');
  const shard = umd<string>('group1-shard1of1.min.js');
  const bytes = Buffer.from(shard, 'base64');
  // A copy: require's cache holds the original.
  const topology = JSON.parse(JSON.stringify(json.modelTopology)) as { model_config: { config: { layers: { class_name: string; config: Record<string, unknown> }[] } } };
  if (side !== undefined) {
    for (const l of topology.model_config.config.layers) {
      if (l.class_name === 'InputLayer') l.config['batch_input_shape'] = [null, side, side, 3];
      if (l.class_name === 'AveragePooling2D') l.config['pool_size'] = l.config['strides'] = [side / 32, side / 32];
    }
  }
  return tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: topology,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
    }),
  );
}
