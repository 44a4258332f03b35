/**
 * The container every sparsetune file uses: a magic word, a JSON header and
 * a binary payload, each under a CRC-32, so a truncated or corrupted file is
 * reported as such instead of loading garbage.
 *
 * Layout (container version 2):
 * `"SPTN"` · u32 0 · u32 container version · u32 header length ·
 * u32 CRC-32 of the header bytes · header JSON (UTF-8) · payload.
 * Version 1 (still read): `"SPTN"` · u32 header length · header JSON ·
 * payload, with no checksum over the header. A version-1 header length is
 * never 0 (the shortest JSON object is 2 bytes), which is how the two
 * layouts are told apart.
 *
 * The header always carries `kind`, `format`, `payloadBytes` and `crc32`
 * (of the payload). Every field is checked here or by the kind's reader
 * before anything is allocated from it.
 *
 * @module
 */
import { FormatError, SparsetuneError } from '../core/errors.js';
import { tree } from '../core/tree.js';

const MAGIC = [0x53, 0x50, 0x54, 0x4e]; // "SPTN"
/** The container version this build writes. */
export const CONTAINER_VERSION = 2;
const PREFIX_V2 = 20;

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32 (IEEE 802.3) of `bytes`. Pass a previous result as `previous` to
 * continue it over more bytes: `crc32(b, crc32(a))` is the CRC of `a`
 * followed by `b`.
 * @example
 * ```ts
 * crc32(new TextEncoder().encode('123456789')).toString(16); // 'cbf43926'
 * ```
 * @category Files
 */
export function crc32(bytes: Uint8Array, previous = 0): number {
  let c = (previous ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** What every header holds; each kind adds its own fields. */
export interface FileHeader {
  readonly kind: string;
  readonly format: number;
  readonly payloadBytes: number;
  readonly crc32: number;
}

/** Packs a header and payload into one file (container version 2). */
export function packFile(kind: string, format: number, fields: Record<string, unknown>, payload: Uint8Array): Uint8Array {
  const header: FileHeader & Record<string, unknown> = { kind, format, ...fields, payloadBytes: payload.length, crc32: crc32(payload) };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(PREFIX_V2 + json.length + payload.length);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint32(4, 0, true);
  view.setUint32(8, CONTAINER_VERSION, true);
  view.setUint32(12, json.length, true);
  view.setUint32(16, crc32(json), true);
  out.set(json, PREFIX_V2);
  out.set(payload, PREFIX_V2 + json.length);
  return out;
}

/** A plain JSON object (not null, not an array). */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An integer in [0, 2^53): a count, a length, a dim. */
export function isCount(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/** An unsigned 32-bit integer (a checksum or a hash). */
export function isU32(v: unknown): v is number {
  return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;
}

/** The bytes a typed array views (no copy), for checksums and payloads. */
export const bytesOf = (a: Float32Array | Int32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * A {@link FormatError} unless a file's leaf path is one a tree accepts
 * (dot-separated names or indices, no prototype names); `where` says which
 * part of the header held it.
 */
export function checkFilePath(what: string, path: string, where: string): void {
  try {
    tree([[path, 0]]);
  } catch (e) {
    if (e instanceof SparsetuneError) throw new FormatError(`${what}: ${where}: ${e.message}`);
    throw e;
  }
}

/**
 * Field `name` of header `h`, or a {@link FormatError} naming the field and
 * what it should have been.
 */
export function field<T>(what: string, h: Record<string, unknown>, name: string, ok: (v: unknown) => v is T, expected: string): T {
  const v = Object.hasOwn(h, name) ? h[name] : undefined;
  if (!ok(v)) throw new FormatError(`${what}: malformed header: '${name}' should be ${expected}, got ${describe(v)}`);
  return v;
}

/** A short, safe rendering of a header value for an error message. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing (the field is missing)';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

/**
 * Unpacks a file of `kind` whose header `format` is one of `formats`,
 * checking the magic, the container version, lengths, the header's and the
 * payload's checksums and the container fields; every failure is a
 * {@link FormatError} saying which. `container` tells the caller which
 * layout the file had (version 1 has no header checksum).
 */
export function unpackFile(bytes: Uint8Array, kind: string, formats: readonly number[]): { header: Record<string, unknown> & FileHeader; payload: Uint8Array; container: number } {
  const what = `${kind} file`;
  if (bytes.length < 8) throw new FormatError(`${what}: truncated: ${bytes.length} bytes is not even a header`);
  if (!MAGIC.every((m, i) => bytes[i] === m)) throw new FormatError(`${what}: not a sparsetune file (bad magic)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let container = 1;
  let start = 8;
  let len = view.getUint32(4, true);
  if (len === 0) {
    if (bytes.length < PREFIX_V2) throw new FormatError(`${what}: truncated: ${bytes.length} bytes is not even a header`);
    container = view.getUint32(8, true);
    if (container !== CONTAINER_VERSION) {
      throw new FormatError(`${what}: container version ${container} is not one this build reads (1 or ${CONTAINER_VERSION}); ${container > CONTAINER_VERSION ? 'a newer sparsetune wrote it: upgrade to read it' : 'the file is corrupted'}`);
    }
    start = PREFIX_V2;
    len = view.getUint32(12, true);
  }
  if (start + len > bytes.length) throw new FormatError(`${what}: truncated: header needs ${len} bytes, ${bytes.length - start} present`);
  const json = bytes.subarray(start, start + len);
  if (container >= 2) {
    const want = view.getUint32(16, true);
    const got = crc32(json);
    if (got !== want) throw new FormatError(`${what}: corrupted: header checksum ${got.toString(16)} does not match the recorded ${want.toString(16)}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch {
    throw new FormatError(`${what}: corrupted: the header is not valid JSON`);
  }
  if (!isRecord(parsed)) throw new FormatError(`${what}: malformed header: expected a JSON object, got ${describe(parsed)}`);
  const h = parsed;
  const fileKind = field(what, h, 'kind', (v): v is string => typeof v === 'string', 'a string');
  if (fileKind !== kind) throw new FormatError(`${what}: this is a '${fileKind}' file`);
  const format = field(what, h, 'format', isCount, 'a format number');
  if (!formats.includes(format)) {
    const newest = Math.max(...formats);
    throw new FormatError(`${what}: format ${format} is not supported (this build reads format${formats.length > 1 ? 's' : ''} ${formats.join(', ')})${format > newest ? '; a newer sparsetune wrote it: upgrade to read it' : ''}`);
  }
  const payloadBytes = field(what, h, 'payloadBytes', isCount, 'a byte count');
  const sum = field(what, h, 'crc32', isU32, 'an unsigned 32-bit checksum');
  const payload = bytes.subarray(start + len);
  if (payload.length < payloadBytes) throw new FormatError(`${what}: truncated: payload has ${payload.length} of ${payloadBytes} bytes`);
  if (payload.length > payloadBytes) throw new FormatError(`${what}: corrupted: ${payload.length - payloadBytes} unexpected bytes after the payload`);
  const got = crc32(payload);
  if (got !== sum) throw new FormatError(`${what}: corrupted: checksum ${got.toString(16)} does not match the header's ${sum.toString(16)}`);
  return { header: h as Record<string, unknown> & FileHeader, payload, container };
}
