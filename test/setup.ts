// Runs before every test file: the shared fast-check settings and the backend.
import fc from 'fast-check';
import { initBackend, type BackendName } from '../src/index.js';

const path = process.env.FC_PATH;
fc.configureGlobal({
  seed: Number(process.env.FC_SEED),
  numRuns: Number(process.env.FC_RUNS ?? 100),
  ...(path ? { path } : {}),
});
await initBackend((process.env.SPARSETUNE_BACKEND ?? 'wasm') as BackendName);
