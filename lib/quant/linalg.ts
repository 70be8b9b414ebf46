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
  // row i of X from the rows above it: X[i, :i] = −(Σ_k L[i,k]·X[k, :]) / L[i,i] (contiguous inner loop)
  for (let i = 0; i < n; i++) {
    const o = i * n;
    for (let k = 0; k < i; k++) {
      const lik = L.data[o + k];
      if (lik === 0) continue;
      const r = k * n;
      for (let j = 0; j <= k; j++) X[o + j] += lik * X[r + j];
    }
    const inv = 1 / L.data[o + i];
    for (let j = 0; j < i; j++) X[o + j] *= -inv;
    X[o + i] = inv;
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

/** J·M·J: reverses row and column order — for a square row-major matrix, the flat array reversed. */
function reverseBoth(M: Mat): Mat {
  return { data: M.data.slice().reverse(), rows: M.rows, cols: M.cols };
}

/** Lower Cholesky factor L and its inverse X = L⁻¹ in one recursion: each level's L11⁻¹ is needed for
 * L21 anyway, so the inverse costs two extra Gemms per level instead of a second recursion. */
export async function choleskyWithInverse(math: OrtMath, A: Mat, offset = 0): Promise<{ L: Mat; X: Mat }> {
  const n = A.rows;
  if (n <= LEAF) {
    const L = cholLeaf(A, offset);
    return { L, X: triInvLeaf(L) };
  }
  const h = n >> 1;
  const { L: L11, X: X11 } = await choleskyWithInverse(math, slice(A, 0, h, 0, h), offset);
  const L21 = await math.gemm(slice(A, h, n, 0, h), X11, { transB: true });
  const S = await math.gemm(L21, L21, { transB: true, alpha: -1, beta: 1 }, slice(A, h, n, h, n));
  const { L: L22, X: X22 } = await choleskyWithInverse(math, S, offset + h);
  const T = await math.gemm(X22, L21);
  const X21 = await math.gemm(T, X11, { alpha: -1 });
  const L: Mat = { data: new Float32Array(n * n), rows: n, cols: n };
  place(L, L11, 0, 0);
  place(L, L21, h, 0);
  place(L, L22, h, h);
  const X: Mat = { data: new Float32Array(n * n), rows: n, cols: n };
  place(X, X11, 0, 0);
  place(X, X21, h, 0);
  place(X, X22, h, h);
  return { L, X };
}

/** GPTQ's `Hinv = chol_upper(H⁻¹)` with one factorization and one triangular inverse instead of three
 * factorizations: with J the reversal, H = U'·U'ᵀ for the upper U' = J·chol(J·H·J)·J, so
 * H⁻¹ = U'⁻ᵀ·U'⁻¹ and its upper Cholesky factor is U'⁻¹ = J·chol(J·H·J)⁻¹·J. */
export async function upperCholeskyOfInverse(math: OrtMath, H: Mat): Promise<Mat> {
  const n = H.rows;
  let X: Mat;
  try {
    X = (await choleskyWithInverse(math, reverseBoth(H))).X;
  } catch (e) {
    if (e instanceof NotPositiveDefinite) throw new NotPositiveDefinite(n - 1 - e.index);
    throw e;
  }
  return reverseBoth(X);
}
