import { LoralabError } from "../errors.js";
import { F64, I32, S, V128, encodeModule, op, uleb, vconstI32, vload, vstore } from "./wasm.js";

/** Element types the fused kernel reads and writes (F16 goes through the general path). */
export type KernelDType = "F32" | "BF16";

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

const SIZE: Record<KernelDType, number> = { F32: 4, BF16: 2 };

/** The fused kernel `rows(w, l, rp, out, rows, cols, stats)` for rank `r`, all pointers byte offsets:
 *   y = w + L·R  (fp32, Σ over k in order), out = y rounded to nearest even (BF16) or y (F32),
 * and per-call statistics (Σ Δ², Σ w², max |Δ|, max rounding error, NaN/Inf flag) stored as 5 f64 at `stats`.
 * L is row-major [rows, r]; R is packed in 4-column blocks, [cols/4][r][4], so each k is one v128 load at
 * a constant offset. One pass over the data: reading bf16 and writing bf16 are a shift and an integer
 * rounding in SIMD, no f32 copy of the tensor exists. cols must be a multiple of 4 and rows ≥ 1. */
function kernelFunc(r: number, inT: KernelDType, outT: KernelDType) {
  const [w, l, rp, out, rows, cols, stats] = [0, 1, 2, 3, 4, 5, 6];
  const [wEnd, rpp] = [7, 8];
  const [dd, ww, md, re, bad] = [9, 10, 11, 12, 13];
  const [d, wv, y, ddv, wwv, mdv, rev, badv, t] = [14, 15, 16, 17, 18, 19, 20, 21, 22];
  const s = op.simd;
  const b: number[] = [];
  const emit = (...xs: number[][]) => { for (const x of xs) b.push(...x); };
  const zero = vconstI32(0);
  emit(op.loop); // rows
  emit(op.get(w), op.get(cols), op.i32(SIZE[inT]), [0x6c], op.i32Add, op.set(wEnd));
  emit(op.get(rp), op.set(rpp));
  for (const v of [ddv, wwv, mdv, rev, badv]) emit(zero, op.set(v));
  emit(op.loop); // 4 columns per iteration
  // Δ = Σ_k L[k]·R[k, j..j+3]
  emit(op.get(rpp), vload(0), op.get(l), s(S.load32Splat, 2, ...uleb(0)), s(S.f32x4Mul));
  for (let k = 1; k < r; k++) emit(op.get(rpp), vload(16 * k), op.get(l), s(S.load32Splat, 2, ...uleb(4 * k)), s(S.f32x4Mul), s(S.f32x4Add));
  emit(op.set(d));
  if (inT === "BF16") emit(op.get(w), s(S.load16x4U, 3, 0), op.i32(16), s(S.i32x4Shl), op.set(wv));
  else emit(op.get(w), vload(0, 2), op.set(wv));
  emit(op.get(wv), op.get(d), s(S.f32x4Add), op.set(y));
  emit(op.get(ddv), op.get(d), op.get(d), s(S.f32x4Mul), s(S.f32x4Add), op.set(ddv));
  emit(op.get(wwv), op.get(wv), op.get(wv), s(S.f32x4Mul), s(S.f32x4Add), op.set(wwv));
  emit(op.get(mdv), op.get(d), s(S.f32x4Abs), s(S.f32x4Pmax), op.set(mdv));
  emit(op.get(badv), op.get(y), op.get(y), s(S.f32x4Sub), s(S.f32x4Add), op.set(badv)); // y − y is NaN for NaN/±Inf
  if (outT === "BF16") {
    // round to nearest even on the bits: t = u + 0x7fff + ((u >> 16) & 1); the bf16 is t >> 16
    emit(op.get(y), op.get(y), op.i32(16), s(S.i32x4ShrU), vconstI32(1), s(S.and), s(S.i32x4Add), vconstI32(0x7fff), s(S.i32x4Add), op.set(t));
    emit(op.get(rev), op.get(t), vconstI32(0xffff0000 | 0), s(S.and), op.get(y), s(S.f32x4Sub), s(S.f32x4Abs), s(S.f32x4Pmax), op.set(rev));
    // rounding up to ±Inf leaves rounding error Inf: counted as non-finite below
    emit(op.get(badv), op.get(rev), op.get(rev), s(S.f32x4Sub), s(S.f32x4Add), op.set(badv));
    emit(op.get(out), op.get(t), op.i32(16), s(S.i32x4ShrU), op.tee(t), op.get(t), s(S.i16x8NarrowI32x4U), s(S.store64Lane, 3, 0, 0));
  } else emit(op.get(out), op.get(y), vstore(0, 2));
  emit(op.get(rpp), op.i32(16 * r), op.i32Add, op.set(rpp));
  emit(op.get(out), op.i32(4 * SIZE[outT]), op.i32Add, op.set(out));
  emit(op.get(w), op.i32(4 * SIZE[inT]), op.i32Add, op.tee(w), op.get(wEnd), op.i32Ne, op.brIf(0));
  emit(op.end);
  // fold the row's lanes into the f64 totals
  const lanes = (v: number, acc: number, combine: number[]) => {
    for (let i = 0; i < 4; i++) emit(op.get(acc), op.get(v), s(S.f32x4Extract, i), op.f64PromoteF32, combine, op.set(acc));
  };
  lanes(ddv, dd, op.f64Add); lanes(wwv, ww, op.f64Add); lanes(badv, bad, op.f64Add);
  lanes(mdv, md, op.f64Max); lanes(rev, re, op.f64Max);
  emit(op.get(l), op.i32(4 * r), op.i32Add, op.set(l));
  emit(op.get(rows), op.i32(1), op.i32Sub, op.tee(rows), op.brIf(0));
  emit(op.end);
  [dd, ww, md, re, bad].forEach((v, i) => emit(op.get(stats), op.get(v), op.f64Store(8 * i)));
  return {
    params: [I32, I32, I32, I32, I32, I32, I32], results: [],
    locals: [I32, I32, F64, F64, F64, F64, F64, V128, V128, V128, V128, V128, V128, V128, V128, V128],
    body: b, export: "rows",
  };
}

/** The few WebAssembly JS-API members used here (the project's lib setting has no DOM typings). */
interface WasmMemory { readonly buffer: ArrayBuffer; grow(pages: number): number }
declare const WebAssembly: {
  Memory: new (d: { initial: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
};

type RowsFn = (w: number, l: number, rp: number, out: number, rows: number, cols: number, stats: number) => void;

/** Fused low-rank merge `out = round(W + L·R)` on WebAssembly SIMD over one growable memory that the caller
 * lays out (it reads tensors from files straight into it and writes results straight out of it). */
export class LowRankKernels {
  readonly memory: WasmMemory = new WebAssembly.Memory({ initial: 1 });
  private readonly fns = new Map<string, RowsFn>();
  /** 40 bytes at offset 0 hold the statistics of the last call */
  static readonly STATS = 0;
  static readonly FIRST_FREE = 64;

  /** Makes the memory at least `bytes` long (views taken before must be taken again). */
  reserve(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) {
      if (bytes > 4 * 2 ** 30 - 65536) throw new LoralabError(`tensor too large for the 4 GiB WebAssembly merge buffer (${bytes} bytes)`);
      this.memory.grow(Math.ceil((bytes - have) / 65536));
    }
  }

  bytes(offset: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, offset, length);
  }

  f32(offset: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, length);
  }

  private fn(r: number, inT: KernelDType, outT: KernelDType): RowsFn {
    const key = `${r}/${inT}/${outT}`;
    let f = this.fns.get(key);
    if (!f) {
      const mod = new WebAssembly.Module(encodeModule([kernelFunc(r, inT, outT)]));
      f = new WebAssembly.Instance(mod, { env: { memory: this.memory } }).exports.rows as RowsFn;
      this.fns.set(key, f);
    }
    return f;
  }

  /** Runs the kernel over `rows` rows (pointers are byte offsets into `memory`). */
  run(r: number, inT: KernelDType, outT: KernelDType, p: { w: number; l: number; r: number; out: number }, rows: number, cols: number): LowRankStats {
    if (cols % 4 !== 0 || cols === 0 || rows === 0) throw new Error(`internal: low-rank kernel needs cols % 4 == 0 and rows > 0 (got ${rows}x${cols})`);
    this.fn(r, inT, outT)(p.w, p.l, p.r, p.out, rows, cols, LowRankKernels.STATS);
    const s = new Float64Array(this.memory.buffer, LowRankKernels.STATS, 5);
    return { sumSqDelta: s[0], sumSqW: s[1], maxAbsDelta: s[2], maxRoundErr: s[3], finite: Number.isFinite(s[4]) && Number.isFinite(s[3]) };
  }
}

/** Packs R [r, cols] (given as get(k, j)) into the kernel's 4-column blocks [cols/4][r][4]. */
export function packR(dst: Float32Array, r: number, cols: number, get: (k: number, j: number) => number): void {
  for (let jb = 0; jb < cols / 4; jb++)
    for (let k = 0; k < r; k++)
      for (let jj = 0; jj < 4; jj++) dst[(jb * r + k) * 4 + jj] = get(k, jb * 4 + jj);
}
