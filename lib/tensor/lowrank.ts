import { MAX_PAGES, MAX_THREADS, WasmPool, type WasmMemory, defaultThreads as defaultPoolThreads } from "./wasm-pool.js";
import { F64, I32, S, V128, encodeModule, op, uleb, vconstI32, vload, vstore } from "./wasm.js";

/** Element types the fused kernel reads and writes. */
export type KernelDType = "F32" | "BF16" | "F16";

/** Statistics of one kernel call, over all its rows. Δ is the fp32 low-rank product L·R. */
export interface LowRankStats {
  sumSqDelta: number;
  sumSqW: number;
  maxAbsDelta: number;
  /** max |round(y) − y| of the output rounding (0 for F32 output) */
  maxRoundErr: number;
  /** false when some merged value is NaN or ±Inf (or rounds to ±Inf) */
  finite: boolean;
}

/** Column blocks of 4 per loop iteration: 2 gives two independent add chains; 4 measured slower (spills). */
const MAX_CB = 2;
const SIZE: Record<KernelDType, number> = { F32: 4, BF16: 2, F16: 2 };

/** float16 bits (zero-extended in i32x4 local `u`) → float32 x4 on the stack. em << 13 puts exponent and
 * mantissa in float32 position with the wrong bias; × 2¹¹² fixes it for normals and, exactly, for subnormals;
 * Inf/NaN (em > 0x7bff) take exponent 255 instead. */
function f16Decode(u: number, t: number): number[] {
  const s = op.simd;
  return [
    ...op.get(u), ...vconstI32(0x7fff), ...s(S.and), ...op.i32(13), ...s(S.i32x4Shl), ...op.tee(t), // em << 13
    ...vconstI32(0x7f800000), ...s(S.or), // Inf/NaN
    ...op.get(t), ...vconstI32(0x77800000), ...s(S.f32x4Mul), // normal and subnormal: × 2^112
    ...op.get(u), ...vconstI32(0x7fff), ...s(S.and), ...vconstI32(0x7bff), ...s(S.i32x4GtS),
    ...s(S.bitselect),
    ...op.get(u), ...vconstI32(0x8000), ...s(S.and), ...op.i32(16), ...s(S.i32x4Shl), ...s(S.or), // sign
  ];
}

/** float32 x4 in local `y` → float16 bits (low 16 bits of i32x4) on the stack, round to nearest even,
 * overflow to ±Inf, NaN to a quiet NaN (F. Giesen's float_to_half_fast3_rtne, with selects for branches):
 * normals round on the bits; below 2⁻¹⁴ adding 0.5 lets the FPU round the subnormal's bits into place. */
function f16Encode(y: number, a: number, t: number): number[] {
  const s = op.simd;
  return [
    ...op.get(y), ...vconstI32(0x7fffffff), ...s(S.and), ...op.set(a), // |y| bits
    // Inf/NaN and overflow: 0x7e00 for NaN, else 0x7c00
    ...vconstI32(0x7e00), ...vconstI32(0x7c00), ...op.get(a), ...vconstI32(0x7f800000), ...s(S.i32x4GtS), ...s(S.bitselect),
    // normal: (a + ((15 − 127) << 23) + 0xfff + ((a >> 13) & 1)) >> 13
    ...op.get(a), ...vconstI32(((15 - 127) << 23) + 0xfff), ...s(S.i32x4Add), ...op.get(a), ...op.i32(13), ...s(S.i32x4ShrU),
    ...vconstI32(1), ...s(S.and), ...s(S.i32x4Add), ...op.i32(13), ...s(S.i32x4ShrU), ...op.set(t),
    // subnormal or zero (a < 113 << 23): bits(|y| + 0.5) − bits(0.5)
    ...op.get(a), ...vconstI32(0x3f000000), ...s(S.f32x4Add), ...vconstI32(0x3f000000), ...s(S.i32x4Sub),
    ...op.get(t), ...op.get(a), ...vconstI32(113 << 23), ...s(S.i32x4LtS), ...s(S.bitselect),
    ...op.get(a), ...vconstI32(143 << 23), ...s(S.i32x4GeS), ...s(S.bitselect),
    ...op.get(y), ...vconstI32(0x80000000 | 0), ...s(S.and), ...op.i32(16), ...s(S.i32x4ShrU), ...s(S.or), // sign
  ];
}

/** What a kernel call computes per row: the merge, the merge with each row scaled by a factor (DoRA's
 * m/‖W + ΔW‖, from `scale`, one float per row), or only Σ (w + L·R)² per row (float64 at `out`, for the norms). */
export type KernelMode = "plain" | "scaled" | "norms";

/** The fused kernel `run(w, l, rp, out, rows, cols, stats, scale)` for rank `r`, all pointers byte offsets:
 *   y = w + L·R  (fp32, Σ over k in order; × the row's scale in mode "scaled"), out = y rounded to nearest
 * even (BF16, F16) or y (F32), and per-call statistics (Σ Δ², Σ w², max |Δ|, max rounding error, NaN/Inf
 * flag; Δ = y − w) stored as 5 f64 at `stats`.
 * L is row-major [rows, r]; R is packed in 4-column blocks, [cols/4][r][4], so each k is one v128 load at
 * a constant offset. One pass over the data: reading bf16 and writing bf16 are a shift and an integer
 * rounding in SIMD, no f32 copy of the tensor exists. cols must be a multiple of 4 and rows ≥ 1. */
function kernelFunc(r: number, inT: KernelDType, outT: KernelDType, cb: number, mode: KernelMode) {
  const [w, l, rp, out, rows, cols, stats, scale] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [wEnd, rpp] = [8, 9];
  const [dd, ww, md, re, bad] = [10, 11, 12, 13, 14];
  const [wv, y, ddv, wwv, mdv, rev, badv, t, lk] = [15, 16, 17, 18, 19, 20, 21, 22, 23];
  const dc = Array.from({ length: cb }, (_, c) => 24 + c);
  const [pk, pr, pkEnd] = [24 + cb, 25 + cb, 26 + cb]; // i32: L[k] and R[k] pointers, L row end
  const [h16, t2] = [27 + cb, 28 + cb]; // v128 temporaries of the float16 conversions
  const [fv, nlo, nhi] = [29 + cb, 30 + cb, 31 + cb]; // the row's scale; Σ y² as float64 pairs (norms)
  const s = op.simd;
  const b: number[] = [];
  const emit = (...xs: number[][]) => { for (const x of xs) b.push(...x); };
  const zero = vconstI32(0);
  emit(op.loop); // rows
  emit(op.get(w), op.get(cols), op.i32(SIZE[inT]), [0x6c], op.i32Add, op.set(wEnd));
  emit(op.get(rp), op.set(rpp));
  for (const v of [ddv, wwv, mdv, rev, badv, nlo, nhi]) emit(zero, op.set(v));
  if (mode === "scaled") emit(op.get(scale), s(S.load32Splat, 2, 0), op.set(fv));
  emit(op.loop); // 4·cb columns per iteration
  // Δ_c = Σ_k L[k]·R[k, 4c..4c+3] in k order; each L[k] is broadcast once for all blocks. A loop over k
  // (two steps per turn), not r unrolled steps: TurboFan hoisted all 3r loads of an unrolled body to its
  // top and spilled most of them to the stack (r = 16: 69 spill moves per 8 elements; 0.17–0.35 → 0.41–0.48
  // G elements/s per thread)
  const U = r % 2 === 0 ? 2 : 1;
  for (let c = 0; c < cb; c++) emit(zero, op.set(dc[c]));
  emit(op.get(l), op.set(pk), op.get(rpp), op.set(pr), op.get(l), op.i32(4 * r), op.i32Add, op.set(pkEnd));
  emit(op.loop);
  for (let u = 0; u < U; u++) {
    emit(op.get(pk), s(S.load32Splat, 2, ...uleb(4 * u)), op.set(lk));
    for (let c = 0; c < cb; c++) emit(op.get(dc[c]), op.get(pr), vload(16 * (c * r + u)), op.get(lk), s(S.f32x4Mul), s(S.f32x4Add), op.set(dc[c]));
  }
  emit(op.get(pr), op.i32(16 * U), op.i32Add, op.set(pr));
  emit(op.get(pk), op.i32(4 * U), op.i32Add, op.tee(pk), op.get(pkEnd), op.i32Ne, op.brIf(0));
  emit(op.end);
  for (let c = 0; c < cb; c++) {
    const d = dc[c];
    if (inT === "BF16") emit(op.get(w), s(S.load16x4U, 3, ...uleb(8 * c)), op.i32(16), s(S.i32x4Shl), op.set(wv));
    else if (inT === "F16") emit(op.get(w), s(S.load16x4U, 3, ...uleb(8 * c)), op.set(h16), f16Decode(h16, t2), op.set(wv));
    else emit(op.get(w), vload(16 * c, 2), op.set(wv));
    emit(op.get(wv), op.get(d), s(S.f32x4Add), op.set(y));
    if (mode === "norms") {
      // Σ y² in float64, as PEFT's norm of the float32 W + ΔW would be summed in higher precision
      emit(op.get(nlo), op.get(y), s(S.f64x2PromoteLow), op.tee(t), op.get(t), s(S.f64x2Mul), s(S.f64x2Add), op.set(nlo));
      emit(op.get(nhi), op.get(y), op.get(y), s(S.shuffle, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15), s(S.f64x2PromoteLow), op.tee(t), op.get(t), s(S.f64x2Mul), s(S.f64x2Add), op.set(nhi));
      continue;
    }
    if (mode === "scaled") emit(op.get(y), op.get(fv), s(S.f32x4Mul), op.tee(y), op.get(wv), s(S.f32x4Sub), op.set(d));
    emit(op.get(ddv), op.get(d), op.get(d), s(S.f32x4Mul), s(S.f32x4Add), op.set(ddv));
    emit(op.get(wwv), op.get(wv), op.get(wv), s(S.f32x4Mul), s(S.f32x4Add), op.set(wwv));
    // |x| as x & 0x7fffffff: the same bits as f32x4.abs, whose mask TurboFan rebuilt at every use
    emit(op.get(mdv), op.get(d), vconstI32(0x7fffffff), s(S.and), s(S.f32x4Pmax), op.set(mdv));
    emit(op.get(badv), op.get(y), op.get(y), s(S.f32x4Sub), s(S.f32x4Add), op.set(badv)); // y − y is NaN for NaN/±Inf
    if (outT === "BF16") {
      // round to nearest even on the bits: t = u + 0x7fff + ((u >> 16) & 1); the bf16 is t >> 16
      emit(op.get(y), op.get(y), op.i32(16), s(S.i32x4ShrU), vconstI32(1), s(S.and), s(S.i32x4Add), vconstI32(0x7fff), s(S.i32x4Add), op.set(t));
      emit(op.get(rev), op.get(t), vconstI32(0xffff0000 | 0), s(S.and), op.get(y), s(S.f32x4Sub), vconstI32(0x7fffffff), s(S.and), s(S.f32x4Pmax), op.set(rev));
      // rounding up to ±Inf leaves rounding error Inf: counted as non-finite below
      emit(op.get(badv), op.get(rev), op.get(rev), s(S.f32x4Sub), s(S.f32x4Add), op.set(badv));
      emit(op.get(out), op.get(t), op.i32(16), s(S.i32x4ShrU), op.tee(t), op.get(t), s(S.i16x8NarrowI32x4U), s(S.store64Lane, 3, ...uleb(8 * c), 0));
    } else if (outT === "F16") {
      emit(f16Encode(y, h16, t2), op.set(t));
      emit(op.get(rev), f16Decode(t, t2), op.get(y), s(S.f32x4Sub), vconstI32(0x7fffffff), s(S.and), s(S.f32x4Pmax), op.set(rev));
      emit(op.get(badv), op.get(rev), op.get(rev), s(S.f32x4Sub), s(S.f32x4Add), op.set(badv)); // rounded to ±Inf
      emit(op.get(out), op.get(t), op.get(t), s(S.i16x8NarrowI32x4U), s(S.store64Lane, 3, ...uleb(8 * c), 0));
    } else emit(op.get(out), op.get(y), vstore(16 * c, 2));
  }
  emit(op.get(rpp), op.i32(16 * r * cb), op.i32Add, op.set(rpp));
  if (mode !== "norms") emit(op.get(out), op.i32(4 * cb * SIZE[outT]), op.i32Add, op.set(out));
  emit(op.get(w), op.i32(4 * cb * SIZE[inT]), op.i32Add, op.tee(w), op.get(wEnd), op.i32Ne, op.brIf(0));
  emit(op.end);
  // fold the row's lanes into the f64 totals
  const lanes = (v: number, acc: number, combine: number[]) => {
    for (let i = 0; i < 4; i++) emit(op.get(acc), op.get(v), s(S.f32x4Extract, i), op.f64PromoteF32, combine, op.set(acc));
  };
  if (mode === "norms") {
    emit(op.get(out), op.get(nlo), op.get(nhi), s(S.f64x2Add), op.tee(t), s(S.f64x2Extract, 0), op.get(t), s(S.f64x2Extract, 1), op.f64Add, op.f64Store());
    emit(op.get(out), op.i32(8), op.i32Add, op.set(out));
  } else {
    lanes(ddv, dd, op.f64Add); lanes(wwv, ww, op.f64Add); lanes(badv, bad, op.f64Add);
    lanes(mdv, md, op.f64Max); lanes(rev, re, op.f64Max);
  }
  if (mode === "scaled") emit(op.get(scale), op.i32(4), op.i32Add, op.set(scale));
  emit(op.get(l), op.i32(4 * r), op.i32Add, op.set(l));
  emit(op.get(rows), op.i32(1), op.i32Sub, op.tee(rows), op.brIf(0));
  emit(op.end);
  [dd, ww, md, re, bad].forEach((v, i) => emit(op.get(stats), op.get(v), op.f64Store(8 * i)));
  return {
    params: [I32, I32, I32, I32, I32, I32, I32, I32], results: [],
    locals: [I32, I32, F64, F64, F64, F64, F64, ...Array<number>(9 + cb).fill(V128), I32, I32, I32, V128, V128, V128, V128, V128],
    body: b, export: "run",
  };
}

const MIN_SPLIT_ROWS = 64; // below this a helper thread costs more than it saves

/** Kernel threads: LORALAB_MERGE_THREADS, else one per core up to 8 (2 on the 2-core machines the numbers
 * in docs/merge.md come from; more threads are untested for speed here, only for equal output). */
export const defaultThreads = (): number => defaultPoolThreads("LORALAB_MERGE_THREADS");

/** Fused low-rank merge `out = round(W + L·R)` on WebAssembly SIMD over one shared memory that the caller
 * lays out (it reads tensors from files straight into it and writes results straight out of it). Large
 * tensors are split by rows between this thread and helper threads (see `defaultThreads`). */
export class LowRankKernels {
  private readonly pool: WasmPool;
  /** one 40-byte statistics block per thread, 64 bytes apart, from offset 0; the caller's data starts here */
  static readonly FIRST_FREE = 64 * MAX_THREADS;

  /** `threads`: 1 to 16 (default `defaultThreads()`). Two measured 12–15% faster than one on a quiet 2-core
   * machine, no faster under load from other jobs. */
  constructor(threads = defaultThreads()) {
    this.pool = new WasmPool(threads);
  }

  get memory(): WasmMemory {
    return this.pool.memory;
  }

  /** Makes the memory at least `bytes` long (views taken before must be taken again). */
  reserve(bytes: number): void {
    this.pool.reserve(bytes, "merge");
  }

  bytes(offset: number, length: number): Uint8Array {
    return this.pool.bytes(offset, length);
  }

  f32(offset: number, length: number): Float32Array {
    return this.pool.f32(offset, length);
  }

  private stats(at: number): LowRankStats {
    const s = this.pool.f64(at, 5);
    return { sumSqDelta: s[0], sumSqW: s[1], maxAbsDelta: s[2], maxRoundErr: s[3], finite: Number.isFinite(s[4]) && Number.isFinite(s[3]) };
  }

  /** Runs the kernel over `rows` rows (pointers are byte offsets into `memory`: W and out row-major
   * [rows, cols], L [rows, r], R packed by `packR`, in mode "scaled" one float32 factor per row at `scale`).
   * The rows are split into equal parts, one per thread, with at least 64 rows each; this thread takes the first. */
  async run(r: number, inT: KernelDType, outT: KernelDType, p: { w: number; l: number; r: number; out: number; scale?: number }, rows: number, cols: number): Promise<LowRankStats> {
    const parts = await this.runParts(p.scale === undefined ? "plain" : "scaled", r, inT, outT, p, rows, cols);
    const all = Array.from({ length: parts }, (_, i) => this.stats(64 * i));
    return {
      sumSqDelta: all.reduce((a, x) => a + x.sumSqDelta, 0), sumSqW: all.reduce((a, x) => a + x.sumSqW, 0),
      maxAbsDelta: Math.max(...all.map((x) => x.maxAbsDelta)), maxRoundErr: Math.max(...all.map((x) => x.maxRoundErr)),
      finite: all.every((x) => x.finite),
    };
  }

  /** Σ_j (W + L·R)²[i, j] for each row i, as float64 at `p.out` (DoRA's column norms before the merge). */
  async rowSquares(r: number, inT: KernelDType, p: { w: number; l: number; r: number; out: number }, rows: number, cols: number): Promise<Float64Array> {
    await this.runParts("norms", r, inT, "F32", p, rows, cols);
    return this.pool.f64(p.out, rows);
  }

  private async runParts(mode: KernelMode, r: number, inT: KernelDType, outT: KernelDType, p: { w: number; l: number; r: number; out: number; scale?: number }, rows: number, cols: number): Promise<number> {
    if (cols % 4 !== 0 || cols === 0 || rows === 0) throw new Error(`internal: low-rank kernel needs cols % 4 == 0 and rows > 0 (got ${rows}x${cols})`);
    const cb = [2, 1].find((c) => c <= MAX_CB && cols % (4 * c) === 0)!;
    const key = `${r}/${inT}/${outT}/${cb}/${mode}`;
    this.pool.kernel(key, () => encodeModule([kernelFunc(r, inT, outT, cb, mode)], 1, MAX_PAGES));
    const parts = Math.max(1, Math.min(this.pool.threads, Math.floor(rows / MIN_SPLIT_ROWS)));
    const start = (i: number) => Math.floor((i * rows) / parts);
    const outRow = mode === "norms" ? 8 : cols * SIZE[outT];
    const args = Array.from({ length: parts }, (_, i) => {
      const r0 = start(i);
      return [p.w + r0 * cols * SIZE[inT], p.l + r0 * r * 4, p.r, p.out + r0 * outRow, start(i + 1) - r0, cols, 64 * i, (p.scale ?? 0) + r0 * 4];
    });
    await this.pool.run(key, args);
    return parts;
  }

  /** Stops the helper threads (the memory stays usable from this thread). */
  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Packs R [r, cols] (given as get(k, j)) into the kernel's 4-column blocks [cols/4][r][4]. */
export function packR(dst: Float32Array, r: number, cols: number, get: (k: number, j: number) => number): void {
  for (let jb = 0; jb < cols / 4; jb++)
    for (let k = 0; k < r; k++)
      for (let jj = 0; jj < 4; jj++) dst[(jb * r + k) * 4 + jj] = get(k, jb * 4 + jj);
}
