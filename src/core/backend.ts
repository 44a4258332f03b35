/**
 * Backends. tfjs-core alone registers no gradients in Node: its gradient
 * definitions ship only as extensionless ES modules that Node cannot load.
 * The `@tensorflow/tfjs` bundle carries them and registers them into tfjs's
 * process-wide registry (shared by every copy of tfjs-core), so importing it
 * once here is what makes `tf.grad` work for every op, ours and the user's.
 *
 * @module
 */
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { BackendError } from './errors.js';

/**
 * Where tensors live and ops run: `'wasm'` (default: XNNPACK, SIMD,
 * single-threaded in Node), `'cpu'` (pure JavaScript, the reference), or
 * `'tensorflow'` (native TensorFlow through `@tensorflow/tfjs-node-gpu` or
 * `@tensorflow/tfjs-node`, when installed).
 * @category Backends
 */
export type BackendName = 'wasm' | 'cpu' | 'tensorflow';

/** The message given when no native package is installed; exported for the test that pins it. */
export const NATIVE_MISSING =
  "initBackend('tensorflow'): neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed. " +
  'Install one at version 4.22.0 (the same version as every other @tensorflow package here): ' +
  '`npm install @tensorflow/tfjs-node-gpu@4.22.0` for CUDA (it needs CUDA 11.2 and cuDNN 8.1 on the machine) ' +
  'or `npm install @tensorflow/tfjs-node@4.22.0` for the CPU build. Both download libtensorflow at install time, ' +
  "so they need internet access; without it use 'wasm' or 'cpu'.";

/** Whether a backend factory of that name is registered (tfjs's `findBackendFactory` logs rather than answers). */
function backendRegistered(name: string): boolean {
  return tf.engine().registryFactory[name] != null;
}

/** Imports the first native package that resolves; the specifiers are variables so neither is needed to build. */
async function loadNative(candidates: readonly string[]): Promise<string> {
  for (const name of candidates) {
    try {
      await import(name);
      return name;
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') {
        throw new BackendError(`initBackend('tensorflow'): ${name} is installed but failed to load: ${(e as Error).message}`);
      }
    }
  }
  throw new BackendError(NATIVE_MISSING);
}

/**
 * Selects and initialises a backend; returns its tfjs name. Call it once
 * before creating tensors (tensors made on another backend are moved).
 *
 * @param name - `'wasm'` by default.
 * @param nativePackages - which packages `'tensorflow'` tries, in order.
 * @example
 * ```ts
 * import { initBackend } from 'sparsetune';
 * await initBackend();          // wasm
 * await initBackend('cpu');     // reference backend
 * ```
 * @category Backends
 */
export async function initBackend(
  name: BackendName = 'wasm',
  nativePackages: readonly string[] = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'],
): Promise<string> {
  if (name !== 'wasm' && name !== 'cpu' && name !== 'tensorflow') {
    throw new BackendError(`initBackend: unknown backend '${String(name)}'; expected 'wasm', 'cpu' or 'tensorflow'`);
  }
  if (name === 'tensorflow') {
    const pkg = await loadNative(nativePackages);
    // A package can load and still register nothing: a copy of tfjs-core
    // other than ours (another version) keeps its own registry.
    if (!backendRegistered('tensorflow')) {
      throw new BackendError(
        `initBackend('tensorflow'): ${pkg} loaded but registered no 'tensorflow' backend with this copy of @tensorflow/tfjs-core; ` +
          'it most likely depends on another tfjs-core version: install it at 4.22.0, the version of every other @tensorflow package here (`npm ls @tensorflow/tfjs-core` shows the copies)',
      );
    }
  }
  // The cpu backend greets its first write in Node with advice to install
  // tfjs-node; we document the backends instead, so silence it for good.
  const cpu = tf.findBackend('cpu') as { firstUse?: boolean } | null;
  if (cpu) cpu.firstUse = false;
  const ok = await tf.setBackend(name);
  if (!ok) throw new BackendError(`initBackend: backend '${name}' failed to initialise`);
  await tf.ready();
  if (name === 'wasm') shareIdentityOnWasm();
  removeEmscriptenHandlers();
  return tf.getBackend();
}

// tfjs's engine clones every tensor it saves for a gradient (and `tf.clone`
// is the same kernel). Tensors are immutable, so the cpu backend's Identity
// shares the data; wasm's copies it, which on a ViT step was 220 copies and
// ~5% of the step. Ours shares it as cpu's (and wasm's own Reshape) do.
const sharedIdentity: tf.KernelFunc = ({ inputs, backend }) => {
  const { x } = inputs as { x: tf.TensorInfo };
  (backend as tf.KernelBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
};

function shareIdentityOnWasm(): void {
  const k = tf.getKernel('Identity', 'wasm');
  if (k === undefined || k.kernelFunc === sharedIdentity) return;
  tf.unregisterKernel('Identity', 'wasm');
  tf.registerKernel({ kernelName: 'Identity', backendName: 'wasm', kernelFunc: sharedIdentity });
}

/** The part of Node's `process` that {@link removeEmscriptenHandlers} uses. */
interface ListenerHost {
  listeners(event: string): ((...args: unknown[]) => void)[];
  removeListener(event: string, listener: (...args: unknown[]) => void): void;
}

// The wasm backend's emscripten glue, when its module starts in Node, adds
//   process.on('uncaughtException', (ex) => { if (!(ex instanceof ExitStatus)) throw ex; })
//   process.on('unhandledRejection', (reason) => { throw reason; })
// Re-throwing from a handler makes Node report every later uncaught error of
// the user's as thrown inside the glue (with source maps on, after ~38 KB of
// minified source) and exit with code 7. tfjs never calls emscripten's
// exit(), so the handlers have no other job: remove them, recognised by their
// source, and Node reports the user's own error and stack with exit code 1.
const GLUE_HANDLERS: Readonly<Record<string, RegExp>> = {
  uncaughtException: /instanceof\s+ExitStatus/,
  unhandledRejection: /^function\s*\(\s*(\w+)\s*\)\s*\{\s*throw\s+\1\s*;?\s*\}$/,
};

function removeEmscriptenHandlers(): void {
  // Through globalThis, so a browser (no `process`) and bundlers see nothing to polyfill.
  const host = (globalThis as { process?: Partial<ListenerHost> }).process;
  if (typeof host?.listeners !== 'function' || typeof host.removeListener !== 'function') return;
  for (const [event, glue] of Object.entries(GLUE_HANDLERS)) {
    for (const l of host.listeners(event)) {
      if (glue.test(Function.prototype.toString.call(l).trim())) host.removeListener(event, l);
    }
  }
}

/**
 * Throws a {@link BackendError} telling the user to `await initBackend()`
 * unless a backend is initialised and ready. Without it, tfjs picks a
 * backend on first use and, for wasm, fails with a message that never
 * mentions {@link initBackend}. The check reads two fields of tfjs's engine
 * (no tensor is made, nothing syncs), so entry points call it freely.
 * @param what - the entry point, named in the message.
 * @example
 * ```ts
 * requireBackend('fineTune'); // throws before `await initBackend()`
 * ```
 * @category Backends
 */
export function requireBackend(what: string): void {
  // Pinned tfjs-core 4.22.0: `backendInstance` is set once a backend is
  // initialised; `pendingBackendInit` while an async one (wasm) is loading.
  const engine = tf.engine() as unknown as { backendInstance: unknown; pendingBackendInit: unknown };
  if (engine.backendInstance == null || engine.pendingBackendInit != null) {
    throw new BackendError(`${what}: no backend is ready; call \`await initBackend()\` (or initBackend('cpu') / initBackend('tensorflow')) once before using sparsetune`);
  }
}
