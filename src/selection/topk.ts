/**
 * Top-k selection on host score arrays, the inner loops of every selector.
 * Ranking is by score, higher first; ties go to the lower flat index; NaN
 * ranks as −∞. Only entries whose `eligible` byte is 1 can be chosen.
 *
 * @module
 */

const key = (s: number): number => (Number.isNaN(s) ? -Infinity : s);

/**
 * For every neuron (every index along `neuronAxis`), marks the `k` best
 * eligible entries of its fan-in (all the others axes); a neuron with fewer
 * eligible entries gets all of them. One pass in memory order, keeping a
 * sorted buffer of the best `k` per neuron.
 */
export function topKPerNeuron(scores: Float32Array, shape: readonly number[], neuronAxis: number, k: number, eligible: Uint8Array): Uint8Array {
  const out = new Uint8Array(scores.length);
  if (k <= 0 || scores.length === 0) return out;
  const dim = shape.length === 0 ? 1 : shape[neuronAxis]!;
  const inner = shape.slice(neuronAxis + 1).reduce((p, d) => p * d, 1);
  // Per neuron: k slots sorted best first (score, index), and how many are filled.
  const bestS = new Float64Array(dim * k).fill(-Infinity);
  const bestI = new Int32Array(dim * k).fill(-1);
  const filled = new Int32Array(dim);
  let neuron = 0;
  let run = 0;
  for (let i = 0; i < scores.length; i++) {
    if (eligible[i]) {
      const s = key(scores[i]!);
      const base = neuron * k;
      const f = filled[neuron]!;
      // Entries arrive in increasing index order, so an equal score never beats a kept one.
      if (f < k || s > bestS[base + k - 1]!) {
        let j = f < k ? f : k - 1;
        while (j > 0 && s > bestS[base + j - 1]!) {
          bestS[base + j] = bestS[base + j - 1]!;
          bestI[base + j] = bestI[base + j - 1]!;
          j--;
        }
        bestS[base + j] = s;
        bestI[base + j] = i;
        if (f < k) filled[neuron] = f + 1;
      }
    }
    if (++run === inner) {
      run = 0;
      if (++neuron === dim) neuron = 0;
    }
  }
  for (let n = 0; n < dim; n++) for (let j = 0; j < filled[n]!; j++) out[bestI[n * k + j]!] = 1;
  return out;
}

/** The `count`-th largest of `values` (1-based), by quickselect on a copy's prefix. */
function kthLargest(values: Float64Array, count: number): number {
  let lo = 0;
  let hi = values.length - 1;
  const target = count - 1;
  while (lo < hi) {
    const pivot = values[(lo + hi) >> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i]! > pivot) i++;
      while (values[j]! < pivot) j--;
      if (i <= j) {
        const t = values[i]!;
        values[i] = values[j]!;
        values[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return values[target]!;
}

/**
 * Marks the `count` best eligible entries across several score arrays taken
 * as one concatenation in the given order (ties to the lower position in
 * that concatenation). `count` must not exceed the eligible total.
 */
export function topKGlobal(scores: readonly Float32Array[], eligible: readonly Uint8Array[], count: number): Uint8Array[] {
  const outs = scores.map((s) => new Uint8Array(s.length));
  if (count <= 0) return outs;
  let n = 0;
  eligible.forEach((e) => e.forEach((b) => (n += b)));
  const pool = new Float64Array(n);
  let at = 0;
  scores.forEach((s, l) => {
    const e = eligible[l]!;
    for (let i = 0; i < s.length; i++) if (e[i]) pool[at++] = key(s[i]!);
  });
  const threshold = kthLargest(pool, count);
  // Everything strictly better than the threshold, then threshold ties in order.
  let above = 0;
  for (let i = 0; i < n; i++) if (pool[i]! > threshold) above++;
  let ties = count - above;
  scores.forEach((s, l) => {
    const e = eligible[l]!;
    const o = outs[l]!;
    for (let i = 0; i < s.length; i++) {
      if (!e[i]) continue;
      const v = key(s[i]!);
      if (v > threshold) o[i] = 1;
      else if (v === threshold && ties > 0) {
        o[i] = 1;
        ties--;
      }
    }
  });
  return outs;
}
