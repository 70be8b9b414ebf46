/** AWQ's candidate weights on WebAssembly SIMD threads: min-max asymmetric groups (§4.1) of
 * clamp(W, ±m)·diag(c), quantized and dequantized, ÷ diag(c) — the float32 values `fakeQuantizeRtn`
 * computes, bit for bit: each per-weight step is the same IEEE operation JavaScript performs (the division
 * by the scale and by c in float64 lanes, as on JS numbers), and the group parameters come from the same
 * `groupParams`. The weight is copied into the kernel's memory once and serves every candidate of a
 * search (20 scale grids, 10 clipping ratios); rows are split between this thread and helper threads. */
import { type FuncDef, F64, I32, S, V128, encodeModule, op, vconstI32, vload } from "../tensor/wasm.js";
import { MAX_PAGES, MAX_THREADS, type WasmPool, borrowPool, returnPool } from "../tensor/wasm-pool.js";
import { type Bits, effectiveGroupSize, groupParams } from "./quantizer.js";

type Variant = "plain" | "scaled" | "clipped";

/** `run(w, c, clip, a, b, out, rows, K, G, maxq)` over `rows` rows of K floats in groups of G. Pass "range":
 * each group's min and max (float32 at a, b) of x = w (·c, or clamped to ±clip[group]). Pass "quant": out =
 * (scale·(clamp(round(x/scale) + zero, 0, maxq) − zero)) [÷ c], with scale and zero per group at a, b. */
function passFunc(pass: "range" | "quant", variant: Variant): FuncDef {
  const [w, c, clip, a, b, out, rows, K, G, maxq] = Array.from({ length: 10 }, (_, i) => i);
  const [rowEnd, gEnd, cp] = [10, 11, 12];
  const [x, mn, mx, scv, zv, mqv, hi, lo, q] = [13, 14, 15, 16, 17, 18, 19, 20, 21];
  const s = op.simd;
  const body: number[] = [];
  const emit = (...xs: number[][]) => { for (const v of xs) body.push(...v); };
  const step = pass === "range" ? 16 : 8; // bytes of weights per turn: 4 floats (range), 2 (float64 lanes)
  emit(op.get(maxq), s(S.f64x2Splat), op.set(mqv));
  emit(op.loop); // rows
  emit(op.get(w), op.get(K), op.i32(4), op.i32Mul, op.i32Add, op.set(rowEnd), op.get(c), op.set(cp));
  emit(op.loop); // groups
  emit(op.get(w), op.get(G), op.i32(4), op.i32Mul, op.i32Add, op.set(gEnd));
  if (variant === "clipped") {
    emit(op.get(clip), s(S.load32Splat, 2, 0), op.set(hi));
    emit(op.get(clip), op.f32Load(), op.f32Neg, s(S.f32x4Splat), op.set(lo));
    emit(op.get(clip), op.i32(4), op.i32Add, op.set(clip));
  }
  if (pass === "range") emit(vconstI32(0x7f800000), op.set(mn), vconstI32(0xff800000 | 0), op.set(mx));
  else {
    emit(op.get(a), op.f32Load(), op.f64PromoteF32, s(S.f64x2Splat), op.set(scv));
    emit(op.get(b), op.f32Load(), op.f64PromoteF32, s(S.f64x2Splat), op.set(zv));
  }
  emit(op.loop); // weights of the group
  const load = (p: number) => (pass === "range" ? [...op.get(p), ...vload(0, 2)] : [...op.get(p), ...s(S.load64Zero, 3, 0)]);
  emit(load(w));
  if (variant === "scaled") emit(load(cp), s(S.f32x4Mul)); // float32 product, as stored in a Float32Array
  if (variant === "clipped") emit(op.get(lo), s(S.f32x4Pmax), op.get(hi), s(S.f32x4Pmin));
  emit(op.set(x));
  if (pass === "range") {
    emit(op.get(mn), op.get(x), s(S.f32x4Min), op.set(mn), op.get(mx), op.get(x), s(S.f32x4Max), op.set(mx));
  } else {
    // scale·(clamp(round_half_even(x/scale) + zero, 0, maxq) − zero), in float64 as JavaScript computes it
    emit(op.get(x), s(S.f64x2PromoteLow), op.get(scv), s(S.f64x2Div), s(S.f64x2Nearest), op.get(zv), s(S.f64x2Add));
    emit(vconstI32(0), s(S.f64x2Pmax), op.get(mqv), s(S.f64x2Pmin), op.get(zv), s(S.f64x2Sub), op.get(scv), s(S.f64x2Mul));
    emit(s(S.f32x4DemoteF64x2Zero), op.set(q)); // Math.fround: exact product of an f16 scale and a small integer, rounded once
    if (variant === "scaled") emit(op.get(q), s(S.f64x2PromoteLow), load(cp), s(S.f64x2PromoteLow), s(S.f64x2Div), s(S.f32x4DemoteF64x2Zero), op.set(q));
    emit(op.get(out), op.get(q), s(S.store64Lane, 3, 0, 0));
    emit(op.get(out), op.i32(step), op.i32Add, op.set(out));
  }
  emit(op.get(cp), op.i32(step), op.i32Add, op.set(cp));
  emit(op.get(w), op.i32(step), op.i32Add, op.tee(w), op.get(gEnd), op.i32Ne, op.brIf(0));
  emit(op.end);
  if (pass === "range") {
    for (const [v, at, fold] of [[mn, a, op.f32Min], [mx, b, op.f32Max]] as const) {
      emit(op.get(at), op.get(v), s(S.f32x4Extract, 0));
      for (let l = 1; l < 4; l++) emit(op.get(v), s(S.f32x4Extract, l), fold);
      emit(op.f32Store());
    }
  }
  emit(op.get(a), op.i32(4), op.i32Add, op.set(a), op.get(b), op.i32(4), op.i32Add, op.set(b));
  emit(op.get(w), op.get(rowEnd), op.i32Ne, op.brIf(0));
  emit(op.end);
  emit(op.get(rows), op.i32(1), op.i32Sub, op.tee(rows), op.brIf(0));
  emit(op.end);
  return { params: [...Array<number>(9).fill(I32), F64], results: [], locals: [I32, I32, I32, ...Array<number>(9).fill(V128)], body, export: "run" };
}

const align = (n: number) => Math.ceil(n / 64) * 64;
/** rows per thread at least */
const MIN_ROWS = 16;

export class FakeQuantizer {
  private readonly ng: number;
  private readonly at: { w: number; out: number; c: number; clip: number; a: number; b: number };
  private readonly sOut = new Float64Array(1);

  private constructor(private readonly pool: WasmPool, W: Float32Array, readonly N: number, readonly K: number, readonly G: number, readonly bits: Bits) {
    this.ng = K / G;
    const groups = 4 * N * this.ng;
    let p = 64 * MAX_THREADS;
    const take = (bytes: number) => { const at = p; p = align(p + bytes); return at; };
    this.at = { w: take(4 * N * K), out: take(4 * N * K), c: take(4 * K), clip: take(groups), a: take(groups), b: take(groups) };
    pool.reserve(p, "AWQ weight");
    pool.f32(this.at.w, N * K).set(W);
  }

  /** A quantizer for W (N×K) in `bits`-bit min-max groups, or undefined where the kernel does not take the
   * shape (groups not a multiple of 4 weights: `fakeQuantizeRtn` then). */
  static create(W: Float32Array, N: number, K: number, bits: Bits, groupSize: number, threads?: number): FakeQuantizer | undefined {
    const G = effectiveGroupSize(K, groupSize);
    if (G % 4 !== 0 || K % G !== 0 || N === 0) return undefined;
    return new FakeQuantizer(borrowPool(threads), W, N, K, G, bits);
  }

  /** The candidate weight into `out`: W scaled by `c` per input column (then divided back), or clamped to
   * ±clip per (row, group) (row-major N × K/G; float32 values), or W itself. */
  async run(out: Float32Array, opts: { c?: Float32Array; clip?: Float32Array } = {}): Promise<Float32Array> {
    const { N, K, G, ng, at, pool } = this;
    const variant: Variant = opts.c ? "scaled" : opts.clip ? "clipped" : "plain";
    if (opts.c) pool.f32(at.c, K).set(opts.c);
    if (opts.clip) pool.f32(at.clip, N * ng).set(opts.clip);
    const maxq = (1 << this.bits) - 1;
    const parts = Math.max(1, Math.min(pool.threads, Math.floor(N / MIN_ROWS)));
    const start = (i: number) => Math.floor((i * N) / parts);
    const args = (i: number) => {
      const r0 = start(i), g0 = 4 * r0 * ng;
      return [at.w + 4 * r0 * K, at.c, at.clip + g0, at.a + g0, at.b + g0, at.out + 4 * r0 * K, start(i + 1) - r0, K, G, maxq];
    };
    const all = Array.from({ length: parts }, (_, i) => args(i));
    for (const pass of ["range", "quant"] as const) {
      const key = `fake-quant/${pass}/${variant}`;
      pool.kernel(key, () => encodeModule([passFunc(pass, variant)], 1, MAX_PAGES));
      if (pass === "quant") {
        // min and max → scale and zero per group, by the same function as quantizeRtn
        const a = pool.f32(at.a, N * ng), b = pool.f32(at.b, N * ng);
        for (let i = 0; i < N * ng; i++) {
          b[i] = groupParams(a[i], b[i], this.bits, false, "minmax", this.sOut);
          a[i] = this.sOut[0];
        }
      }
      await pool.run(key, all);
    }
    out.set(pool.f32(at.out, N * K));
    return out;
  }

  release(): void {
    returnPool(this.pool);
  }
}
