// The MobileNetV2 LayersModel the nsfwjs package ships (Keras 2.2.4, uint8-quantised
// weights, 224×224×3 → 5 classes). nsfwjs bundles model.json and its one weight shard
// as CommonJS modules (the JSON object and the shard in base64); only these data files
// are used, not nsfwjs's JavaScript.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as tfl from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';

export async function loadNsfwMobileNetV2(): Promise<tfl.LayersModel> {
  const require = createRequire(import.meta.url);
  // nsfwjs's exports map hides dist/models; its main entry (dist/cjs/index.js) locates the package.
  const dir = join(dirname(require.resolve('nsfwjs')), '..', 'models', 'mobilenet_v2');
  const json = require(join(dir, 'model.min.js')) as tf.io.ModelJSON;
  const shard = require(join(dir, 'group1-shard1of1.min.js')) as string;
  const bytes = Buffer.from(shard, 'base64');
  return tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
    }),
  );
}
