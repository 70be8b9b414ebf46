/** Round-to-nearest group quantization on WebAssembly SIMD threads, two products of one kernel:
 *  - `codes`: the codes, scales and zeros `quantizeRtn` computes (any rule, sym or asym);
 *  - `dequantized`: AWQ's candidate weights — min-max asymmetric groups (§4.1) of clamp(W, ±m)·diag(c),
 *    quantized and dequantized, ÷ diag(c) — the float32 values `fakeQuantizeRtn` computes.
 * Both bit for bit: each per-weight step is the same IEEE operation JavaScript performs (divisions in
 * float64 lanes, as on JS numbers), and the group parameters come from the same `groupParams`, between a
 * pass for each group's range and a pass that quantizes. The weight is copied into the kernel's memory
 * once and serves every candidate of a search (20 scale grids, 10 clipping ratios); rows are split
 * between this thread and helper threads. */
import { type FuncDef, F64, I32, S, V128, encodeModule, op, vconstI32, vload } from "../tensor/wasm.js";
import { MAX_PAGES, MAX_THREADS, type WasmPool, borrowPool, returnPool } from "../tensor/wasm-pool.js";
import { type Bits, type QuantSpec, type QuantizedMatrix, checkSpec, effectiveGroupSize, groupParams, quantizeRtn, trivialGIdx } from "./quantizer.js";

type Variant = "plain" | "scaled" | "clipped";
type Pass = "range" | "quant" | "codes";

/** `run(w, c, clip, a, b, out, rows, K, G, maxq)` over `rows` rows of K floats in groups of G. Pass "range":
 * each group's min and max (float32 at a, b) of x = w (·c, or clamped to ±clip[group]). With scale and zero
 * per group at a, b, code = clamp(round(x/scale) + zero, 0, maxq): pass "codes" writes it (a byte per
 * weight), pass "quant" writes scale·(code − zero) [÷ c] (float32). */
function passFunc(pass: Pass, variant: Variant): FuncDef {
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
    // pmin/pmax (one instruction each; min/max must order ±0 and NaN, several): the weights are finite, and a
    // group minimum or maximum of −0 instead of +0 gives the same scale and zero in groupParams
    emit(op.get(mn), op.get(x), s(S.f32x4Pmin), op.set(mn), op.get(mx), op.get(x), s(S.f32x4Pmax), op.set(mx));
  } else {
    // clamp(round_half_even(x/scale) + zero, 0, maxq), in float64 as JavaScript computes it
    emit(op.get(x), s(S.f64x2PromoteLow), op.get(scv), s(S.f64x2Div), s(S.f64x2Nearest), op.get(zv), s(S.f64x2Add));
    emit(vconstI32(0), s(S.f64x2Pmax), op.get(mqv), s(S.f64x2Pmin));
  }
  if (pass === "codes") {
    // + 2⁵²: each lane's integer lands in its low mantissa bits; bytes 0 and 8 are the two codes
    emit(op.simd(S.const, ...new Uint8Array(new Float64Array([2 ** 52, 2 ** 52]).buffer)), s(S.f64x2Add), op.set(q));
    emit(op.get(out), op.get(q), op.get(q), s(S.shuffle, 0, 8, ...Array<number>(14).fill(0)), s(S.store16Lane, 0, 0, 0));
    emit(op.get(out), op.i32(2), op.i32Add, op.set(out));
  }
  if (pass === "quant") {
    emit(op.get(zv), s(S.f64x2Sub), op.get(scv), s(S.f64x2Mul));
    emit(s(S.f32x4DemoteF64x2Zero), op.set(q)); // Math.fround: exact product of an f16 scale and a small integer, rounded once
    if (variant === "scaled") emit(op.get(q), s(S.f64x2PromoteLow), load(cp), s(S.f64x2PromoteLow), s(S.f64x2Div), s(S.f32x4DemoteF64x2Zero), op.set(q));
    emit(op.get(out), op.get(q), s(S.store64Lane, 3, 0, 0));
    emit(op.get(out), op.i32(step), op.i32Add, op.set(out));
  }
  if (variant === "scaled") emit(op.get(cp), op.i32(step), op.i32Add, op.set(cp));
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
/** the weight and its product in one memory, below the 4 GiB limit */
const MAX_BYTES = 3 * 2 ** 30;

export class RtnKernel {
  private readonly ng: number;
  private readonly at: { w: number; out: number; c: number; clip: number; a: number; b: number };
  private readonly sOut = new Float64Array(1);

  private constructor(private readonly pool: WasmPool, W: Float32Array, readonly N: number, readonly K: number, readonly G: number, product: "codes" | "dequantized") {
    this.ng = K / G;
    const groups = 4 * N * this.ng;
    let p = 64 * MAX_THREADS;
    const take = (bytes: number) => { const at = p; p = align(p + bytes); return at; };
    const outBytes = product === "codes" ? N * K : 4 * N * K;
    this.at = { w: take(4 * N * K), out: take(outBytes), c: take(4 * K), clip: take(groups), a: take(groups), b: take(groups) };
    pool.reserve(p, "quantization");
    pool.f32(this.at.w, N * K).set(W);
  }

  /** A kernel holding W (N×K) in groups of `groupSize` for one product, or undefined where it does not take
   * the shape (groups not a multiple of 4 weights, or not dividing K; a weight whose copies would not fit
   * the 32-bit memory): `quantizeRtn`/`fakeQuantizeRtn` then. */
  static create(W: Float32Array, N: number, K: number, groupSize: number, product: "codes" | "dequantized", threads?: number): RtnKernel | undefined {
    const G = effectiveGroupSize(K, groupSize);
    if (G % 4 !== 0 || K % G !== 0 || N === 0 || (product === "codes" ? 5 : 8) * N * K > MAX_BYTES) return undefined;
    return new RtnKernel(borrowPool(threads), W, N, K, G, product);
  }

  /** quantizeRtn(W, …, spec): the same codes, scales and zeros. */
  async codes(spec: QuantSpec): Promise<QuantizedMatrix> {
    checkSpec(spec);
    const { N, K, G, ng, at, pool } = this;
    await this.passes("codes", "plain", spec);
    return {
      N, K, bits: spec.bits, groupSize: G, sym: spec.sym, codes: pool.bytes(at.out, N * K).slice(),
      scales: pool.f32(at.a, N * ng).slice(), zeros: Uint8Array.from(pool.f32(at.b, N * ng)), gIdx: trivialGIdx(K, G),
    };
  }

  /** AWQ's candidate weight into `out` (min-max asymmetric `bits`-bit groups): W scaled by `c` per input
   * column (then divided back), or clamped to ±clip per (row, group) (row-major N × K/G; float32 values),
   * or W itself — fakeQuantizeRtn's values. */
  async dequantized(out: Float32Array, bits: Bits, opts: { c?: Float32Array; clip?: Float32Array } = {}): Promise<Float32Array> {
    const { N, K, G, ng, at, pool } = this;
    if (opts.c) pool.f32(at.c, K).set(opts.c);
    if (opts.clip) pool.f32(at.clip, N * ng).set(opts.clip);
    await this.passes("quant", opts.c ? "scaled" : opts.clip ? "clipped" : "plain", { bits, groupSize: G, sym: false, rule: "minmax" });
    out.set(pool.f32(at.out, N * K));
    return out;
  }

  /** The range pass, the group parameters (in JavaScript, by the same function as quantizeRtn), then `pass`. */
  private async passes(pass: "codes" | "quant", variant: Variant, spec: QuantSpec): Promise<void> {
    const { N, K, G, ng, at, pool } = this;
    const maxq = (1 << spec.bits) - 1;
    const parts = Math.max(1, Math.min(pool.threads, Math.floor(N / MIN_ROWS)));
    const start = (i: number) => Math.floor((i * N) / parts);
    const args = Array.from({ length: parts }, (_, i) => {
      const r0 = start(i), g0 = 4 * r0 * ng;
      return [at.w + 4 * r0 * K, at.c, at.clip + g0, at.a + g0, at.b + g0, at.out + (pass === "codes" ? 1 : 4) * r0 * K, start(i + 1) - r0, K, G, maxq];
    });
    for (const p of ["range", pass] as const) {
      const key = `rtn/${p}/${variant}`;
      pool.kernel(key, () => encodeModule([passFunc(p, variant)], 1, MAX_PAGES));
      if (p !== "range") {
        const a = pool.f32(at.a, N * ng), b = pool.f32(at.b, N * ng);
        for (let i = 0; i < N * ng; i++) {
          b[i] = groupParams(a[i], b[i], spec.bits, spec.sym, spec.rule, this.sOut);
          a[i] = this.sOut[0];
        }
      }
      await pool.run(key, args);
    }
  }

  release(): void {
    returnPool(this.pool);
  }
}

/** quantizeRtn on the kernel where it takes the shape (same result; rows on threads), else quantizeRtn. */
export async function quantizeRtnFast(W: Float32Array, N: number, K: number, spec: QuantSpec, threads?: number): Promise<QuantizedMatrix> {
  checkSpec(spec);
  const k = RtnKernel.create(W, N, K, spec.groupSize, "codes", threads);
  if (!k) return quantizeRtn(W, N, K, spec);
  try {
    return await k.codes(spec);
  } finally {
    k.release();
  }
}
