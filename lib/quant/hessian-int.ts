/** GPTQ's XᵀX from exact integer products (ONNX Runtime's u8×s8 MatMulInteger: ~5× its float32 MatMul
 * on CPUs with VNNI). Each input column j of a batch goes on a 14-bit fixed-point grid,
 *   q = round(x · R / max|x_j|),  R = 8127,  split as q = 128·h + l  (h, l ∈ [−64, 64]),
 * and with s = h + l (a byte too) the Gram of q is three int8 Grams, each summed exactly in int32:
 *   Σ q_i q_j = 2¹⁴·Σ h_i h_j + 2⁷·(Σ s_i s_j − Σ h_i h_j − Σ l_i l_j) + Σ l_i l_j.
 * So the sum is the exact Gram of the inputs rounded to the grid: a step of max|x_j|/8127, finer than
 * bfloat16's rounding (the activations GPTQ usually calibrates on) for every element above 1/30 of its
 * column's maximum; the rounding is unbiased and averages out over the tokens of a sum. Measured against
 * float64: 7e-6 of the Hessian's norm on synthetic inputs, 1e-5–7e-5 on stories260K's activations —
 * over 100× below GPTQ's 1% damping.
 *
 * Everything but the products runs on WebAssembly SIMD in one private (unshared) memory whose views ONNX
 * Runtime reads and writes without copies: the grid and byte planes (the unsigned ones written transposed,
 * as MatMulInteger's left side needs them), the int32 products, and the float32 upper triangle they are
 * combined into. Each column block of the triangle is one run: the rows above it times the block. */
import { type FuncDef, I32, S, V128, encodeModule, op, vconstI32, vload, vstore } from "../tensor/wasm.js";
import type { OrtMath } from "./ort-math.js";

/** the grid's largest magnitude: q = ±R splits into bytes, and so does any q within ±(R + 1) */
export const GRID = 8127;
/** tokens per integer run: Σ over tokens of a u8 (≤ 255) times an s8 (≥ −128) stays inside int32 */
export const MAX_INT_TOKENS = 32768;
/** rows per kernel call: V8 compiles a hot WebAssembly function with its optimizing tier while it runs,
 * and only later calls use that code */
const SLICE_ROWS = 256;
/** rows the split takes per column group (a multiple of 8): its transposed stores fill 16-byte runs of a line */
const BLOCK_ROWS = 16;

declare const WebAssembly: {
  Memory: new (d: { initial: number }) => { readonly buffer: ArrayBuffer };
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
};

const simd = op.simd;

/** `colmax(x, m, rows, K)`: m[j] = max(m[j], |x[t, j]|) over the rows (K a multiple of 4). */
function colmaxFunc(): FuncDef {
  const [x, m, rows, K] = [0, 1, 2, 3];
  const [mp, rowEnd] = [4, 5];
  const body = [
    ...op.loop,
    ...op.get(x), ...op.get(K), ...op.i32(4), ...op.i32Mul, ...op.i32Add, ...op.set(rowEnd), ...op.get(m), ...op.set(mp),
    ...op.loop,
    ...op.get(mp), ...op.get(mp), ...vload(0, 2), ...op.get(x), ...vload(0, 2), ...simd(S.f32x4Abs), ...simd(S.f32x4Pmax), ...vstore(0, 2),
    ...op.get(mp), ...op.i32(16), ...op.i32Add, ...op.set(mp),
    ...op.get(x), ...op.i32(16), ...op.i32Add, ...op.tee(x), ...op.get(rowEnd), ...op.i32Ne, ...op.brIf(0),
    ...op.end,
    ...op.get(rows), ...op.i32(1), ...op.i32Sub, ...op.tee(rows), ...op.brIf(0),
    ...op.end,
  ];
  return { params: [I32, I32, I32, I32], results: [], locals: [I32, I32], body, export: "colmax" };
}

/** `split(x, r, h, s, l, u, rows, groups, xStride, sStride, uGroup)` over `rows` rows (a multiple of
 * BLOCK_ROWS) and `groups` groups of 16 columns (x rows `xStride` bytes apart), BLOCK_ROWS rows at a time,
 * in each group eight rows per turn: q = round_half_even(x·r[j]), h = (q + 64) >> 7, l = q − 128h,
 * s = h + l. Stores int8 h, s, l (rows `sStride` bytes apart) and h, s, l + 128 as uint8 transposed —
 * column j, token t at u + j·T + t, the planes `plane` bytes apart: the eight rows' bytes are interleaved
 * in registers (three rounds of shuffles) so each column takes its eight tokens in one 64-bit store. T and
 * `plane` are compiled in as store offsets (a module per shape). */
function splitFunc(T: number, plane: number): FuncDef {
  const [x, r, ph, ps, pl, u, rows, groups, xStride, sStride, uGroup] = Array.from({ length: 11 }, (_, i) => i);
  const [group, cx, ch, cs, cl, cu, xr, cr, tile, gx, gh, gs, gl, gu] = Array.from({ length: 14 }, (_, i) => 11 + i);
  let next = 25;
  const v128 = (k: number) => Array.from({ length: k }, () => next++);
  const q = v128(1)[0], hv = v128(4), lv = v128(4), sv = v128(4);
  const rowsOut = [v128(8), v128(8), v128(8)]; // per plane h, s, l: the eight rows' 16 bytes
  const t1 = v128(8), t2 = v128(8), t3 = v128(8);
  const body: number[] = [];
  const emit = (...xs: number[][]) => { for (const a of xs) body.push(...a); };
  const narrow = (lanes: number[]) => emit(op.get(lanes[0]), op.get(lanes[1]), simd(S.i16x8NarrowI32x4S), op.get(lanes[2]), op.get(lanes[3]), simd(S.i16x8NarrowI32x4S), simd(S.i8x16NarrowI16x8S));
  const shuffle = (a: number, b: number, idx: number[]) => emit(op.get(a), op.get(b), simd(S.shuffle, ...idx));
  const lo8 = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23], hi8 = lo8.map((i) => i + 8);
  const lo16 = [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23], hi16 = lo16.map((i) => i + 8);
  const lo32 = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23], hi32 = lo32.map((i) => i + 8);
  emit(op.loop); // blocks of BLOCK_ROWS rows
  emit(op.get(x), op.set(gx), op.get(r), op.set(cr), op.get(ph), op.set(gh), op.get(ps), op.set(gs), op.get(pl), op.set(gl), op.get(u), op.set(gu), op.get(groups), op.set(group));
  emit(op.loop); // groups of 16 columns
  emit(op.get(gx), op.set(cx), op.get(gh), op.set(ch), op.get(gs), op.set(cs), op.get(gl), op.set(cl), op.get(gu), op.set(cu), op.i32(BLOCK_ROWS / 8), op.set(tile));
  emit(op.loop); // eight rows
  for (let k = 0; k < 8; k++) {
    emit(op.get(cx), op.get(xStride), op.i32(k), op.i32Mul, op.i32Add, op.set(xr));
    for (let i = 0; i < 4; i++) {
      emit(op.get(xr), vload(16 * i, 2), op.get(cr), vload(16 * i, 2), simd(S.f32x4Mul), simd(S.f32x4Nearest), simd(S.i32x4TruncSatF32x4S), op.tee(q));
      emit(vconstI32(64), simd(S.i32x4Add), op.i32(7), simd(S.i32x4ShrS), op.set(hv[i]));
      emit(op.get(q), op.get(hv[i]), op.i32(7), simd(S.i32x4Shl), simd(S.i32x4Sub), op.set(lv[i]));
      emit(op.get(hv[i]), op.get(lv[i]), simd(S.i32x4Add), op.set(sv[i]));
    }
    [hv, sv, lv].forEach((lanes, p) => {
      const at = [ch, cs, cl][p];
      narrow(lanes);
      emit(op.set(rowsOut[p][k]));
      emit(op.get(at), op.get(sStride), op.i32(k), op.i32Mul, op.i32Add, op.get(rowsOut[p][k]), vstore(0, 0));
    });
  }
  for (let p = 0; p < 3; p++) {
    const v = rowsOut[p];
    for (let k = 0; k < 8; k++) emit(op.get(v[k]), vconstI32(0x80808080 | 0), simd(S.xor), op.set(v[k]));
    // bytes of row pairs, then 16-bit pairs of those, then 32-bit: t3[g] holds columns 2g, 2g + 1, eight tokens each
    for (let k = 0; k < 4; k++) {
      shuffle(v[2 * k], v[2 * k + 1], lo8); emit(op.set(t1[2 * k]));
      shuffle(v[2 * k], v[2 * k + 1], hi8); emit(op.set(t1[2 * k + 1]));
    }
    for (const [o, a, b] of [[0, 0, 2], [4, 4, 6]]) {
      shuffle(t1[a], t1[b], lo16); emit(op.set(t2[o]));
      shuffle(t1[a], t1[b], hi16); emit(op.set(t2[o + 1]));
      shuffle(t1[a + 1], t1[b + 1], lo16); emit(op.set(t2[o + 2]));
      shuffle(t1[a + 1], t1[b + 1], hi16); emit(op.set(t2[o + 3]));
    }
    for (let k = 0; k < 4; k++) {
      shuffle(t2[k], t2[k + 4], lo32); emit(op.set(t3[2 * k]));
      shuffle(t2[k], t2[k + 4], hi32); emit(op.set(t3[2 * k + 1]));
    }
    for (let g = 0; g < 8; g++)
      for (let lane = 0; lane < 2; lane++) emit(op.get(cu), op.get(t3[g]), simd(S.store64Lane, 0, ...uleb32(p * plane + (2 * g + lane) * T), lane));
  }
  emit(op.get(cx), op.get(xStride), op.i32(8), op.i32Mul, op.i32Add, op.set(cx));
  for (const p of [ch, cs, cl]) emit(op.get(p), op.get(sStride), op.i32(8), op.i32Mul, op.i32Add, op.set(p));
  emit(op.get(cu), op.i32(8), op.i32Add, op.set(cu));
  emit(op.get(tile), op.i32(1), op.i32Sub, op.tee(tile), op.brIf(0));
  emit(op.end);
  emit(op.get(gx), op.i32(64), op.i32Add, op.set(gx), op.get(cr), op.i32(64), op.i32Add, op.set(cr));
  for (const p of [gh, gs, gl]) emit(op.get(p), op.i32(16), op.i32Add, op.set(p));
  emit(op.get(gu), op.get(uGroup), op.i32Add, op.set(gu));
  emit(op.get(group), op.i32(1), op.i32Sub, op.tee(group), op.brIf(0));
  emit(op.end);
  emit(op.get(x), op.get(xStride), op.i32(BLOCK_ROWS), op.i32Mul, op.i32Add, op.set(x));
  for (const p of [ph, ps, pl]) emit(op.get(p), op.get(sStride), op.i32(BLOCK_ROWS), op.i32Mul, op.i32Add, op.set(p));
  emit(op.get(u), op.i32(BLOCK_ROWS), op.i32Add, op.set(u));
  emit(op.get(rows), op.i32(BLOCK_ROWS), op.i32Sub, op.tee(rows), op.brIf(0));
  emit(op.end);
  return { params: Array<number>(11).fill(I32), results: [], locals: [...Array<number>(14).fill(I32), ...Array<number>(next - 25).fill(V128)], body, export: "split" };
}

/** memarg offsets are unsigned LEB128 (`op.i32` is signed) */
function uleb32(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** `combine(dst, hh, ss, ll, ci, cj, rows, cols, dstStride)`: for `rows` rows of `cols` (even) int32 sums,
 * dst[i, k] += ci[i]·cj[k]·((2¹⁴ − 2⁷)·hh + 2⁷·ss + (1 − 2⁷)·ll) — in float64 (the integer part exact),
 * rounded once to float32 as `dst[i] += y` does in JavaScript (dst rows `dstStride` bytes apart; ci, cj
 * float64). */
function combineFunc(): FuncDef {
  const [dst, hh, ss, ll, ci, cj, rows, cols, dstStride] = Array.from({ length: 9 }, (_, i) => i);
  const [d, cp, end] = [9, 10, 11];
  const [civ, y] = [12, 13];
  const body: number[] = [];
  const emit = (...xs: number[][]) => { for (const a of xs) body.push(...a); };
  const f64 = (v: number) => simd(S.const, ...new Uint8Array(new Float64Array([v, v]).buffer));
  const ints = (p: number) => [...op.get(p), ...simd(S.load64Zero, 3, 0), ...simd(S.f64x2ConvertLowI32x4S)];
  emit(op.loop); // rows
  emit(op.get(ci), op.f64Load(), simd(S.f64x2Splat), op.set(civ));
  emit(op.get(dst), op.set(d), op.get(cj), op.set(cp), op.get(dst), op.get(cols), op.i32(4), op.i32Mul, op.i32Add, op.set(end));
  emit(op.loop); // two columns
  emit(ints(hh), f64(16384 - 128), simd(S.f64x2Mul), ints(ss), f64(128), simd(S.f64x2Mul), simd(S.f64x2Add));
  emit(ints(ll), f64(1 - 128), simd(S.f64x2Mul), simd(S.f64x2Add));
  emit(op.get(civ), op.get(cp), vload(0, 3), simd(S.f64x2Mul), simd(S.f64x2Mul), op.set(y));
  emit(op.get(d), op.get(d), simd(S.load64Zero, 3, 0), simd(S.f64x2PromoteLow), op.get(y), simd(S.f64x2Add));
  emit(simd(S.f32x4DemoteF64x2Zero), simd(S.store64Lane, 3, 0, 0));
  for (const [p, by] of [[d, 8], [hh, 8], [ss, 8], [ll, 8], [cp, 16]]) emit(op.get(p), op.i32(by), op.i32Add, op.set(p));
  emit(op.get(d), op.get(end), op.i32Ne, op.brIf(0));
  emit(op.end);
  emit(op.get(dst), op.get(dstStride), op.i32Add, op.set(dst), op.get(ci), op.i32(8), op.i32Add, op.set(ci));
  emit(op.get(rows), op.i32(1), op.i32Sub, op.tee(rows), op.brIf(0));
  emit(op.end);
  return { params: Array<number>(9).fill(I32), results: [], locals: [I32, I32, I32, V128, V128], body, export: "combine" };
}

type Fn = (...args: number[]) => void;
let fixed: object | undefined;
const splits = new Map<string, object>();

const align = (n: number) => Math.ceil(n / 64) * 64;

/** Tokens a run is padded to: tp/64 odd, so the unsigned planes' rows (tp bytes apart) are not a multiple
 * of 4 KiB apart — that would put the split's 16 transposed stores of a turn in one L1 set. The extra
 * tokens are zero, and zero bytes on the signed side add nothing. */
const paddedTokens = (tokens: number) => 64 * (Math.ceil(tokens / 64) | 1);

/** The integer path of one K-wide Hessian accumulator, in one memory laid out once: the K×K float32 sum,
 * the input buffer (up to `maxTokens` tokens, filled by the accumulator in place), column scales, the
 * unsigned byte planes (transposed, all columns), the signed ones of one column block, and that block's
 * int32 products. */
export class IntGram {
  private readonly memory: { readonly buffer: ArrayBuffer };
  private readonly colmax: Fn;
  private readonly combine: Fn;
  private readonly at: { c: number; m: number; r: number; x: number; s: number; u: number; y: number };

  constructor(readonly K: number, readonly bs: number, readonly maxTokens: number) {
    if (!IntGram.fits(K, bs) || maxTokens > MAX_INT_TOKENS) throw new Error(`internal: integer Gram of width ${K} in blocks of ${bs}, ${maxTokens} tokens`);
    const np = paddedTokens(maxTokens) * K;
    let p = align(4 * K * K);
    const take = (bytes: number) => { const at = p; p = align(p + bytes); return at; };
    this.at = { c: take(8 * K), m: take(4 * K), r: take(4 * K), x: take(4 * np), s: take(3 * (np / K) * bs), u: take(3 * np), y: take(3 * 4 * K * bs) };
    if (p > 2 ** 32) throw new Error(`internal: integer Gram memory of ${p} bytes`);
    this.memory = new WebAssembly.Memory({ initial: Math.ceil(p / 65536) });
    fixed ??= new WebAssembly.Module(encodeModule([colmaxFunc(), combineFunc()]));
    const e = this.instance(fixed);
    this.colmax = e.colmax as Fn;
    this.combine = e.combine as Fn;
  }

  /** Whether a K-wide input in blocks of `bs` takes this path (the kernels' 16-column steps). */
  static fits(K: number, bs: number): boolean {
    return K % 16 === 0 && bs % 16 === 0;
  }

  /** The sums' upper triangle (K × K). */
  get sum(): Float32Array {
    return new Float32Array(this.memory.buffer, 0, this.K * this.K);
  }

  /** The input buffer (maxTokens × K): batches written here are not copied again by `add`. */
  get input(): Float32Array {
    return new Float32Array(this.memory.buffer, this.at.x, this.maxTokens * this.K);
  }

  private instance(module: object): Record<string, unknown> {
    return new WebAssembly.Instance(module, { env: { memory: this.memory } }).exports;
  }

  /** Adds the upper block triangle of XᵀX for X (tokens ≤ maxTokens × K; the input buffer or any array)
   * to the sum (and the lower halves of the diagonal blocks, which the reader ignores, as with
   * `OrtMath.gramUpper`). */
  async add(math: OrtMath, X: Float32Array, tokens: number): Promise<void> {
    const { K, bs, at } = this;
    if (tokens > this.maxTokens) throw new Error(`internal: integer Gram of ${tokens} tokens`);
    const n = tokens * K;
    const tp = paddedTokens(tokens);
    const np = tp * K;
    const sizes: number[] = [];
    for (let b = 0; b < K; b += bs) sizes.push(Math.min(bs, K - b));
    const ends = sizes.map((w, j) => j * bs + w);
    const buf = this.memory.buffer;
    const xs = new Float32Array(buf, at.x, np);
    if (X.buffer !== buf || X.byteOffset !== at.x) xs.set(X.subarray(0, n));
    xs.fill(0, n);
    const m = new Float32Array(buf, at.m, K).fill(0);
    for (let t = 0; t < tokens; t += SLICE_ROWS) this.colmax(at.x + 4 * t * K, at.m, Math.min(SLICE_ROWS, tokens - t), K);
    const r = new Float32Array(buf, at.r, K), c = new Float64Array(buf, at.c, K);
    for (let j = 0; j < K; j++) {
      r[j] = m[j] > 0 ? GRID / m[j] : 0;
      c[j] = m[j] / GRID;
    }
    const key = `${tp}:${np}`;
    let module = splits.get(key);
    if (!module) {
      module = new WebAssembly.Module(encodeModule([splitFunc(tp, np)]));
      if (splits.size > 8) splits.clear();
      splits.set(key, module);
    }
    const split = this.instance(module).split as Fn;
    const sPlane = (q: number) => at.s + q * tp * bs;
    for (let j = 0; j < sizes.length; j++) {
      const w = sizes[j], e = ends[j], c0 = j * bs;
      // this block's columns: its signed planes, and its rows of the unsigned (transposed) ones
      for (let t = 0; t < tp; t += SLICE_ROWS) {
        split(at.x + 4 * (t * K + c0), at.r + 4 * c0, sPlane(0) + t * w, sPlane(1) + t * w, sPlane(2) + t * w,
          at.u + c0 * tp + t, Math.min(SLICE_ROWS, tp - t), w / 16, 4 * K, w, 16 * tp);
      }
      const planes = [0, 1, 2];
      await math.gramColumnInt(
        planes.map((q) => new Uint8Array(buf, at.u + q * np, e * tp)),
        planes.map((q) => new Int8Array(buf, sPlane(q), tp * w)),
        planes.map((q) => new Int32Array(buf, at.y + q * 4 * K * bs, e * w)),
        tp, e, w,
      );
      this.combine(4 * c0, at.y, at.y + 4 * K * bs, at.y + 8 * K * bs, at.c, at.c + 8 * c0, e, w, 4 * K);
    }
  }
}
