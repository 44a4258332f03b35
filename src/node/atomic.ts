/**
 * Atomic file writes: a file is either its old self or entirely its new
 * self, never half of each — a full disk, a size limit or a crash midway
 * leaves the previous version readable. Node-only.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Writes `bytes` to `path` atomically: into a temporary file in the same
 * directory (a rename is only atomic within one file system), flushed to
 * disk with fsync, then renamed over `path`. On any failure the temporary
 * file is removed, `path` keeps its old contents (or stays absent), and the
 * original error (say `EFBIG` or `ENOSPC`) is thrown unchanged.
 * @example
 * ```ts
 * import { writeFileAtomic } from 'sparsetune/node';
 * writeFileAtomic('model.ckpt', saveCheckpoint(model.spec, params));
 * ```
 * @category Files
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const dir = dirname(path);
  // Hidden, unique per process and call, so concurrent writers never share one.
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx');
    for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
    // Without the flush, a crash soon after the rename can leave the new name holding no data.
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // The write's own error is the one worth reporting.
      }
    }
    rmSync(tmp, { force: true });
    throw e;
  }
  syncDir(dir);
}

/** Flushes the directory entry of the rename; some platforms (Windows) cannot open a directory, which is no failure of the write. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Best effort: the data itself is already durable.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
