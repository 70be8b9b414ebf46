/** GPTQ's in-block column loop (SPEC §5.3) on WebAssembly SIMD: quantize column i of a lazy block with the
 * rows' scales and zeros, write its codes and scaled errors e = (w − ŵ)/Hinv[i,i], and update the block's
 * later columns, w_j −= e·Hinv[i, j]. Every output row of the weight is independent in this loop, so the
 * rows are split between this thread and helper threads. The block lives in the kernel's memory in the
 * transposed layout (one row per weight column, one float per output row), rows padded so that the
 * update's walk down a block does not alias in the L1 cache (a 4 KiB multiple apart, every row would
 * land in the same cache set). */
import { type FuncDef, F32, F64, I32, S, V128, encodeModule, op, vconstI32, vload, vstore } from "../tensor/wasm.js";
import { MAX_PAGES, MAX_THREADS, type WasmPool, borrowPool, returnPool } from "../tensor/wasm-pool.js";

/** v128 registers per chunk of output rows: 4 (16 rows, one cache line) */
const CB = 4;
const CHUNK = 4 * CB;
/** a helper thread gets at least this many output rows */
const MIN_PART = 256;

/** `run(w, e, codes, s, z, h, stride, n0, n1, i0, i1, count, maxq, loss)`, pointers byte offsets: w and e
 * are `count` rows `stride` bytes apart, codes `stride/4` apart; s, z (float) one value per output row;
 * h the block's Hinv, count × count. For output rows n0/4..n1/4 (byte offsets, multiples of 4·CHUNK) it
 * quantizes columns i0..i1−1 and updates columns up to count − 1; Σ e² lands as an f64 at `loss`. */
function columnsFunc(): FuncDef {
  const [w, e, codes, sp, zp, h, stride, n0, n1, i0, i1, count, maxq, loss] = Array.from({ length: 14 }, (_, i) => i);
  const [ob, i, rowI, pj, pend, hp] = [14, 15, 16, 17, 18, 19];
  const acc = 20;
  const sv = Array.from({ length: CB }, (_, c) => 21 + c);
  const zv = sv.map((x) => x + CB);
  const ev = zv.map((x) => x + CB);
  const qv = ev.map((x) => x + CB);
  const [x, dv, lv, mq, hv] = [21 + 4 * CB, 22 + 4 * CB, 23 + 4 * CB, 24 + 4 * CB, 25 + 4 * CB];
  const s = op.simd;
  const b: number[] = [];
  const emit = (...xs: number[][]) => { for (const v of xs) b.push(...v); };
  emit(op.get(maxq), s(S.f32x4Splat), op.set(mq));
  emit(op.get(n0), op.set(ob));
  emit(op.loop); // chunks of output rows
  for (let c = 0; c < CB; c++) {
    emit(op.get(sp), op.get(ob), op.i32Add, vload(16 * c), op.set(sv[c]));
    emit(op.get(zp), op.get(ob), op.i32Add, vload(16 * c), op.set(zv[c]));
  }
  emit(vconstI32(0), op.set(lv));
  emit(op.get(i0), op.set(i));
  emit(op.loop); // columns i0..i1−1
  emit(op.get(w), op.get(i), op.get(stride), op.i32Mul, op.i32Add, op.get(ob), op.i32Add, op.set(rowI));
  emit(op.get(h), op.get(i), op.get(count), op.i32Mul, op.get(i), op.i32Add, op.i32(4), op.i32Mul, op.i32Add, op.tee(hp));
  emit(op.f32Load(), s(S.f32x4Splat), op.set(dv));
  for (let c = 0; c < CB; c++) {
    emit(op.get(rowI), vload(16 * c), op.set(x));
    // code = clamp(round_half_even(x/s) + z, 0, maxq)
    emit(op.get(x), op.get(sv[c]), s(S.f32x4Div), s(S.f32x4Nearest), op.get(zv[c]), s(S.f32x4Add), vconstI32(0), s(S.f32x4Pmax), op.get(mq), s(S.f32x4Pmin), op.set(qv[c]));
    // e = (x − s·(code − z)) / d
    emit(op.get(x), op.get(sv[c]), op.get(qv[c]), op.get(zv[c]), s(S.f32x4Sub), s(S.f32x4Mul), s(S.f32x4Sub), op.get(dv), s(S.f32x4Div), op.set(ev[c]));
    emit(op.get(rowI), op.get(w), op.i32Sub, op.get(e), op.i32Add, op.get(ev[c]), vstore(16 * c));
    emit(op.get(lv), op.get(ev[c]), op.get(ev[c]), s(S.f32x4Mul), s(S.f32x4Add), op.set(lv));
  }
  // 16 codes → 16 bytes
  emit(op.get(codes), op.get(i), op.get(stride), op.i32(2), op.i32ShrU, op.i32Mul, op.i32Add, op.get(ob), op.i32(2), op.i32ShrU, op.i32Add);
  for (let c = 0; c < CB; c += 2) emit(op.get(qv[c]), s(S.i32x4TruncSatF32x4U), op.get(qv[c + 1]), s(S.i32x4TruncSatF32x4U), s(S.i16x8NarrowI32x4U));
  emit(s(S.i8x16NarrowI16x8U), vstore(0, 0));
  // w_j −= e·Hinv[i, j] for the block's later columns j
  emit(op.get(rowI), op.get(stride), op.i32Add, op.set(pj));
  emit(op.get(w), op.get(count), op.get(stride), op.i32Mul, op.i32Add, op.get(ob), op.i32Add, op.set(pend));
  emit(op.get(hp), op.i32(4), op.i32Add, op.set(hp));
  emit(op.block, op.get(pj), op.get(pend), op.i32GeU, op.brIf(0));
  emit(op.loop);
  emit(op.get(hp), s(S.load32Splat, 2, 0), op.set(hv));
  for (let c = 0; c < CB; c++) emit(op.get(pj), op.get(pj), vload(16 * c), op.get(ev[c]), op.get(hv), s(S.f32x4Mul), s(S.f32x4Sub), vstore(16 * c));
  emit(op.get(hp), op.i32(4), op.i32Add, op.set(hp));
  emit(op.get(pj), op.get(stride), op.i32Add, op.tee(pj), op.get(pend), op.i32Ne, op.brIf(0));
  emit(op.end, op.end);
  emit(op.get(i), op.i32(1), op.i32Add, op.tee(i), op.get(i1), op.i32Ne, op.brIf(0));
  emit(op.end);
  for (let l = 0; l < 4; l++) emit(op.get(acc), op.get(lv), s(S.f32x4Extract, l), op.f64PromoteF32, op.f64Add, op.set(acc));
  emit(op.get(ob), op.i32(4 * CHUNK), op.i32Add, op.tee(ob), op.get(n1), op.i32Ne, op.brIf(0));
  emit(op.end);
  emit(op.get(loss), op.get(acc), op.f64Store());
  return {
    params: [...Array<number>(12).fill(I32), F32, I32], results: [],
    locals: [...Array<number>(6).fill(I32), F64, ...Array<number>(4 * CB + 5).fill(V128)],
    body: b, export: "run",
  };
}

const KEY = `gptq-columns/${CB}`;
const align = (n: number) => Math.ceil(n / 64) * 64;

/** The kernel's memory for one weight (N output rows) and one lazy block size, with views on its parts.
 * `acquire` takes an idle pool (helper threads already started) or makes one; `release` hands it back. */
export class GptqColumns {
  /** floats per block row (N rounded up to whole chunks, plus one cache line against aliasing) */
  readonly stride: number;
  /** rows of the block in the transposed layout, `stride` floats apart */
  readonly w: Float32Array;
  /** scaled errors, same layout */
  readonly e: Float32Array;
  /** codes, `stride` bytes apart */
  readonly codes: Uint8Array;
  /** per output row scale and zero of the current columns (padding rows: scale 1, zero 0) */
  readonly s: Float32Array;
  readonly z: Float32Array;
  /** the block's Hinv, blockSize × blockSize, row-major with the block's `count` as row length */
  readonly h: Float32Array;
  private readonly at: { w: number; e: number; codes: number; s: number; z: number; h: number };

  private constructor(private readonly pool: WasmPool, readonly N: number, readonly blockSize: number) {
    const chunks = Math.ceil(N / CHUNK);
    this.stride = chunks * CHUNK + 16;
    const rowBytes = 4 * this.stride;
    let p = 64 * MAX_THREADS; // one f64 loss per thread, 64 bytes apart
    const take = (bytes: number) => { const at = p; p = align(p + bytes); return at; };
    this.at = { w: take(blockSize * rowBytes), e: take(blockSize * rowBytes), codes: take(blockSize * this.stride), s: take(rowBytes), z: take(rowBytes), h: take(4 * blockSize * blockSize) };
    pool.reserve(p, "GPTQ block");
    pool.kernel(KEY, () => encodeModule([columnsFunc()], 1, MAX_PAGES));
    this.w = pool.f32(this.at.w, blockSize * this.stride);
    this.e = pool.f32(this.at.e, blockSize * this.stride);
    this.codes = pool.bytes(this.at.codes, blockSize * this.stride);
    this.s = pool.f32(this.at.s, this.stride).fill(1);
    this.z = pool.f32(this.at.z, this.stride).fill(0);
    this.h = pool.f32(this.at.h, blockSize * blockSize);
  }

  /** `threads`: this one and helpers (default one per core up to 8). */
  static acquire(N: number, blockSize: number, threads?: number): GptqColumns {
    return new GptqColumns(borrowPool(threads), N, blockSize);
  }

  release(): void {
    returnPool(this.pool);
  }

  /** Quantizes block columns i0..i1−1 (the current `s`, `z` apply to all of them), updating the block's
   * columns up to count − 1 (`h` holds the count × count Hinv block); returns GPTQ's loss Σ e²/2. */
  async run(i0: number, i1: number, count: number, maxq: number): Promise<number> {
    const chunks = Math.ceil(this.N / CHUNK);
    const parts = Math.max(1, Math.min(this.pool.threads, Math.floor(chunks / (MIN_PART / CHUNK))));
    const bound = (p: number) => 4 * CHUNK * Math.floor((p * chunks) / parts);
    const a = this.at;
    const args = Array.from({ length: parts }, (_, p) => [a.w, a.e, a.codes, a.s, a.z, a.h, 4 * this.stride, bound(p), bound(p + 1), i0, i1, count, maxq, 64 * p]);
    await this.pool.run(KEY, args);
    const l = this.pool.f64(0, 8 * parts);
    let loss = 0;
    for (let p = 0; p < parts; p++) loss += l[8 * p];
    return loss / 2;
  }
}
