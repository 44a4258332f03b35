/**
 * `sparsetune/node`: what needs Node's file system or terminal. The shipped
 * backbones read from the package's `checkpoints/`, checkpoints, deltas and
 * tuned files read from and written to files, TensorFlow.js models in a directory
 * (`model.json` + weight shards), image folders (`loadImageFolder`), the datasets the `mnist` and
 * `fashion-mnist` packages ship and the mini-VTAB-1k tasks drawn from them,
 * and a progress bar on stderr. Everything else, and the byte-level
 * versions of these (`loadCheckpoint`, `loadDelta`, `backboneFromBytes`),
 * is in the root entry `sparsetune`, which runs in a browser too.
 *
 * Importing this entry makes {@link stderrProgressBar} `fineTune`'s default
 * progress report when stderr is a terminal, and lets `fineTune` and
 * `selectionEnv` start worker threads for their `workers` option.
 *
 * @example
 * ```ts
 * import { initBackend, gps, select, selectionEnv } from 'sparsetune';
 * import { digits, loadBackbone } from 'sparsetune/node';
 * await initBackend();
 * const { model, params } = loadBackbone('vit');
 * const mask = select(gps({ k: 1 }), selectionEnv({ model, params, data: digits().train }));
 * ```
 * @packageDocumentation
 */
import { setDefaultProgress } from '../optim/train.js';
import { setPoolStarter } from '../selection/pools.js';
import { threadStarter } from './workers.js';
import { stderrProgressBar } from './progress.js';

export { checkpointPath, loadBackbone } from './backbones.js';
export { readCheckpoint, readDelta, readTuned, writeCheckpoint, writeDelta, writeTuned } from './files.js';
export { writeFileAtomic } from './atomic.js';
export { fashionPartition, loadFashionMnist, loadMnist, mnistPartition, PARTITION_SEED } from '../data/datasets.js';
export * from '../data/tasks.js';
export { stderrProgressBar } from './progress.js';
export { directoryHandler, importLayersModelFromDir, loadLayersModelFromDir, saveLayersModelToDir } from './keras.js';
export { workerPool } from './workers.js';
export { loadImageFolder, type ImageFolder, type ImageFolderOptions } from './folder.js';

// `workers` on fineTune and selectionEnv starts worker threads through this.
setPoolStarter(threadStarter);
if (process.stderr.isTTY === true) setDefaultProgress(stderrProgressBar);
