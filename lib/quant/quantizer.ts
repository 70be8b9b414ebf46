import { LoralabError } from "../errors.js";
import { roundToF16 } from "../tensor/half.js";

/** How a group's scale and zero are found:
 * - "gptq": §4.2 — the range always contains 0; `sym` fixes the zero at 2^(b−1);
 * - "minmax": §4.1 — AWQ's asymmetric min-max (range not forced to include 0). */
export type QuantRule = "gptq" | "minmax";

export const SUPPORTED_BITS = [2, 3, 4, 8] as const;
export type Bits = (typeof SUPPORTED_BITS)[number];

export interface QuantSpec {
  bits: Bits;
  /** −1 = one group per row (G = K) */
  groupSize: number;
  sym: boolean;
  rule: QuantRule;
}

/** A quantized (N×K) linear weight: integer codes, per-(row, group) scales (already rounded to fp16)
 * and zeros, and each input column's group (`gIdx`, trivial `k / G` unless act-order). Dequantized
 * weight: `w[n,k] = scales[n·nGroups + gIdx[k]] · (codes[n·K + k] − zeros[n·nGroups + gIdx[k]])`. */
export interface QuantizedMatrix {
  N: number;
  K: number;
  bits: Bits;
  /** effective group size (K when the spec said −1) */
  groupSize: number;
  sym: boolean;
  codes: Uint8Array;
  scales: Float32Array;
  zeros: Uint8Array;
  gIdx: Int32Array;
}

export function nGroups(K: number, groupSize: number): number {
  return Math.ceil(K / effectiveGroupSize(K, groupSize));
}

export function effectiveGroupSize(K: number, groupSize: number): number {
  return groupSize === -1 ? K : groupSize;
}

/** Checks bits and group size before any work (the CLI's early validation uses it too). */
export function checkSpec(spec: QuantSpec): void {
  if (!(SUPPORTED_BITS as readonly number[]).includes(spec.bits)) throw new LoralabError(`--bits must be one of ${SUPPORTED_BITS.join(", ")}, got ${spec.bits}`);
  if (!(spec.groupSize === -1 || (Number.isInteger(spec.groupSize) && spec.groupSize > 0)))
    throw new LoralabError(`--group-size must be -1 or a positive integer, got ${spec.groupSize}`);
}

/** 1.5·2⁵²: for |x| < 2⁵¹, x + RNE lies where doubles have no fraction bits, so the addition itself rounds
 * x to the nearest integer, ties to even, and subtracting RNE again is exact. Hot loops use it inline:
 * their results are clamped to [0, maxq], which larger |x| reach either way. */
export const RNE = 1.5 * 2 ** 52;

/** torch.round: half to even. */
export function roundHalfEven(x: number): number {
  if (Math.abs(x) < 2 ** 51) return x + RNE - RNE || x * 0; // a zero keeps x's sign, as torch's does
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The smallest positive fp16 value: a scale never rounds to zero (that would divide by zero). */
const MIN_F16 = 2 ** -24;

/** Scale (fp16-rounded, §4.4) and zero for one group given its min and max. Returns the zero; the
 * scale goes to `out[0]`. */
export function groupParams(min: number, max: number, bits: number, sym: boolean, rule: QuantRule, out: Float64Array): number {
  const maxq = (1 << bits) - 1;
  let s: number;
  let z: number;
  if (rule === "minmax") {
    s = Math.max(roundToF16(Math.max(max - min, 1e-5) / maxq), MIN_F16);
    z = Math.min(Math.max(-roundHalfEven(min / s), 0), maxq);
  } else {
    let xmin = Math.min(min, 0);
    let xmax = Math.max(max, 0);
    if (sym) {
      xmax = Math.max(-xmin, xmax);
      if (xmin < 0) xmin = -xmax;
    }
    if (xmin === 0 && xmax === 0) {
      xmin = -1;
      xmax = 1;
    }
    s = Math.max(roundToF16((xmax - xmin) / maxq), MIN_F16);
    z = sym ? (maxq + 1) / 2 : Math.min(Math.max(roundHalfEven(-xmin / s), 0), maxq);
  }
  out[0] = s;
  return z;
}

/** One weight's code: `clamp(round(w/s) + z, 0, maxq)`. */
export function quantCode(w: number, s: number, z: number, maxq: number): number {
  const q = roundHalfEven(w / s) + z;
  return q < 0 ? 0 : q > maxq ? maxq : q;
}

/** Round-to-nearest quantization of a row-major (N×K) float32 weight, groups along K (§4.3). The last
 * group may be shorter when G does not divide K (writers refuse such modules; the math does not). */
export function quantizeRtn(W: Float32Array, N: number, K: number, spec: QuantSpec): QuantizedMatrix {
  checkSpec(spec);
  const G = effectiveGroupSize(K, spec.groupSize);
  const ng = Math.ceil(K / G);
  const maxq = (1 << spec.bits) - 1;
  const codes = new Uint8Array(N * K);
  const scales = new Float32Array(N * ng);
  const zeros = new Uint8Array(N * ng);
  const sOut = new Float64Array(1);
  for (let n = 0; n < N; n++) {
    const row = n * K;
    for (let g = 0; g < ng; g++) {
      const k0 = g * G;
      const k1 = Math.min(K, k0 + G);
      let min = Infinity;
      let max = -Infinity;
      for (let k = k0; k < k1; k++) {
        const w = W[row + k];
        if (w < min) min = w;
        if (w > max) max = w;
      }
      const z = groupParams(min, max, spec.bits, spec.sym, spec.rule, sOut);
      const s = sOut[0];
      scales[n * ng + g] = s;
      zeros[n * ng + g] = z;
      for (let k = k0; k < k1; k++) {
        // w·(1/s) may differ from w/s in the last bit; use the division so codes match the reference
        const q = W[row + k] / s + RNE - RNE + z; // round half to even (see RNE)
        codes[row + k] = q < 0 ? 0 : q > maxq ? maxq : q;
      }
    }
  }
  return { N, K, bits: spec.bits, groupSize: G, sym: spec.sym, codes, scales, zeros, gIdx: trivialGIdx(K, G) };
}

/** `dequantize(quantizeRtn(W·diag(c), …))·diag(c)⁻¹` into `out` in one pass per group, without the codes
 * or the scaled and dequantized copies (the same float32 roundings, so the same values); `c` (per input
 * column) is optional. For searches that only need the candidate weights (AWQ's scales and clipping). */
export function fakeQuantizeRtn(W: Float32Array, N: number, K: number, spec: QuantSpec, out: Float32Array, c?: Float32Array): Float32Array {
  checkSpec(spec);
  const G = effectiveGroupSize(K, spec.groupSize);
  const maxq = (1 << spec.bits) - 1;
  const sOut = new Float64Array(1);
  const v = new Float32Array(G);
  for (let n = 0; n < N; n++) {
    const row = n * K;
    for (let k0 = 0; k0 < K; k0 += G) {
      const len = Math.min(G, K - k0);
      let min = Infinity, max = -Infinity;
      for (let j = 0; j < len; j++) {
        const w = c ? (v[j] = W[row + k0 + j] * c[k0 + j]) : (v[j] = W[row + k0 + j]);
        if (w < min) min = w;
        if (w > max) max = w;
      }
      const z = groupParams(min, max, spec.bits, spec.sym, spec.rule, sOut);
      const sc = sOut[0];
      for (let j = 0; j < len; j++) {
        const q = v[j] / sc + RNE - RNE + z;
        const code = q >= 0 ? (q > maxq ? maxq : q) : 0; // as a Uint8Array stores it (NaN → 0)
        const d = Math.fround(sc * (code - z));
        out[row + k0 + j] = c ? d / c[k0 + j] : d;
      }
    }
  }
  return out;
}

export function trivialGIdx(K: number, G: number): Int32Array {
  const g = new Int32Array(K);
  for (let k = 0; k < K; k++) g[k] = Math.floor(k / G);
  return g;
}

/** The dequantized (N×K) float32 weight. */
export function dequantize(q: QuantizedMatrix, out = new Float32Array(q.N * q.K)): Float32Array {
  const { N, K, codes, scales, zeros, gIdx } = q;
  const ng = q.scales.length / N;
  const G = q.groupSize;
  const contiguous = gIdx.every((g, k) => g === Math.floor(k / G));
  for (let n = 0; n < N; n++) {
    const row = n * K;
    const gRow = n * ng;
    if (contiguous) {
      // groups in order (no act-order): one scale and zero per run of G weights
      for (let g = 0, k0 = 0; k0 < K; g++, k0 += G) {
        const s = scales[gRow + g], z = zeros[gRow + g];
        for (let k = row + k0, end = row + Math.min(K, k0 + G); k < end; k++) out[k] = s * (codes[k] - z);
      }
      continue;
    }
    for (let k = 0; k < K; k++) {
      const g = gRow + gIdx[k];
      out[row + k] = scales[g] * (codes[row + k] - zeros[g]);
    }
  }
  return out;
}

/** ‖W − Ŵ‖ / ‖W‖ (Frobenius). */
export function relativeError(W: Float32Array, What: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < W.length; i++) {
    const d = W[i] - What[i];
    num += d * d;
    den += W[i] * W[i];
  }
  return den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den);
}

/** `relativeError(W, dequantize(q))` in one pass, without the dequantized copy (same float32 Ŵ values). */
export function quantizationError(W: Float32Array, q: QuantizedMatrix): number {
  const { N, K, codes, scales, zeros, gIdx, groupSize: G } = q;
  const ng = scales.length / N;
  const contiguous = gIdx.every((g, k) => g === Math.floor(k / G));
  let num = 0;
  let den = 0;
  for (let n = 0; n < N; n++) {
    const row = n * K, gRow = n * ng;
    if (contiguous) {
      // group by group: the scale and zero stay in registers
      for (let g = 0; g < ng; g++) {
        const sc = scales[gRow + g], z = zeros[gRow + g], end = row + Math.min(K, (g + 1) * G);
        for (let i = row + g * G; i < end; i++) {
          const w = W[i], d = w - Math.fround(sc * (codes[i] - z));
          num += d * d;
          den += w * w;
        }
      }
    } else {
      for (let k = 0; k < K; k++) {
        const g = gRow + gIdx[k], w = W[row + k];
        const d = w - Math.fround(scales[g] * (codes[row + k] - zeros[g]));
        num += d * d;
        den += w * w;
      }
    }
  }
  return den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den);
}

/** Throws a LoralabError naming the tensor when any weight is NaN or infinite. */
export function assertFinite(W: Float32Array, name: string): void {
  // x − x is NaN exactly for NaN and ±Inf: branch-free sums over the tensor (four, so the adds do not wait
  // on each other), the search only on failure
  let p0 = 0, p1 = 0, p2 = 0, p3 = 0;
  const n4 = W.length & ~3;
  for (let i = 0; i < n4; i += 4) {
    p0 += W[i] - W[i];
    p1 += W[i + 1] - W[i + 1];
    p2 += W[i + 2] - W[i + 2];
    p3 += W[i + 3] - W[i + 3];
  }
  for (let i = n4; i < W.length; i++) p0 += W[i] - W[i];
  if (p0 + p1 + p2 + p3 === 0) return;
  const i = W.findIndex((x) => !Number.isFinite(x));
  throw new LoralabError(`tensor '${name}' holds a non-finite weight (${W[i]}) at flat index ${i}; refusing to quantize`);
}
