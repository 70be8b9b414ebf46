/** AWQ (SPEC §6.2): activation-aware per-channel scale search over a 20-point grid per scaling group
 * (duo scaling, as AutoAWQ), and the clipping search; quantization is min-max asymmetric (§4.1). The
 * caller supplies the forward that measures a candidate's output error (a layer run on ORT). */
import { RtnKernel } from "./rtn-kernel.js";
import type { OrtMath } from "./ort-math.js";
import { type Bits, fakeQuantizeRtn } from "./quantizer.js";

export const N_GRID = 20;

/** mean over tokens of |x[:, c]| for x (T × K). */
export function meanAbsColumns(x: Float32Array, T: number, K: number): Float64Array {
  const m = new Float64Array(K);
  for (let t = 0; t < T; t++) {
    const o = t * K;
    for (let c = 0; c < K; c++) m[c] += Math.abs(x[o + c]);
  }
  for (let c = 0; c < K; c++) m[c] /= T;
  return m;
}

/** w_mean[c]: mean over all rows of the group's linears of |w| / (absmax of its quantization group + 1e-6). */
export function weightMeanColumns(weights: { W: Float32Array; N: number }[], K: number, G: number): Float64Array {
  const m = new Float64Array(K);
  let rows = 0;
  for (const { W, N } of weights) {
    for (let n = 0; n < N; n++) {
      const o = n * K;
      for (let g0 = 0; g0 < K; g0 += G) {
        let amax = 0;
        for (let k = g0; k < g0 + G; k++) amax = Math.max(amax, Math.abs(W[o + k]));
        const inv = 1 / (amax + 1e-6);
        for (let k = g0; k < g0 + G; k++) m[k] += Math.abs(W[o + k]) * inv;
      }
    }
    rows += N;
  }
  for (let c = 0; c < K; c++) m[c] /= rows;
  return m;
}

/** The candidate scale for grid point `ratio` (duo scaling), normalised by sqrt(max·min). */
export function candidateScales(xMean: Float64Array, wMean: Float64Array, ratio: number): Float32Array {
  const K = xMean.length;
  const s = new Float32Array(K);
  let mx = -Infinity, mn = Infinity;
  for (let c = 0; c < K; c++) {
    const v = Math.max(Math.pow(xMean[c], ratio) / (Math.pow(wMean[c], 1 - ratio) + 1e-4), 1e-4);
    s[c] = v;
    if (v > mx) mx = v;
    if (v < mn) mn = v;
  }
  const norm = Math.sqrt(mx * mn);
  for (let c = 0; c < K; c++) {
    const v = s[c] / norm;
    s[c] = Number.isFinite(v) ? v : 1;
  }
  return s;
}

/** Q(W·diag(s))·diag(s)⁻¹: what the scaled linear computes on unscaled inputs. */
export function pseudoQuantScaled(W: Float32Array, N: number, K: number, s: Float32Array, bits: Bits, groupSize: number, out = new Float32Array(N * K)): Float32Array {
  return fakeQuantizeRtn(W, N, K, { bits, groupSize, sym: false, rule: "minmax" }, out, s);
}

export interface ScaleSearchResult {
  scales: Float32Array;
  loss: number;
  ratio: number;
}

/** Grid search of the per-input-channel scale for one scaling group. `lossOf` gets the candidate
 * weights (same order as `linears`, original basis) and returns the output MSE against full precision. */
export async function searchScales(
  linears: { W: Float32Array; N: number }[],
  K: number,
  xMean: Float64Array,
  bits: Bits,
  groupSize: number,
  lossOf: (candidates: Float32Array[]) => Promise<number>,
): Promise<ScaleSearchResult> {
  const G = groupSize === -1 ? K : groupSize;
  const wMean = weightMeanColumns(linears, K, G);
  // the candidates on the WebAssembly kernel where it takes the shape (same values as pseudoQuantScaled)
  const fqs = linears.map(({ W, N }) => RtnKernel.create(W, N, K, groupSize, "dequantized"));
  const cands = linears.map(({ N }) => new Float32Array(N * K));
  let best: ScaleSearchResult | undefined;
  try {
    for (let i = 0; i < N_GRID; i++) {
      const ratio = i / N_GRID;
      const s = candidateScales(xMean, wMean, ratio);
      for (let j = 0; j < linears.length; j++) {
        const { W, N } = linears[j];
        if (fqs[j]) await fqs[j]!.dequantized(cands[j], bits, { c: s });
        else pseudoQuantScaled(W, N, K, s, bits, groupSize, cands[j]);
      }
      const loss = await lossOf(cands);
      if (!best || loss < best.loss) best = { scales: s, loss, ratio };
    }
  } finally {
    for (const f of fqs) f?.release();
  }
  return best!;
}

/** Clipping search (AutoAWQ `_compute_best_clip`) on a scaled weight with scaled inputs `x` (T × K):
 * per (output channel, group) the max |w| kept among org_max·(1 − i/20), i < 10, minimising the mean
 * squared error of the group's partial dot products over every ⌊T/512⌋-th token. The error of a
 * candidate Q is that of the partial products of Q − W (linear), one batched MatMul on ORT (JavaScript
 * below 4 M multiply-adds or without `math`). Clamps W in place; returns the chosen max per (n, group). */
export async function clipSearch(W: Float32Array, N: number, K: number, x: Float32Array, T: number, bits: Bits, groupSize: number, math?: OrtMath): Promise<Float32Array> {
  const G = groupSize === -1 ? K : groupSize;
  const ng = K / G;
  const step = Math.max(1, Math.floor(T / 512));
  const tokens: number[] = [];
  for (let t = 0; t < T; t += step) tokens.push(t);
  const Ts = tokens.length;
  const orgMax = new Float32Array(N * ng);
  for (let n = 0; n < N; n++) for (let g = 0; g < ng; g++) {
    let m = 0;
    for (let k = g * G; k < (g + 1) * G; k++) m = Math.max(m, Math.abs(W[n * K + k]));
    orgMax[n * ng + g] = m;
  }
  const useOrt = math !== undefined && Ts * N * K >= 1 << 22;
  // sampled inputs as (groups, tokens, G) for the batched product
  const Xg = new Float32Array(ng * Ts * G);
  for (let g = 0; g < ng; g++) for (let ti = 0; ti < Ts; ti++) Xg.set(x.subarray(tokens[ti] * K + g * G, tokens[ti] * K + (g + 1) * G), (g * Ts + ti) * G);
  /** err[n·ng + g] for a candidate's dequantized weight */
  const errors = async (q: Float32Array): Promise<ArrayLike<number>> => {
    if (useOrt) {
      const E = await math!.groupedSquaredMean(Xg, q, W, ng, Ts, G, N);
      const out = new Float32Array(N * ng);
      for (let g = 0; g < ng; g++) for (let n = 0; n < N; n++) out[n * ng + g] = E[g * N + n];
      return out;
    }
    const out = new Float64Array(N * ng);
    for (let g = 0; g < ng; g++) for (let ti = 0; ti < Ts; ti++) {
      const xo = (g * Ts + ti) * G;
      for (let n = 0; n < N; n++) {
        const wo = n * K + g * G;
        let acc = 0;
        for (let j = 0; j < G; j++) acc += Xg[xo + j] * (q[wo + j] - W[wo + j]);
        out[n * ng + g] += (acc * acc) / Ts;
      }
    }
    return out;
  };
  const bestErr = new Float64Array(N * ng).fill(Infinity);
  const bestMax = Float32Array.from(orgMax);
  const candidate = new Float32Array(N * K), clip = new Float32Array(N * ng);
  // the candidates on the WebAssembly kernel where it takes the shape (same values as the clamp below)
  const fq = RtnKernel.create(W, N, K, G, "dequantized");
  try {
    for (let i = 0; i < N_GRID / 2; i++) {
      const f = 1 - i / N_GRID;
      for (let c = 0; c < N * ng; c++) clip[c] = orgMax[c] * f;
      if (fq) await fq.dequantized(candidate, bits, { clip });
      else {
        for (let n = 0; n < N; n++) for (let g = 0; g < ng; g++) {
          const mv = clip[n * ng + g];
          for (let k = n * K + g * G; k < n * K + (g + 1) * G; k++) candidate[k] = W[k] > mv ? mv : W[k] < -mv ? -mv : W[k];
        }
        fakeQuantizeRtn(candidate, N, K, { bits, groupSize: G, sym: false, rule: "minmax" }, candidate);
      }
      const err = await errors(candidate);
      for (let c = 0; c < N * ng; c++) {
        if (err[c] < bestErr[c]) {
          bestErr[c] = err[c];
          bestMax[c] = orgMax[c] * f;
        }
      }
    }
  } finally {
    fq?.release();
  }
  for (let n = 0; n < N; n++) for (let g = 0; g < ng; g++) {
    const mv = bestMax[n * ng + g];
    for (let k = g * G; k < (g + 1) * G; k++) {
      const w = W[n * K + k];
      W[n * K + k] = w > mv ? mv : w < -mv ? -mv : w;
    }
  }
  return bestMax;
}
