/**
 * The container every sparsetune file uses: a magic word, a JSON header and
 * a binary payload protected by a CRC-32, so a truncated or corrupted file
 * is reported as such instead of loading garbage.
 *
 * Layout: `"SPTN"` · u32 header length · header JSON (UTF-8) · payload.
 * The header always carries `kind`, `format`, `payloadBytes` and `crc32`.
 *
 * @module
 */
import { FormatError } from './errors.js';

const MAGIC = [0x53, 0x50, 0x54, 0x4e]; // "SPTN"

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
 * CRC-32 (IEEE 802.3) of `bytes`.
 * @category Files
 */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
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

/** Packs a header and payload into one file. */
export function packFile(kind: string, format: number, fields: Record<string, unknown>, payload: Uint8Array): Uint8Array {
  const header: FileHeader & Record<string, unknown> = { kind, format, ...fields, payloadBytes: payload.length, crc32: crc32(payload) };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + payload.length);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(4, json.length, true);
  out.set(json, 8);
  out.set(payload, 8 + json.length);
  return out;
}

/**
 * Unpacks a file of `kind` at a supported `format`, checking the magic,
 * lengths and checksum; every failure is a {@link FormatError} saying which.
 */
export function unpackFile<H extends FileHeader>(bytes: Uint8Array, kind: string, format: number): { header: H; payload: Uint8Array } {
  const what = `${kind} file`;
  if (bytes.length < 8) throw new FormatError(`${what}: truncated: ${bytes.length} bytes is not even a header`);
  if (!MAGIC.every((m, i) => bytes[i] === m)) throw new FormatError(`${what}: not a sparsetune file (bad magic)`);
  const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
  if (8 + len > bytes.length) throw new FormatError(`${what}: truncated: header needs ${len} bytes, ${bytes.length - 8} present`);
  let header: H;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + len))) as H;
  } catch {
    throw new FormatError(`${what}: corrupted: the header is not valid JSON`);
  }
  if (header.kind !== kind) throw new FormatError(`${what}: this is a '${String(header.kind)}' file`);
  if (header.format !== format) throw new FormatError(`${what}: format ${String(header.format)} is not supported (this version reads format ${format})`);
  const payload = bytes.subarray(8 + len);
  if (payload.length < header.payloadBytes) throw new FormatError(`${what}: truncated: payload has ${payload.length} of ${header.payloadBytes} bytes`);
  if (payload.length > header.payloadBytes) throw new FormatError(`${what}: corrupted: ${payload.length - header.payloadBytes} unexpected bytes after the payload`);
  const sum = crc32(payload);
  if (sum !== header.crc32) throw new FormatError(`${what}: corrupted: checksum ${sum.toString(16)} does not match the header's ${header.crc32.toString(16)}`);
  return { header, payload };
}
