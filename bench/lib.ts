// Shared helpers of the benchmarks: timing, medians and result files.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

/** Median of a list of numbers. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Milliseconds one call of `f` takes, reading a value back so asynchronous backends finish. */
export function timeOnce(f: () => void): number {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
}

/**
 * Runs each contender `rounds` times, interleaved (A, B, A, B, …) so both
 * see the same machine load, after `warmup` untimed calls each; returns
 * per-contender lists of times in ms.
 */
export function sideBySide(contenders: Record<string, () => void>, rounds: number, warmup = 3): Record<string, number[]> {
  const names = Object.keys(contenders);
  for (const n of names) for (let i = 0; i < warmup; i++) contenders[n]!();
  const times: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) for (const n of names) times[n]!.push(timeOnce(contenders[n]!));
  return times;
}

/** Where and with what a benchmark ran. */
export function machine(): Record<string, unknown> {
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    backend: tf.getBackend(),
    tfjs: tf.version_core,
  };
}

/** Writes `name.json` and `name.md` under bench/results. */
export function writeResults(name: string, json: unknown, markdown: string): void {
  const base = new URL(`./results/${name}`, import.meta.url).pathname;
  mkdirSync(dirname(base), { recursive: true });
  writeFileSync(`${base}.json`, JSON.stringify(json, null, 2) + '\n');
  writeFileSync(`${base}.md`, markdown);
  console.log(`wrote bench/results/${name}.json and .md`);
}
