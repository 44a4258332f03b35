/**
 * What the pool and its workers say to each other. Requests go to a worker
 * as messages; everything that comes back goes through shared memory: each
 * worker has a mailbox (a status, a number, an error's name and message) and
 * large results (score sums, gradients, logits) land in buffers the request
 * names. A worker then bumps a shared counter and calls `Atomics.notify`.
 *
 * Why not reply with messages: the pool waits for replies synchronously
 * (`fineTune` and the selection passes are synchronous), blocked in
 * `Atomics.wait`, and a browser thread cannot receive a message while it is
 * blocked. Node could (`receiveMessageOnPort`), but one protocol serves both.
 *
 * @module
 */
import type { BackendName } from '../core/backend.js';
import { ConfigError, type Shape } from '../core/index.js';
import { cnn, mlp, vit, type Model } from '../models/index.js';

/** Parameters in one shared buffer: leaf `paths[i]` of shape `shapes[i]` at `offsets[i]` (in floats). */
export interface SharedParams {
  readonly paths: readonly string[];
  readonly shapes: readonly (readonly number[])[];
  readonly offsets: readonly number[];
  readonly buffer: SharedArrayBuffer;
}

/** Views of the shared buffer as one Float32Array per leaf. */
export function leafArrays(s: SharedParams): Float32Array[] {
  return s.paths.map((_, i) => new Float32Array(s.buffer, s.offsets[i]! * 4, s.shapes[i]!.reduce((a, b) => a * b, 1)));
}

/** A data set whose arrays live in shared buffers. */
export interface SharedData {
  readonly images: Float32Array;
  readonly labels: Int32Array | Float32Array;
  readonly n: number;
  readonly shape: readonly number[];
}

/** What rebuilds a model in a worker: a builder's name and config, or an imported Keras graph. */
export type ModelDescription =
  | { readonly name: 'mlp' | 'cnn' | 'vit'; readonly config: Readonly<Record<string, unknown>> }
  | {
      readonly name: 'keras';
      /** The pool's number for this model: a worker keeps the last Keras model it rebuilt, by this number. */
      readonly id: number;
      /** `ImportedModel.topology`, `head` and `input`: what `importLayersModel` needs of a LayersModel rebuilt from it. */
      readonly topology: Readonly<Record<string, unknown>>;
      readonly head: string;
      readonly input: readonly number[];
      /** Every weight in Keras's layout (`kerasWeights`): what carries the buffers (BatchNormalization's moving statistics). */
      readonly weights: readonly { readonly layer: string; readonly weight: string; readonly shape: readonly number[]; readonly values: Float32Array }[];
    };

/** The losses a worker can compute, by name. */
export type LossDescription = { readonly kind: 'crossEntropy'; readonly labelSmoothing?: number | undefined } | { readonly kind: 'meanSquaredError' };

/** A request from the pool. Every one but `trainEnd` is answered through the worker's mailbox. */
export type Request =
  | {
      readonly op: 'scores';
      readonly model: ModelDescription;
      readonly params: SharedParams;
      readonly data: SharedData;
      readonly batches: readonly { readonly b: number; readonly indices: Int32Array }[];
      readonly seed: number;
      readonly name: string;
      readonly loss: 'supcon' | 'ce';
      readonly temperature?: number | undefined;
      readonly square: boolean;
      /** Where the sums go, laid out as `params`. */
      readonly out: Float32Array;
    }
  | {
      readonly op: 'trainBegin';
      readonly run: number;
      readonly model: ModelDescription;
      readonly params: SharedParams;
      readonly data: SharedData;
      readonly trainable: readonly string[];
      /** Per trainable leaf, the selected flat indices, or null for a whole leaf; their values sit in `values`, leaf after leaf, and this worker's gradient of them goes to `grads` at `gradsAt`. */
      readonly selected: readonly (Int32Array | null)[];
      readonly values: SharedArrayBuffer;
      readonly grads: SharedArrayBuffer;
      readonly gradsAt: number;
      readonly loss: LossDescription;
    }
  | { readonly op: 'trainStep'; readonly run: number; readonly indices: Int32Array; readonly scale: number }
  | { readonly op: 'trainEnd'; readonly run: number }
  | { readonly op: 'probe'; readonly model: ModelDescription; readonly params: SharedParams; readonly x: Float32Array; readonly shape: readonly number[]; readonly out: Float32Array }
  | { readonly op: 'tensors' };

/** What the pool passes each worker at start. */
export interface WorkerInit {
  readonly backend: BackendName;
  /**
   * Int32 [0]: replies written, [1]: selection batches done (workers bump
   * them and notify index 0); [2]: workers started (notified on 2); [3]:
   * workers that died (notified on 0 and 2).
   */
  readonly signal: SharedArrayBuffer;
  /** This worker's mailbox, {@link MAILBOX_BYTES} long. */
  readonly mailbox: SharedArrayBuffer;
}

/** What a worker posts once, when its backend is up (or failed to come up). */
export type Ready = { readonly ready: true } | { readonly ready: false; readonly name: string; readonly message: string };

/**
 * Mailbox layout: int32 status (0 ok, 1 error, 2 died), int32 name bytes,
 * int32 message bytes, int32 died flag (set once, never cleared: a later
 * reply may overwrite the rest), float64 value at byte 16, UTF-8 text from
 * byte 64.
 */
export const MAILBOX_BYTES = 64 + 4096;
const TEXT_AT = 64;

/** A reply: a number (a loss, a tensor count), the error a request raised, or why the worker's thread ended (`died`). */
export type Reply = { readonly ok: true; readonly value: number } | { readonly ok: false; readonly name: string; readonly message: string; readonly died?: true };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Writes a reply into a mailbox (the counter is bumped by the caller, after). */
export function writeReply(mailbox: SharedArrayBuffer, reply: Reply): void {
  const head = new Int32Array(mailbox, 0, 3);
  new Float64Array(mailbox, 16, 1)[0] = reply.ok ? reply.value : NaN;
  if (reply.ok) {
    head[0] = 0;
    return;
  }
  // Browsers refuse to encode into or decode from shared memory: go through a private copy.
  const room = MAILBOX_BYTES - TEXT_AT;
  const name = encoder.encode(reply.name).subarray(0, 256);
  const message = encoder.encode(reply.message).subarray(0, room - name.length);
  const text = new Uint8Array(mailbox, TEXT_AT, room);
  text.set(name);
  text.set(message, name.length);
  head[0] = reply.died ? 2 : 1;
  head[1] = name.length;
  head[2] = message.length;
}

/** Reads the reply a worker wrote. */
export function readReply(mailbox: SharedArrayBuffer): Reply {
  const head = new Int32Array(mailbox, 0, 3);
  if (head[0] === 0) return { ok: true, value: new Float64Array(mailbox, 16, 1)[0]! };
  const text = new Uint8Array(mailbox, TEXT_AT, head[1]! + head[2]!).slice();
  const r = { ok: false, name: decoder.decode(text.subarray(0, head[1])), message: decoder.decode(text.subarray(head[1])) } as const;
  return head[0] === 2 ? { ...r, died: true } : r;
}

/**
 * Said by a worker whose thread is ending (an uncaught error, an exit):
 * the pool waits blocked, so it cannot see the thread's events, and would
 * otherwise wait out its timeout. Marks the mailbox, counts the death in
 * the signal's [3] and wakes the pool however it waits.
 */
export function reportDeath(init: WorkerInit, message: string): void {
  writeReply(init.mailbox, { ok: false, name: '', message, died: true });
  // Stored after the text, atomically: whoever sees the flag sees the text.
  Atomics.store(new Int32Array(init.mailbox, 0, 4), 3, 1);
  const sig = new Int32Array(init.signal);
  Atomics.add(sig, 3, 1);
  Atomics.notify(sig, 0);
  Atomics.notify(sig, 2);
}

/** Why a worker died, if its mailbox says it did (the flag first: a live worker's mailbox may be mid-write). */
export function diedIn(mailbox: SharedArrayBuffer): string | undefined {
  if (Atomics.load(new Int32Array(mailbox, 0, 4), 3) !== 1) return undefined;
  const r = readReply(mailbox);
  return !r.ok && r.died ? r.message : 'died';
}

/** An error's name and message as they cross to the pool (in a reply, or a `ready: false`). */
export function failureOf(e: unknown): { readonly name: string; readonly message: string } {
  const err = e as Error | undefined;
  return { name: err?.name ?? 'Error', message: err?.message ?? String(e) };
}

/** How a worker describes the error that ends it. */
export function fatal(e: unknown): string {
  const err = e as { name?: unknown; message?: unknown } | undefined;
  return typeof err?.message === 'string' ? `${typeof err.name === 'string' ? err.name : 'Error'}: ${err.message}` : String(e);
}

/** Builds a model of `mlp`, `cnn` or `vit` from its description (Keras graphs are rebuilt in the worker: serve.ts). */
export function buildModel(d: Extract<ModelDescription, { name: 'mlp' | 'cnn' | 'vit' }>): Model<Shape, number, number> {
  // A model's config is what its builder took (plus the class count), so it rebuilds it.
  const build = { mlp, cnn, vit }[d.name] as ((config: never) => Model<Shape, number, number>) | undefined;
  if (build === undefined) throw new ConfigError(`worker: no builder for model '${String(d.name)}'`);
  return build(d.config as never);
}
