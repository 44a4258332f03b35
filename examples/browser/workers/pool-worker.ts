// One worker of the pool: its own wasm backend, one core. The trainer starts
// as many as the pool has; servePoolWorker answers their requests.
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { servePoolWorker } from 'sparsetune';

setWasmPaths('../'); // the .wasm files sit in the site's root, beside the first page
servePoolWorker();
