/** Dense float32 matrix products on ONNX Runtime (one tiny cached session per Gemm variant, symbolic
 * dimensions), for the heavy arithmetic of GPTQ and AWQ: Hessians, triangular factors, lazy updates. */
import { GraphBuilder } from "../engine/onnx-builder.js";
import { createSession, ort } from "../engine/session.js";

export interface GemmOptions {
  transA?: boolean;
  transB?: boolean;
  /** Y = alpha·op(A)·op(B) + beta·C */
  alpha?: number;
  beta?: number;
}

/** A row-major float32 matrix. */
export interface Mat {
  data: Float32Array;
  rows: number;
  cols: number;
}

export class OrtMath {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();
  private intCheck: Promise<boolean> | undefined;

  constructor(private readonly threads?: number) {}

  private session(key: string, build: () => Uint8Array): Promise<ort.InferenceSession> {
    let s = this.sessions.get(key);
    if (!s) {
      s = createSession(build(), { threads: this.threads, spinning: false });
      this.sessions.set(key, s);
    }
    return s;
  }

  /** Y = alpha·op(A)·op(B) (+ beta·C when C is given). */
  async gemm(A: Mat, B: Mat, opts: GemmOptions = {}, C?: Mat): Promise<Mat> {
    const { transA = false, transB = false, alpha = 1, beta = 1 } = opts;
    const key = `gemm:${+transA}${+transB}:${alpha}:${C ? beta : "-"}`;
    const session = await this.session(key, () => {
      const g = new GraphBuilder("gemm");
      const ins = [g.input("A", "F32", ["a0", "a1"]), g.input("B", "F32", ["b0", "b1"])];
      if (C) ins.push(g.input("C", "F32", ["m", "n"]));
      g.node("Gemm", ins, ["Y"], { transA: +transA, transB: +transB, alpha: { float: alpha }, beta: { float: C ? beta : 0 } });
      g.output("Y", "F32", ["m", "n"]);
      return g.toBytes();
    });
    const feeds: Record<string, ort.Tensor> = {
      A: new ort.Tensor("float32", A.data, [A.rows, A.cols]),
      B: new ort.Tensor("float32", B.data, [B.rows, B.cols]),
    };
    if (C) feeds.C = new ort.Tensor("float32", C.data, [C.rows, C.cols]);
    const out = (await session.run(feeds)).Y;
    return { data: out.data as Float32Array, rows: Number(out.dims[0]), cols: Number(out.dims[1]) };
  }

  /** The (cols × rows) transpose of a row-major (rows × cols) float32 or uint8 matrix (MLAS's blocked
   * transpose: 3–8× a JavaScript loop at 4096², whose column-strided side misses the cache). */
  async transpose<T extends Float32Array | Uint8Array>(data: T, rows: number, cols: number): Promise<T> {
    const u8 = data instanceof Uint8Array;
    const session = await this.session(`transpose:${u8 ? "u8" : "f32"}`, () => {
      const g = new GraphBuilder("transpose");
      g.input("X", u8 ? "U8" : "F32", ["r", "c"]);
      g.node("Transpose", ["X"], ["Y"], { perm: [1, 0] });
      g.output("Y", u8 ? "U8" : "F32", ["c", "r"]);
      return g.toBytes();
    });
    const out = await session.run({ X: new ort.Tensor(u8 ? "uint8" : "float32", data, [rows, cols]) });
    return out.Y.data as T;
  }

  /** Upper block triangle of XᵀX for X (tokens × K) as one run(): X is transposed and split into row
   * blocks of Xᵀ inside the graph (one copy each), then one Gemm (transB, the natural inner-contiguous
   * layout) per block pair (i ≤ j). Returns the blocks keyed `i,j` (rows of block i × columns of block j). */
  async gramUpper(X: Float32Array, tokens: number, K: number, bs: number): Promise<Map<string, Mat>> {
    const sizes: number[] = [];
    for (let b = 0; b < K; b += bs) sizes.push(Math.min(bs, K - b));
    const nb = sizes.length;
    const session = await this.session(`gram:${K}:${bs}`, () => {
      const g = new GraphBuilder("gram");
      g.input("X", "F32", ["t", K]);
      const xt = g.op("Transpose", ["X"], { perm: [1, 0] });
      const parts = sizes.map((_, i) => `P${i}`);
      if (nb === 1) g.node("Identity", [xt], parts);
      else g.node("Split", [xt, g.initializer("sizes", "I64", [nb], new Uint8Array(BigInt64Array.from(sizes.map(BigInt)).buffer))], parts, { axis: 0 });
      for (let i = 0; i < nb; i++)
        for (let j = i; j < nb; j++) {
          g.node("Gemm", [parts[i], parts[j]], [`Y${i}_${j}`], { transB: 1 });
          g.output(`Y${i}_${j}`, "F32", [sizes[i], sizes[j]]);
        }
      return g.toBytes();
    });
    const out = await session.run({ X: new ort.Tensor("float32", X, [tokens, K]) });
    const blocks = new Map<string, Mat>();
    for (let i = 0; i < nb; i++) for (let j = i; j < nb; j++) blocks.set(`${i},${j}`, { data: out[`Y${i}_${j}`].data as Float32Array, rows: sizes[i], cols: sizes[j] });
    return blocks;
  }

  /** One column block of integer Grams, into `out` (views ONNX Runtime writes without a copy): for each plane
   * p, out[p] (rows × cols, int32) = Σ_t (a[p][i, t] − 128)·b[p][t, k] — u8×s8 MatMulInteger, zero point
   * 128. a[p]: (rows × tokens) uint8, b[p]: (tokens × cols) int8. */
  async gramColumnInt(a: Uint8Array[], b: Int8Array[], out: Int32Array[], tokens: number, rows: number, cols: number): Promise<void> {
    const planes = a.length;
    const session = await this.session(`gramColumnInt:${planes}`, () => {
      const g = new GraphBuilder("gram_int");
      const zp = g.initializer("zp", "U8", [], new Uint8Array([128]));
      for (let p = 0; p < planes; p++) {
        g.node("MatMulInteger", [g.input(`a${p}`, "U8", ["m", "t"]), g.input(`b${p}`, "I8", ["t", "n"]), zp], [`y${p}`]);
        g.output(`y${p}`, "I32", ["m", "n"]);
      }
      return g.toBytes();
    });
    const feeds: Record<string, ort.Tensor> = {}, fetches: Record<string, ort.Tensor> = {};
    for (let p = 0; p < planes; p++) {
      feeds[`a${p}`] = new ort.Tensor("uint8", a[p], [rows, tokens]);
      feeds[`b${p}`] = new ort.Tensor("int8", b[p], [tokens, cols]);
      fetches[`y${p}`] = new ort.Tensor("int32", out[p], [rows, cols]);
    }
    await session.run(feeds, fetches);
  }

  /** Whether MatMulInteger's u8×s8 products are exact here at the extremes the integer Gram feeds it
   * (255·127 and 255·(−128) in every pair): kernels without VNNI sum byte pairs into saturating int16. */
  intProductsExact(): Promise<boolean> {
    return (this.intCheck ??= (async () => {
      const n = 64;
      const session = await this.session("intCheck", () => {
        const g = new GraphBuilder("int_check");
        g.input("A", "U8", [2, n]);
        g.input("B", "I8", [n, 2]);
        g.node("MatMulInteger", ["A", "B", g.initializer("zp", "U8", [], new Uint8Array([128]))], ["Y"]);
        g.output("Y", "I32", [2, 2]);
        return g.toBytes();
      });
      const A = new Uint8Array(2 * n).fill(255).fill(0, n);
      const B = new Int8Array(2 * n);
      for (let k = 0; k < n; k++) { B[2 * k] = 127; B[2 * k + 1] = -128; }
      const Y = (await session.run({ A: new ort.Tensor("uint8", A, [2, n]), B: new ort.Tensor("int8", B, [n, 2]) })).Y.data as Int32Array;
      const want = [127 * 127 * n, -127 * 128 * n, -128 * 127 * n, 128 * 128 * n];
      return want.every((w, i) => Y[i] === w);
    })());
  }

  /** E[g, n] = mean over t of (Σ_j X[g, t, j]·(Q − W)[n, g·G + j])²: per-group partial-product errors of a
   * candidate Q of the (N × groups·G) weight W (AWQ clip search) as one batched MatMul; the difference is
   * rearranged to (groups, G, N) inside the graph. X: (groups, tokens, G). */
  async groupedSquaredMean(X: Float32Array, Q: Float32Array, W: Float32Array, groups: number, tokens: number, G: number, N: number): Promise<Float32Array> {
    const session = await this.session("groupedSquaredMean", () => {
      const g = new GraphBuilder("grouped_err");
      g.input("X", "F32", ["g", "t", "k"]);
      g.input("Q", "F32", ["n", "gk"]);
      g.input("W", "F32", ["n", "gk"]);
      g.input("shape", "I64", [3]);
      const d = g.op("Transpose", [g.op("Reshape", [g.op("Sub", ["Q", "W"]), "shape"])], { perm: [1, 2, 0] });
      const y = g.op("MatMul", ["X", d]);
      g.node("ReduceMean", [g.op("Mul", [y, y])], ["E"], { axes: [1], keepdims: 0 });
      g.output("E", "F32", ["g", "n"]);
      return g.toBytes();
    });
    const out = await session.run({
      X: new ort.Tensor("float32", X, [groups, tokens, G]), Q: new ort.Tensor("float32", Q, [N, groups * G]), W: new ort.Tensor("float32", W, [N, groups * G]),
      shape: new ort.Tensor("int64", BigInt64Array.from([N, groups, G].map(BigInt)), [3]),
    });
    return out.E.data as Float32Array;
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}

/** A copy of the sub-matrix rows [r0, r1) × cols [c0, c1). */
export function slice(m: Mat, r0: number, r1: number, c0: number, c1: number): Mat {
  const rows = r1 - r0;
  const cols = c1 - c0;
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) data.set(m.data.subarray((r0 + r) * m.cols + c0, (r0 + r) * m.cols + c1), r * cols);
  return { data, rows, cols };
}

/** Writes `src` into `dst` at (r0, c0). */
export function place(dst: Mat, src: Mat, r0: number, c0: number): void {
  for (let r = 0; r < src.rows; r++) dst.data.set(src.data.subarray(r * src.cols, (r + 1) * src.cols), (r0 + r) * dst.cols + c0);
}
