/** Cholesky factor and triangular inverse of symmetric positive-definite float32 matrices. ORT has no
 * Cholesky op, so both are recursive 2×2 block algorithms: leaves (≤ LEAF) in JavaScript float64, and
 * every larger step is a Gemm on ONNX Runtime, where nearly all the flops land. */
import { type Mat, type OrtMath, place, slice } from "./ort-math.js";

const LEAF = 192;

export class NotPositiveDefinite extends Error {
  constructor(readonly index: number) {
    super(`matrix is not positive definite (pivot ${index})`);
  }
}

/** Lower Cholesky factor of a small matrix in float64 (throws NotPositiveDefinite). */
function cholLeaf(A: Mat, offset: number): Mat {
  const n = A.rows;
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = A.data[j * n + j];
    for (let k = 0; k < j; k++) d -= L[j * n + k] * L[j * n + k];
    if (!(d > 0)) throw new NotPositiveDefinite(offset + j);
    const ljj = Math.sqrt(d);
    L[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = A.data[i * n + j];
      for (let k = 0; k < j; k++) s -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = s / ljj;
    }
  }
  return { data: Float32Array.from(L), rows: n, cols: n };
}

/** Inverse of a small lower-triangular matrix in float64. */
function triInvLeaf(L: Mat): Mat {
  const n = L.rows;
  const X = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    X[j * n + j] = 1 / L.data[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += L.data[i * n + k] * X[k * n + j];
      X[i * n + j] = -s / L.data[i * n + i];
    }
  }
  return { data: Float32Array.from(X), rows: n, cols: n };
}

/** Lower Cholesky factor L (A = L·Lᵀ). */
export async function cholesky(math: OrtMath, A: Mat, offset = 0): Promise<Mat> {
  const n = A.rows;
  if (n <= LEAF) return cholLeaf(A, offset);
  const h = n >> 1;
  const L11 = await cholesky(math, slice(A, 0, h, 0, h), offset);
  const X11 = await triInverseLower(math, L11);
  const L21 = await math.gemm(slice(A, h, n, 0, h), X11, { transB: true });
  const S = await math.gemm(L21, L21, { transB: true, alpha: -1, beta: 1 }, slice(A, h, n, h, n));
  const L22 = await cholesky(math, S, offset + h);
  const L: Mat = { data: new Float32Array(n * n), rows: n, cols: n };
  place(L, L11, 0, 0);
  place(L, L21, h, 0);
  place(L, L22, h, h);
  return L;
}

/** Inverse of a lower-triangular matrix. */
export async function triInverseLower(math: OrtMath, L: Mat): Promise<Mat> {
  const n = L.rows;
  if (n <= LEAF) return triInvLeaf(L);
  const h = n >> 1;
  const X11 = await triInverseLower(math, slice(L, 0, h, 0, h));
  const X22 = await triInverseLower(math, slice(L, h, n, h, n));
  const T = await math.gemm(X22, slice(L, h, n, 0, h));
  const X21 = await math.gemm(T, X11, { alpha: -1 });
  const X: Mat = { data: new Float32Array(n * n), rows: n, cols: n };
  place(X, X11, 0, 0);
  place(X, X21, h, 0);
  place(X, X22, h, h);
  return X;
}

/** J·M·J: reverses row and column order. */
function reverseBoth(M: Mat): Mat {
  const n = M.rows;
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] = M.data[(n - 1 - i) * n + (n - 1 - j)];
  return { data: out, rows: n, cols: n };
}

/** GPTQ's `Hinv = chol_upper(H⁻¹)` with one factorization and one triangular inverse instead of three
 * factorizations: with J the reversal, H = U'·U'ᵀ for the upper U' = J·chol(J·H·J)·J, so
 * H⁻¹ = U'⁻ᵀ·U'⁻¹ and its upper Cholesky factor is U'⁻¹ = J·chol(J·H·J)⁻¹·J. */
export async function upperCholeskyOfInverse(math: OrtMath, H: Mat): Promise<Mat> {
  const n = H.rows;
  let L: Mat;
  try {
    L = await cholesky(math, reverseBoth(H));
  } catch (e) {
    if (e instanceof NotPositiveDefinite) throw new NotPositiveDefinite(n - 1 - e.index);
    throw e;
  }
  return reverseBoth(await triInverseLower(math, L));
}
