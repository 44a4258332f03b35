import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import { FormatError, MaskError, SpecError, mapTree } from '../src/index.js';
import { mlp } from '../src/models/index.js';
import { maskOf } from '../src/selection/index.js';
import { applyDelta, extractDelta, loadDelta, mergeDeltas, saveDelta } from '../src/formats/index.js';

const model = mlp({ input: [4, 4, 1], hidden: [5], classes: 3 });
const base = model.init(0);
const tuned = mapTree(base, (t) => tf.add(t, 1));
const onlyHead = maskOf(model.spec, (l) => l.role === 'head');
const firstBias = maskOf(model.spec, (_, p) => p === 'layers.0.bias');

describe('deltas', () => {
  const delta = extractDelta(model.spec, base, tuned, onlyHead);
  test('hold only the selected entries', () => {
    expect(Object.keys(delta.leaves)).toEqual(['head.bias', 'head.kernel']);
    expect(saveDelta(delta).length).toBeLessThan(600);
  });
  test('refuse another spec or other base weights, changing nothing', () => {
    const other = mlp({ input: [4, 4, 1], hidden: [6], classes: 3 });
    expect(() => applyDelta(other.spec, other.init(0), delta)).toThrow(new SpecError('applyDelta: the delta was made for a model of another spec'));
    expect(() => applyDelta(model.spec, model.init(1), delta)).toThrow('applyDelta: the delta was made on other base weights (checksum differs)');
  });
  test('truncated and corrupted files say which', () => {
    const bytes = saveDelta(delta);
    expect(() => loadDelta(bytes.slice(0, bytes.length - 1))).toThrow(FormatError);
    expect(() => loadDelta(bytes.slice(0, bytes.length - 1))).toThrow(/delta file: truncated/);
    const bad = bytes.slice();
    bad[bad.length - 2]! ^= 1;
    expect(() => loadDelta(bad)).toThrow(/delta file: corrupted: checksum/);
    expect(() => loadDelta(new Uint8Array(4))).toThrow('delta file: truncated: 4 bytes is not even a header');
  });
  test('merge: disjoint deltas combine; overlaps are refused unless the later may win', () => {
    const a = extractDelta(model.spec, base, tuned, firstBias);
    const both = mergeDeltas([delta, a]);
    expect(Object.keys(both.leaves).sort()).toEqual(['head.bias', 'head.kernel', 'layers.0.bias']);
    const later = extractDelta(model.spec, base, mapTree(base, (t) => tf.add(t, 2)), onlyHead);
    expect(() => mergeDeltas([delta, later])).toThrow(MaskError);
    const winner = mergeDeltas([delta, later], { overlap: 'last' });
    const applied = applyDelta(model.spec, base, winner);
    expect(Array.from(applied['head.bias']!.dataSync())).toEqual(Array.from(tf.add(base['head.bias']!, 2).dataSync()));
    expect(applied['layers.0.kernel']).toBe(base['layers.0.kernel']);
    expect(() => mergeDeltas([delta, extractDelta(model.spec, model.init(1), tuned, onlyHead)])).toThrow('mergeDeltas: the deltas were made on different bases');
  });
});
