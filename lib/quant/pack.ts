/** Bit layouts of every writer (SPEC §7.2, §8.2, §9.2, §11.2), as pure functions over the integer codes
 * of a QuantizedMatrix. Each pack has an unpack so round trips can be checked exactly. */
import { f16ToF32, f32ToF16, f32ToF16Bits } from "../tensor/half.js";
import type { Bits, QuantizedMatrix } from "./quantizer.js";

// ---------------------------------------------------------------------------------------------------
// Generic LSB-first bitstream over 32-bit words: value j sits at bits [b·j, b·j + b) of the stream. For
// b = 2, 4, 8 this is "element j of word r at bits·j"; for b = 3 it is AutoGPTQ's 32-values-in-3-words
// pattern (values 10 and 21 straddle word boundaries).

/** Writes `count` codes (read through `at(i)`) into `out[outOffset + r·stride]`, r = word index. */
function packStream(count: number, bits: number, at: (i: number) => number, out: Int32Array, outOffset: number, stride: number): void {
  const mask = (1 << bits) - 1;
  for (let i = 0; i < count; i++) {
    const v = at(i) & mask; // every field masked (§7.3)
    const bit = i * bits;
    const word = bit >>> 5;
    const shift = bit & 31;
    out[outOffset + word * stride] |= v << shift;
    if (shift + bits > 32) out[outOffset + (word + 1) * stride] |= v >>> (32 - shift);
  }
}

function unpackStream(count: number, bits: number, src: Int32Array, srcOffset: number, stride: number, put: (i: number, v: number) => void): void {
  const mask = (1 << bits) - 1;
  for (let i = 0; i < count; i++) {
    const bit = i * bits;
    const word = bit >>> 5;
    const shift = bit & 31;
    let v = src[srcOffset + word * stride] >>> shift;
    if (shift + bits > 32) v |= src[srcOffset + (word + 1) * stride] << (32 - shift);
    put(i, v & mask);
  }
}

/** Whether `count` codes of `bits` fill whole int32 words. */
export function packsIntoWords(count: number, bits: number): boolean {
  return (count * bits) % 32 === 0;
}

// ---------------------------------------------------------------------------------------------------
// GPTQ (§7): qweight (K·b/32, N) packed along K, qzeros (n_g, N·b/32) packed along N holding z − 1 (v1),
// scales (n_g, N) fp16, g_idx (K,) int32.

export interface GptqTensors {
  qweight: Int32Array;
  qzeros: Int32Array;
  /** fp16 bit patterns, (n_g, N) */
  scales: Uint16Array;
  gIdx: Int32Array;
  shapes: { qweight: [number, number]; qzeros: [number, number]; scales: [number, number]; gIdx: [number] };
}

export function packGptq(q: QuantizedMatrix): GptqTensors {
  const { N, K, bits, codes, zeros } = q;
  const ng = q.scales.length / N;
  const kw = (K * bits) / 32;
  const nw = (N * bits) / 32;
  const qweight = new Int32Array(kw * N);
  for (let n = 0; n < N; n++) packStream(K, bits, (k) => codes[n * K + k], qweight, n, N);
  const qzeros = new Int32Array(ng * nw);
  for (let g = 0; g < ng; g++) packStream(N, bits, (n) => zeros[n * ng + g] - 1, qzeros, g * nw, 1);
  const scalesT = new Float32Array(ng * N);
  for (let n = 0; n < N; n++) for (let g = 0; g < ng; g++) scalesT[g * N + n] = q.scales[n * ng + g];
  return {
    qweight,
    qzeros,
    scales: f32ToF16(scalesT),
    gIdx: q.gIdx,
    shapes: { qweight: [kw, N], qzeros: [ng, nw], scales: [ng, N], gIdx: [K] },
  };
}

/** Reads GPTQ tensors back (v1 zeros: `z = (stored + 1) & maxq`). `N`, `K` from the scales/g_idx shapes. */
export function unpackGptq(t: Pick<GptqTensors, "qweight" | "qzeros" | "scales" | "gIdx">, N: number, K: number, bits: Bits, sym: boolean, checkpointFormat: "gptq" | "gptq_v2" = "gptq"): QuantizedMatrix {
  const ng = t.scales.length / N;
  const nw = (N * bits) / 32;
  const maxq = (1 << bits) - 1;
  const codes = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) unpackStream(K, bits, t.qweight, n, N, (k, v) => (codes[n * K + k] = v));
  const zeros = new Uint8Array(N * ng);
  const offset = checkpointFormat === "gptq" ? 1 : 0;
  for (let g = 0; g < ng; g++) unpackStream(N, bits, t.qzeros, g * nw, 1, (n, v) => (zeros[n * ng + g] = (v + offset) & maxq));
  const scalesT = f16ToF32(t.scales);
  const scales = new Float32Array(N * ng);
  for (let n = 0; n < N; n++) for (let g = 0; g < ng; g++) scales[n * ng + g] = scalesT[g * N + n];
  const groupSize = Math.ceil(K / ng); // with act-order the groups are permuted but keep this size
  return { N, K, bits, groupSize, sym, codes, scales, zeros, gIdx: Int32Array.from(t.gIdx) };
}

// ---------------------------------------------------------------------------------------------------
// AutoAWQ GEMM (§8): qweight (K, N/8) and qzeros (K/G, N/8) packed along N in the order [0,2,4,6,1,3,5,7];
// raw zeros; scales (K/G, N) fp16. 4-bit only, groups contiguous.

export const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7] as const;

export interface AwqTensors {
  qweight: Int32Array;
  qzeros: Int32Array;
  scales: Uint16Array;
  shapes: { qweight: [number, number]; qzeros: [number, number]; scales: [number, number] };
}

function packAwqRow(get: (n: number) => number, N: number, out: Int32Array, offset: number): void {
  for (let c = 0; c < N / 8; c++) {
    let word = 0;
    for (let i = 0; i < 8; i++) word |= (get(8 * c + AWQ_ORDER[i]) & 0xf) << (4 * i);
    out[offset + c] = word;
  }
}

function unpackAwqRow(src: Int32Array, offset: number, N: number, put: (n: number, v: number) => void): void {
  for (let c = 0; c < N / 8; c++) {
    const word = src[offset + c];
    for (let i = 0; i < 8; i++) put(8 * c + AWQ_ORDER[i], (word >>> (4 * i)) & 0xf);
  }
}

export function packAwq(q: QuantizedMatrix): AwqTensors {
  const { N, K, codes, zeros } = q;
  const ng = q.scales.length / N;
  const nw = N / 8;
  const qweight = new Int32Array(K * nw);
  for (let k = 0; k < K; k++) packAwqRow((n) => codes[n * K + k], N, qweight, k * nw);
  const qzeros = new Int32Array(ng * nw);
  for (let g = 0; g < ng; g++) packAwqRow((n) => zeros[n * ng + g], N, qzeros, g * nw);
  const scalesT = new Float32Array(ng * N);
  for (let n = 0; n < N; n++) for (let g = 0; g < ng; g++) scalesT[g * N + n] = q.scales[n * ng + g];
  return { qweight, qzeros, scales: f32ToF16(scalesT), shapes: { qweight: [K, nw], qzeros: [ng, nw], scales: [ng, N] } };
}

export function unpackAwq(t: Pick<AwqTensors, "qweight" | "qzeros" | "scales">, N: number, K: number): QuantizedMatrix {
  const ng = t.scales.length / N;
  const nw = N / 8;
  const codes = new Uint8Array(N * K);
  for (let k = 0; k < K; k++) unpackAwqRow(t.qweight, k * nw, N, (n, v) => (codes[n * K + k] = v));
  const zeros = new Uint8Array(N * ng);
  for (let g = 0; g < ng; g++) unpackAwqRow(t.qzeros, g * nw, N, (n, v) => (zeros[n * ng + g] = v));
  const scalesT = f16ToF32(t.scales);
  const scales = new Float32Array(N * ng);
  for (let n = 0; n < N; n++) for (let g = 0; g < ng; g++) scales[n * ng + g] = scalesT[g * N + n];
  const G = K / ng;
  const gIdx = new Int32Array(K);
  for (let k = 0; k < K; k++) gIdx[k] = Math.floor(k / G);
  return { N, K, bits: 4, groupSize: G, sym: false, codes, scales, zeros, gIdx };
}

// ---------------------------------------------------------------------------------------------------
// ORT com.microsoft.MatMulNBits (§9): B uint8 (N, k_blocks, block·bits/8), codes LSB-first within a byte;
// scales (N·k_blocks) float; zero points packed (N, ceil(k_blocks·bits/8)) with unused slots = 2^(bits−1).

export interface MatMulNBitsTensors {
  B: Uint8Array;
  scales: Float32Array;
  zeroPoints: Uint8Array;
  blockSize: number;
  kBlocks: number;
  shapes: { B: [number, number, number]; scales: [number]; zeroPoints: [number] };
}

/** Block size MatMulNBits needs (a power of two ≥ 16); the group size must be one. */
export function isMatMulNBitsBlock(b: number): boolean {
  return b >= 16 && (b & (b - 1)) === 0;
}

export function packMatMulNBits(q: QuantizedMatrix): MatMulNBitsTensors {
  const { N, K, bits, codes } = q;
  const blockSize = q.groupSize;
  const kBlocks = Math.ceil(K / blockSize);
  if (q.scales.length !== N * kBlocks) throw new Error("internal: MatMulNBits needs one scale per (row, block)");
  const blob = (blockSize * bits) / 8;
  const perByte = 8 / bits;
  const B = new Uint8Array(N * kBlocks * blob);
  // act-order columns are not expressible: writers re-order K before packing (see gIdx check there).
  // Byte j of a row holds codes j·perByte … (j+1)·perByte − 1, the first in the low bits; K's tail is zero.
  const full = Math.floor(K / perByte);
  for (let n = 0; n < N; n++) {
    const base = n * kBlocks * blob, row = n * K;
    if (bits === 8) B.set(codes.subarray(row, row + K), base);
    else if (bits === 4) for (let j = 0, k = row; j < full; j++, k += 2) B[base + j] = codes[k] | (codes[k + 1] << 4);
    else
      for (let j = 0, k = row; j < full; j++) {
        let v = 0;
        for (let u = 0; u < perByte; u++, k++) v |= codes[k] << (bits * u);
        B[base + j] = v;
      }
    for (let k = full * perByte; k < K; k++) B[base + full] |= codes[row + k] << (bits * (k % perByte));
  }
  const zpBytes = Math.ceil((kBlocks * bits) / 8);
  const zeroPoints = new Uint8Array(N * zpBytes);
  const pad = 1 << (bits - 1);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < zpBytes * perByte; b++) {
      const z = b < kBlocks ? q.zeros[n * kBlocks + b] : pad;
      zeroPoints[n * zpBytes + Math.floor(b / perByte)] |= z << (bits * (b % perByte));
    }
  }
  return {
    B,
    scales: Float32Array.from(q.scales),
    zeroPoints,
    blockSize,
    kBlocks,
    shapes: { B: [N, kBlocks, blob], scales: [N * kBlocks], zeroPoints: [N * zpBytes] },
  };
}

export function unpackMatMulNBits(t: Pick<MatMulNBitsTensors, "B" | "scales" | "zeroPoints">, N: number, K: number, bits: Bits, blockSize: number): QuantizedMatrix {
  const kBlocks = Math.ceil(K / blockSize);
  const blob = (blockSize * bits) / 8;
  const perByte = 8 / bits;
  const mask = (1 << bits) - 1;
  const codes = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) {
    const base = n * kBlocks * blob;
    for (let k = 0; k < K; k++) codes[n * K + k] = (t.B[base + Math.floor(k / perByte)] >> (bits * (k % perByte))) & mask;
  }
  const zpBytes = Math.ceil((kBlocks * bits) / 8);
  const zeros = new Uint8Array(N * kBlocks);
  for (let n = 0; n < N; n++) for (let b = 0; b < kBlocks; b++) zeros[n * kBlocks + b] = (t.zeroPoints[n * zpBytes + Math.floor(b / perByte)] >> (bits * (b % perByte))) & mask;
  const gIdx = new Int32Array(K);
  for (let k = 0; k < K; k++) gIdx[k] = Math.floor(k / blockSize);
  return { N, K, bits, groupSize: blockSize, sym: false, codes, scales: Float32Array.from(t.scales), zeros, gIdx };
}

// ---------------------------------------------------------------------------------------------------
// ggml Q4_0 / Q8_0 (§11.2): blocks of 32 along each row. Both are symmetric with an fp16 scale `d`:
// Q4_0 {f16 d; u8 qs[16]} byte j = code[j] | code[j+16] << 4, value (code − 8)·d;
// Q8_0 {f16 d; i8 qs[32]}, value qs·d. GPTQ-rule symmetric codes (z = 8 / 128, G = 32) map onto them exactly.

export const GGML_BLOCK = 32;
export const Q4_0_BYTES = 18;
export const Q8_0_BYTES = 34;

/** Encodes symmetric codes (zero 2^(b−1), groups of 32, b = 4 or 8) as ggml Q4_0 / Q8_0 blocks. */
export function packGgml(q: QuantizedMatrix): Uint8Array {
  const { N, K, bits, codes } = q;
  const nb = K / GGML_BLOCK;
  const bytes = bits === 4 ? Q4_0_BYTES : Q8_0_BYTES;
  const out = new Uint8Array(N * nb * bytes);
  const zero = 1 << (bits - 1);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nb; b++) {
      const o = (n * nb + b) * bytes;
      const d = f32ToF16Bits(q.scales[n * nb + b]);
      out[o] = d & 0xff;
      out[o + 1] = d >>> 8;
      const c = n * K + b * GGML_BLOCK;
      if (bits === 4) for (let j = 0; j < 16; j++) out[o + 2 + j] = codes[c + j] | (codes[c + j + 16] << 4);
      else for (let j = 0; j < 32; j++) out[o + 2 + j] = (codes[c + j] - zero) & 0xff;
    }
  }
  return out;
}

/** Decodes Q4_0 (bits 4) or Q8_0 (bits 8) rows of length K back into codes/scales (zero 8 / 128). */
export function unpackGgml(data: Uint8Array, N: number, K: number, bits: 4 | 8): QuantizedMatrix {
  const nb = K / GGML_BLOCK;
  const bytes = bits === 4 ? Q4_0_BYTES : Q8_0_BYTES;
  const codes = new Uint8Array(N * K);
  const dBits = new Uint16Array(N * nb);
  const zero = 1 << (bits - 1);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nb; b++) {
      const o = (n * nb + b) * bytes;
      dBits[n * nb + b] = data[o] | (data[o + 1] << 8);
      const c = n * K + b * GGML_BLOCK;
      if (bits === 4) {
        for (let j = 0; j < 16; j++) {
          codes[c + j] = data[o + 2 + j] & 0xf;
          codes[c + j + 16] = data[o + 2 + j] >> 4;
        }
      } else for (let j = 0; j < 32; j++) codes[c + j] = (((data[o + 2 + j] << 24) >> 24) + zero) & 0xff;
    }
  }
  const gIdx = new Int32Array(K);
  for (let k = 0; k < K; k++) gIdx[k] = Math.floor(k / GGML_BLOCK);
  return { N, K, bits, groupSize: GGML_BLOCK, sym: true, codes, scales: f16ToF32(dBits), zeros: new Uint8Array(N * nb).fill(zero), gIdx };
}
