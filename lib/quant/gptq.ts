/** GPTQ (SPEC §5.2–5.3): Hessian accumulation and `fasterquant` with 128-column lazy blocks, damping
 * (with automatic increase when the Cholesky fails), act-order, static groups and sym/asym. The K×K
 * factorizations and the lazy block updates run as ONNX Runtime Gemms; the in-block column loop runs
 * on WebAssembly SIMD threads (`gptq-kernel.ts`), group parameters in JavaScript. */
import { LoralabError } from "../errors.js";
import { type Bits, type QuantizedMatrix, checkSpec, groupParams } from "./quantizer.js";
import { GptqColumns } from "./gptq-kernel.js";
import { NotPositiveDefinite, upperCholeskyOfInverse } from "./linalg.js";
import type { Mat, OrtMath } from "./ort-math.js";
import { IntGram, MAX_INT_TOKENS } from "./hessian-int.js";

export interface GptqOptions {
  bits: Bits;
  groupSize: number;
  sym: boolean;
  /** percdamp: fraction of mean(diag H) added to the diagonal */
  damp: number;
  descAct: boolean;
  staticGroups: boolean;
  blockSize?: number;
  /** added to `damp` after each failed Cholesky while damp < 1 (GPTQModel) */
  dampAutoIncrement?: number;
  /** threads of the column loop (default one per core up to 8); the result does not depend on it */
  threads?: number;
}

export interface GptqResult {
  q: QuantizedMatrix;
  /** Σ (w − q)² / Hinv[i,i]² / 2 over all weights — GPTQ's own error measure */
  loss: number;
  /** the damping that succeeded */
  damp: number;
  /** seconds: Cholesky/inverse, in-block column loop (group parameters and the SIMD kernel), lazy block updates (ORT) */
  timings: { hinv: number; columns: number; updates: number };
}

/** How XᵀX is summed: "int" — exact integer products of each batch's inputs on a 14-bit grid per column
 * (`hessian-int.ts`; 1.5–2× faster where MatMulInteger is exact, which is checked once), "float32" — float32
 * Gemms. Inputs whose width is not a multiple of 16, and machines without exact integer products, take
 * float32. */
export type HessianArithmetic = "int" | "float32";

export interface HessianOptions {
  arithmetic?: HessianArithmetic;
  /** width of the block products (default 512) */
  blockSize?: number;
  /** floats of inputs buffered before a run (default 2²⁶, 256 MB) */
  bufferFloats?: number;
}

/** Accumulates `H = 2/n · Σ XᵀX` over calibration batches (n counts sequences, as the reference does).
 * XᵀX is symmetric: on ORT only the upper blocks (`blockSize` wide) are computed (`OrtMath.gramUpper`, one
 * run() per batch; with 8 blocks that is 36 of 64 block products — or `IntGram`'s column blocks), and the
 * lower half is mirrored when the Hessian is read. Small batches are buffered (up to `bufferFloats`) so each run()
 * sees many tokens and the K² partial sums are added in JavaScript once per buffer; `finish()` flushes and
 * returns the Hessian. */
export class HessianAccumulator {
  samples = 0;
  /** whether `sum` holds anything yet (the first ORT run's blocks are copied into it, not added) */
  private filled = false;
  private buf: Float32Array | undefined;
  private buffered = 0;
  readonly blockSize: number;
  readonly bufferFloats: number;
  readonly arithmetic: HessianArithmetic;
  /** where the sums live: the integer path's memory, or a plain array */
  private int: IntGram | undefined;
  private own: Float32Array | undefined;
  private chosen = false;

  constructor(readonly K: number, opts: HessianOptions = {}) {
    this.blockSize = opts.blockSize ?? 512;
    this.bufferFloats = opts.bufferFloats ?? 1 << 26;
    this.arithmetic = opts.arithmetic ?? "int";
  }

  /** `x`: (tokens × K) inputs of the linear for `sequences` calibration sequences. */
  async add(math: OrtMath, x: Float32Array, tokens: number, sequences: number): Promise<void> {
    const K = this.K;
    await this.choose(math);
    const cap = this.int ? this.int.maxTokens : Math.max(1, Math.floor(this.bufferFloats / K));
    if (tokens * K * K >= 1 << 20 && tokens < cap / 2) {
      if (this.buffered + tokens > cap) await this.flush(math);
      const need = (this.buffered + tokens) * K;
      if (!this.int && (!this.buf || this.buf.length < need)) {
        // grow by doubling up to the cap (small models never allocate the full buffer)
        const grown = new Float32Array(Math.min(cap * K, Math.max(need, 2 * (this.buf?.length ?? 0))));
        if (this.buf) grown.set(this.buf.subarray(0, this.buffered * K));
        this.buf = grown;
      }
      this.buffer().set(x.subarray(0, tokens * K), this.buffered * K);
      this.buffered += tokens;
      this.samples += sequences;
      return;
    }
    await this.accumulate(math, x, tokens);
    this.samples += sequences;
  }

  /** Where batches are buffered: the integer path's input buffer (no copy before its run), or an array. */
  private buffer(): Float32Array {
    return this.int ? this.int.input : this.buf!;
  }

  /** Adds the buffered rows to the sum. */
  async flush(math: OrtMath): Promise<void> {
    if (this.buffered === 0) return;
    const n = this.buffered;
    this.buffered = 0;
    await this.accumulate(math, this.buffer().subarray(0, n * this.K), n);
  }

  /** Flushes, frees the buffers and returns the Hessian. */
  async finish(math: OrtMath): Promise<Float32Array> {
    await this.flush(math);
    this.buf = undefined;
    const H = await this.hessian(math);
    this.int = this.own = undefined;
    this.chosen = false;
    return H;
  }

  /** The K×K sums (upper triangle used), in the integer path's memory or an array of their own. */
  private get sum(): Float32Array {
    return this.int ? this.int.sum : (this.own ??= new Float32Array(this.K * this.K));
  }

  /** Picks the arithmetic before the first sum: integer products where asked for, fitting and exact. */
  private async choose(math: OrtMath): Promise<void> {
    if (this.chosen) return;
    this.chosen = true;
    const bs = Math.min(this.blockSize, this.K);
    const tokens = Math.min(MAX_INT_TOKENS, Math.max(1, Math.floor(this.bufferFloats / this.K)));
    if (this.arithmetic === "int" && IntGram.fits(this.K, bs) && (await math.intProductsExact())) {
      try {
        this.int = new IntGram(this.K, bs, tokens);
      } catch (e) {
        if (!(e instanceof RangeError)) throw e; // its WebAssembly memory could not be had: float32 then
      }
    }
  }

  private async accumulate(math: OrtMath, x: Float32Array, tokens: number): Promise<void> {
    const K = this.K;
    const s = this.sum;
    if (tokens * K * K < 1 << 20) {
      for (let t = 0; t < tokens; t++) {
        const row = t * K;
        for (let i = 0; i < K; i++) {
          const xi = x[row + i];
          if (xi === 0) continue;
          const o = i * K;
          for (let j = i; j < K; j++) s[o + j] += xi * x[row + j];
        }
      }
      this.filled = true;
    } else {
      const bs = Math.min(this.blockSize, K);
      const int = this.int;
      const step = int ? int.maxTokens : tokens;
      for (let t0 = 0; t0 < tokens; t0 += step) {
        const n = Math.min(step, tokens - t0);
        const part = x.subarray(t0 * K, (t0 + n) * K);
        if (int) await int.add(math, part, n);
        else this.addBlocks(await math.gramUpper(part, n, K, bs), bs);
        this.filled = true;
      }
    }
  }

  private addBlocks(blocks: Map<string, Mat>, bs: number): void {
    const K = this.K, s = this.sum;
    const first = !this.filled; // the first run's blocks are copied, later ones added
    for (const [key, m] of blocks) {
      const [bi, bj] = key.split(",").map(Number);
      const r0 = bi * bs, c0 = bj * bs;
      for (let r = 0; r < m.rows; r++) {
        const o = (r0 + r) * K + c0, src = r * m.cols;
        if (first) s.set(m.data.subarray(src, src + m.cols), o);
        else for (let c = 0; c < m.cols; c++) s[o + c] += m.data[src + c];
      }
    }
  }

  /** The Hessian (a fresh array): the upper triangle of the sum, scaled, and its mirror below, taken
   * row by row from the transposed sum (ORT's blocked transpose; mirroring element by element goes down
   * columns and misses the cache). */
  private async hessian(math: OrtMath): Promise<Float32Array> {
    const K = this.K, sum = this.sum;
    const f = this.samples > 0 ? 2 / this.samples : 0;
    const T = await math.transpose(sum, K, K);
    for (let i = 0; i < K; i++) {
      const o = i * K;
      for (let j = 0; j < i; j++) T[o + j] *= f;
      for (let j = i; j < K; j++) T[o + j] = sum[o + j] * f;
    }
    return T;
  }
}

/** What fasterquant takes from the Hessian alone, the same for every linear reading one input (q/k/v,
 * gate/up): the dead inputs, the act-order permutation and GPTQ's inverse factor of the damped Hessian. */
export interface GptqHessian {
  K: number;
  /** inputs whose Hessian diagonal is 0 (their weight columns are zeroed) */
  dead: number[];
  /** column order (descending Hessian diagonal with act-order, else identity) */
  perm: Int32Array;
  /** chol_upper(H⁻¹) of the permuted, damped Hessian (K×K) */
  Hi: Float32Array;
  /** the damping that succeeded */
  damp: number;
  seconds: number;
}

/** Dead inputs, act-order and the damped inverse factor of H (K×K, modified in place), with damping raised
 * while the factorization fails (GPTQModel's damp_auto_increment). */
export async function prepareHessian(math: OrtMath, H: Float32Array, K: number, opts: Pick<GptqOptions, "damp" | "descAct" | "dampAutoIncrement">): Promise<GptqHessian> {
  const t0 = performance.now();
  const dead: number[] = [];
  for (let i = 0; i < K; i++) {
    if (H[i * K + i] === 0) {
      H[i * K + i] = 1;
      dead.push(i);
    }
  }
  // act-order: process columns by descending Hessian diagonal
  const perm = Int32Array.from({ length: K }, (_, i) => i);
  let Hp = H;
  if (opts.descAct) {
    perm.sort((a, b) => H[b * K + b] - H[a * K + a] || a - b);
    Hp = new Float32Array(K * K);
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) Hp[i * K + j] = H[perm[i] * K + perm[j]];
  }
  let meanDiag = 0;
  for (let i = 0; i < K; i++) meanDiag += Hp[i * K + i];
  meanDiag /= K;
  const increment = opts.dampAutoIncrement ?? 0.0025;
  let damp = opts.damp;
  const base = Float32Array.from({ length: K }, (_, i) => Hp[i * K + i]);
  for (;;) {
    for (let i = 0; i < K; i++) Hp[i * K + i] = base[i] + damp * meanDiag;
    try {
      const Hi = (await upperCholeskyOfInverse(math, { data: Hp, rows: K, cols: K })).data;
      return { K, dead, perm, Hi, damp, seconds: (performance.now() - t0) / 1000 };
    } catch (e) {
      if (!(e instanceof NotPositiveDefinite)) throw e;
      damp += increment;
      if (!(increment > 0) || damp >= 1) throw new LoralabError(`GPTQ: the Hessian stays singular even with damp_percent ${damp.toFixed(4)} (too few or degenerate calibration inputs?)`);
    }
  }
}

/** Quantizes an (N×K) float32 weight with GPTQ given its Hessian (K×K, modified in place) or what
 * `prepareHessian` made of it (shared by the linears of one input; `opts.damp`/`descAct` then come from it). */
export async function gptqQuantize(math: OrtMath, W: Float32Array, N: number, K: number, H: Float32Array | GptqHessian, opts: GptqOptions): Promise<GptqResult> {
  checkSpec({ bits: opts.bits, groupSize: opts.groupSize, sym: opts.sym, rule: "gptq" });
  const prepared = H instanceof Float32Array ? await prepareHessian(math, H, K, opts) : H;
  if (prepared.K !== K) throw new Error(`internal: a Hessian of ${prepared.K} inputs for a linear of ${K}`);
  const bits = opts.bits;
  const maxq = (1 << bits) - 1;
  const G = opts.groupSize === -1 ? K : opts.groupSize;
  const grouped = opts.groupSize !== -1;
  const ng = Math.ceil(K / G);
  const blockSize = opts.blockSize ?? 128;
  const sOut = new Float64Array(1);

  // row-wise params of the original weight: per-channel (no groups) and static groups
  const paramsOf = (src: (n: number, k: number) => number, k0: number, k1: number, s: Float32Array, z: Uint8Array, at: number, stride: number) => {
    for (let n = 0; n < N; n++) {
      let min = Infinity, max = -Infinity;
      for (let k = k0; k < k1; k++) {
        const w = src(n, k);
        if (w < min) min = w;
        if (w > max) max = w;
      }
      z[n * stride + at] = groupParams(min, max, bits, opts.sym, "gptq", sOut);
      s[n * stride + at] = sOut[0];
    }
  };
  const scales = new Float32Array(N * ng);
  const zeros = new Uint8Array(N * ng);
  const orig = (n: number, k: number) => W[n * K + k];
  if (!grouped) paramsOf(orig, 0, K, scales, zeros, 0, 1);
  else if (opts.staticGroups) for (let g = 0; g < ng; g++) paramsOf(orig, g * G, Math.min(K, (g + 1) * G), scales, zeros, g, ng);

  // Wt: column i of W as a contiguous row (K × N)
  const Wt = await math.transpose(W, N, K);

  const { dead, perm, Hi, damp } = prepared;
  for (const i of dead) Wt.fill(0, i * N, (i + 1) * N);
  let Wp = Wt;
  if (perm.some((p, i) => p !== i)) {
    Wp = new Float32Array(K * N);
    for (let i = 0; i < K; i++) Wp.set(Wt.subarray(perm[i] * N, (perm[i] + 1) * N), i * N);
  }
  // the inverse factor is timed where it was computed (once per input)
  const timings = { hinv: H instanceof Float32Array ? prepared.seconds : 0, columns: 0, updates: 0 };
  let tic = performance.now();
  const toc = (k: keyof typeof timings) => {
    const now = performance.now();
    timings[k] += (now - tic) / 1000;
    tic = now;
  };

  const codesT = new Uint8Array(K * N); // row c = column c of the codes (contiguous writes)
  const gIdx = new Int32Array(K);
  const mins = new Float32Array(N);
  const maxs = new Float32Array(N);
  let loss = 0;
  // Left-looking when every group lies inside one block (or group params are fixed in advance): each
  // block receives all earlier blocks' updates in one Gemm, Hinv[0:i1, i1:i2]ᵀ·Err[0:i1] — only a
  // block-sized result leaves ORT, instead of the whole trailing matrix going in and out per block.
  const leftLooking = !grouped || opts.staticGroups || blockSize % G === 0;
  const Eall = leftLooking ? new Float32Array(K * N) : undefined;
  let E1 = new Float32Array(blockSize * N);
  const kern = GptqColumns.acquire(N, blockSize, opts.threads);
  const stride = kern.stride;
  // the current columns' scales and zeros, into the kernel's per-row arrays
  const useParams = (g: number) => {
    for (let n = 0; n < N; n++) {
      kern.s[n] = scales[n * ng + g];
      kern.z[n] = zeros[n * ng + g];
    }
  };
  if (!grouped) useParams(0);
  try {
    for (let i1 = 0; i1 < K; i1 += blockSize) {
      const i2 = Math.min(i1 + blockSize, K);
      const count = i2 - i1;
      if (Eall) {
        E1 = Eall.subarray(i1 * N, i2 * N);
        if (i1 > 0) {
          const Hcol = new Float32Array(i1 * count);
          for (let r = 0; r < i1; r++) Hcol.set(Hi.subarray(r * K + i1, r * K + i2), r * count);
          const upd = await math.gemm({ data: Hcol, rows: i1, cols: count }, { data: Eall.subarray(0, i1 * N), rows: i1, cols: N }, { transA: true, alpha: -1, beta: 1 }, { data: Wp.subarray(i1 * N, i2 * N), rows: count, cols: N });
          Wp.set(upd.data, i1 * N); // group parameters read the updated block from Wp
        }
        toc("updates");
      }
      for (let i = 0; i < count; i++) {
        kern.w.set(Wp.subarray((i1 + i) * N, (i1 + i + 1) * N), i * stride);
        kern.w.fill(0, i * stride + N, (i + 1) * stride); // padding rows: zero weight, zero error
        kern.h.set(Hi.subarray((i1 + i) * K + i1, (i1 + i) * K + i2), i * count);
      }
      // runs of columns that share their group parameters, each one kernel call
      for (let i = 0; i < count; ) {
        const col = i1 + i;
        let end = count;
        if (grouped && opts.staticGroups) {
          const g = Math.floor(perm[col] / G);
          end = i + 1;
          while (end < count && Math.floor(perm[i1 + end] / G) === g) end++;
          useParams(g);
        } else if (grouped) {
          end = Math.min(count, i + G - (col % G));
          if (col % G === 0) {
            // from the full matrix: lazy updates of earlier blocks, not this block's in-block updates
            const g = col / G;
            // min/max over the group's rows of the transposed weight (contiguous reads)
            mins.fill(Infinity);
            maxs.fill(-Infinity);
            for (let k = col; k < Math.min(K, col + G); k++) {
              const o = k * N;
              for (let n = 0; n < N; n++) {
                const w = Wp[o + n];
                if (w < mins[n]) mins[n] = w;
                if (w > maxs[n]) maxs[n] = w;
              }
            }
            for (let n = 0; n < N; n++) {
              zeros[n * ng + g] = groupParams(mins[n], maxs[n], bits, opts.sym, "gptq", sOut);
              scales[n * ng + g] = sOut[0];
            }
            useParams(g);
          }
        }
        for (let j = i; j < end; j++) gIdx[perm[i1 + j]] = !grouped ? 0 : opts.staticGroups ? Math.floor(perm[i1 + j] / G) : Math.floor((i1 + j) / G);
        loss += await kern.run(i, end, count, maxq);
        i = end;
      }
      for (let i = 0; i < count; i++) {
        E1.set(kern.e.subarray(i * stride, i * stride + N), i * N);
        codesT.set(kern.codes.subarray(i * stride, i * stride + N), perm[i1 + i] * N);
      }
      toc("columns");
      if (Eall) continue;
      // lazy batch update: W[:, i2:] −= Err1 · Hinv[i1:i2, i2:]  (here transposed: Wt[i2:] −= Hinvᵀ·E1)
      await lazyUpdate(math, Hi, K, i1, i2, K, E1.subarray(0, count * N), Wp.subarray(i2 * N, K * N), N);
      toc("updates");
    }
  } finally {
    kern.release();
  }
  const codes = await math.transpose(codesT, K, N);
  return { timings, q: { N, K, bits, groupSize: G, sym: opts.sym, codes, scales, zeros, gIdx }, loss, damp };
}

/** Rows j < rows of `W` (rows of length N) −= h[j]·e. A plain function: in the async caller the loop's
 * doubles would be boxed. */
function subtractOuter(W: Float32Array, e: Float32Array, h: Float32Array, rows: number, N: number): void {
  for (let j = 0; j < rows; j++) {
    const hj = h[j];
    if (hj === 0) continue;
    const o = j * N;
    for (let n = 0; n < N; n++) W[o + n] -= e[n] * hj;
  }
}

/** rows [r0, r1) of Hinv, columns [r1, c1): `tail` (the (c1 − r1) × N rows after the block, transposed
 * weight layout) −= Hinv[r0:r1, r1:c1]ᵀ · E, E = (r1 − r0) × N errors. ORT Gemm when large. */
async function lazyUpdate(math: OrtMath, Hi: Float32Array, K: number, r0: number, r1: number, c1: number, E: Float32Array, tail: Float32Array, N: number): Promise<void> {
  const count = r1 - r0;
  const rest = c1 - r1;
  if (rest <= 0) return;
  const Hblk = new Float32Array(count * rest);
  for (let i = 0; i < count; i++) Hblk.set(Hi.subarray((r0 + i) * K + r1, (r0 + i) * K + c1), i * rest);
  if (count * rest * N < 1 << 21) {
    for (let i = 0; i < count; i++) subtractOuter(tail, E.subarray(i * N, (i + 1) * N), Hblk.subarray(i * rest, (i + 1) * rest), rest, N);
    return;
  }
  const out = await math.gemm({ data: Hblk, rows: count, cols: rest }, { data: E, rows: count, cols: N }, { transA: true, alpha: -1, beta: 1 }, { data: tail, rows: rest, cols: N });
  tail.set(out.data);
}
