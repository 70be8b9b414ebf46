/** Summary statistics of a float tensor, computed in one pass in float64 (for reports and plots). */
export interface TensorStats {
  count: number;
  min: number;
  max: number;
  mean: number;
  std: number;
  absMax: number;
  nonFinite: number;
}

export function tensorStats(values: ArrayLike<number>): TensorStats {
  let min = Infinity, max = -Infinity, sum = 0, sumSq = 0, absMax = 0, nonFinite = 0, count = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) { nonFinite++; continue; }
    count++;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
    sumSq += v * v;
    const a = v < 0 ? -v : v;
    if (a > absMax) absMax = a;
  }
  const mean = count ? sum / count : NaN;
  const variance = count ? Math.max(0, sumSq / count - mean * mean) : NaN;
  return { count, min: count ? min : NaN, max: count ? max : NaN, mean, std: Math.sqrt(variance), absMax, nonFinite };
}

export interface Histogram {
  /** bins + 1 edges, ascending */
  edges: Float64Array;
  counts: Float64Array;
}

/** Histogram with `bins` equal-width bins over [lo, hi] (default: the data's range). Values outside are
 * clamped into the end bins; non-finite values are skipped. */
export function histogram(values: ArrayLike<number>, bins = 64, range?: [number, number]): Histogram {
  let [lo, hi] = range ?? [Infinity, -Infinity];
  if (!range) for (let i = 0; i < values.length; i++) { const v = values[i]; if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  if (!(hi > lo)) { lo = Number.isFinite(lo) ? lo - 0.5 : -0.5; hi = lo + 1; }
  const edges = new Float64Array(bins + 1);
  for (let b = 0; b <= bins; b++) edges[b] = lo + ((hi - lo) * b) / bins;
  const counts = new Float64Array(bins);
  const scale = bins / (hi - lo);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) continue;
    let b = Math.floor((v - lo) * scale);
    if (b < 0) b = 0; else if (b >= bins) b = bins - 1;
    counts[b]++;
  }
  return { edges, counts };
}
