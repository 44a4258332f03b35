import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, test } from 'vitest';
import {
  assertMatchesSpec,
  combine,
  comparePaths,
  countEntries,
  disposeTree,
  filterTree,
  mapTree,
  paramSpec,
  partitionTree,
  pathMatcher,
  paths,
  SpecError,
  tree,
  zipTree,
} from '../src/index.js';

describe('tree', () => {
  test('orders paths naturally: numbers numerically, before names', () => {
    const t = tree([
      ['blocks.10.mlp', 1],
      ['head.kernel', 2],
      ['blocks.2.mlp', 3],
      ['blocks.2.attn', 4],
      ['cls', 5],
    ]);
    expect(paths(t)).toEqual(['blocks.2.attn', 'blocks.2.mlp', 'blocks.10.mlp', 'cls', 'head.kernel']);
    expect(Object.isFrozen(t)).toBe(true);
    expect(comparePaths('a', 'a.b')).toBeLessThan(0);
  });
  test('rejects duplicate, bare-number and malformed paths', () => {
    expect(() => tree([['a', 1], ['a', 2]])).toThrow(new SpecError("tree: path 'a' appears twice"));
    expect(() => tree([['0', 1]])).toThrow("tree: path '0' must not be a bare number");
    expect(() => tree([['a..b', 1]])).toThrow("tree: path 'a..b' must be dot-separated names");
    expect(() => tree([['a-b', 1]])).toThrow('must be dot-separated names');
  });
  test('map, zip, filter, partition and combine', () => {
    const t = tree([['a.w', 1], ['a.b', 2], ['c.w', 3]]);
    expect(mapTree(t, (v, p) => `${p}=${v}`)).toEqual({ 'a.b': 'a.b=2', 'a.w': 'a.w=1', 'c.w': 'c.w=3' });
    expect(zipTree(t, t, (x, y) => x + y)).toEqual({ 'a.b': 4, 'a.w': 2, 'c.w': 6 });
    expect(() => zipTree(t, tree([['a.w', 1]]), (x) => x)).toThrow(new SpecError('zipTree: trees differ: missing a.b, c.w; extra none'));
    expect(filterTree(t, (v) => v > 1)).toEqual({ 'a.b': 2, 'c.w': 3 });
    const [ws, rest] = partitionTree(t, (_, p) => p.endsWith('.w'));
    expect(paths(ws)).toEqual(['a.w', 'c.w']);
    expect(paths(combine(rest, ws))).toEqual(paths(t));
    expect(() => combine(t, ws)).toThrow("tree: path 'a.w' appears twice");
  });
  test('path globs: * is one segment, ** any number', () => {
    const m = pathMatcher('blocks.*.attn.**');
    expect(m('blocks.0.attn.qkv.kernel')).toBe(true);
    expect(m('blocks.0.attn')).toBe(true);
    expect(m('blocks.0.mlp.fc1.kernel')).toBe(false);
    expect(m('blocks.attn.x')).toBe(false);
    expect(pathMatcher('**.bias')('blocks.1.mlp.fc1.bias')).toBe(true);
    expect(pathMatcher('head.*')('head.kernel')).toBe(true);
    expect(pathMatcher('head.*')('head')).toBe(false);
  });
});

describe('param specs', () => {
  const spec = paramSpec([
    ['fc.kernel', { shape: [4, 3], role: 'kernel', neuronAxis: 1 }],
    ['fc.bias', { shape: [3], role: 'bias', neuronAxis: 0 }],
  ]);
  test('counts entries', () => expect(countEntries(spec)).toBe(15));
  test('rejects a neuron axis out of range and bad dims', () => {
    expect(() => paramSpec([['k', { shape: [4, 3], role: 'kernel', neuronAxis: 2 }]])).toThrow(
      new SpecError("paramSpec: leaf 'k': neuron axis 2 is out of range for shape [4, 3]"),
    );
    expect(() => paramSpec([['k', { shape: [4, 1.5], role: 'kernel', neuronAxis: 0 }]])).toThrow("paramSpec: leaf 'k': bad shape [4, 1.5]");
  });
  test('checks parameters against the spec', () => {
    const good = tree([['fc.kernel', tf.zeros([4, 3])], ['fc.bias', tf.zeros([3])]]);
    expect(() => assertMatchesSpec(spec, good)).not.toThrow();
    const bad = tree([['fc.kernel', tf.zeros([3, 4])], ['fc.bias', tf.zeros([3])]]);
    expect(() => assertMatchesSpec(spec, bad)).toThrow(new SpecError("params: leaf 'fc.kernel': expected float32 [4, 3], got float32 [3, 4]"));
    expect(() => assertMatchesSpec(spec, tree([['fc.bias', tf.zeros([3])]]))).toThrow('params: trees differ: missing fc.kernel; extra none');
    const before = tf.memory().numTensors;
    disposeTree(good);
    expect(tf.memory().numTensors).toBe(before - 2);
  });
});
