import { topKPerNeuron as NEW } from '../src/selection/topk.js';
import { topKPerNeuron as OLD } from './_old_topk.js';
const shapes = [[768, 3072], [3072, 768], [768, 2304]];
const arrs = shapes.map(([a, b]) => { const s = new Float32Array(a! * b!); for (let i = 0; i < s.length; i++) s[i] = Math.random(); return s; });
const es = arrs.map((s) => new Uint8Array(s.length).fill(1));
for (const k of [1, 8]) {
  const t: Record<string, number[]> = { OLD: [], NEW: [] };
  for (let rep = 0; rep < 8; rep++) for (const [name, f] of [['OLD', OLD], ['NEW', NEW]] as const) {
    const t0 = performance.now();
    arrs.forEach((s, j) => f(s, shapes[j]!, 1, k, es[j]!));
    t[name]!.push((performance.now() - t0) / arrs.reduce((a, s) => a + s.length, 0) * 1e6);
  }
  const med = (x: number[]) => x.sort((a, b) => a - b)[x.length >> 1]!;
  console.log('k', k, 'ns/elem OLD', med(t.OLD!).toFixed(2), 'NEW', med(t.NEW!).toFixed(2));
}
