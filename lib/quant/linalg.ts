/** GPTQ's inverse Cholesky factor of a symmetric positive-definite float32 matrix. ORT has no Cholesky op,
 * so it is a recursive 2×2 block algorithm: leaves (≤ LEAF) in JavaScript float64, and every larger step a
 * Gemm on ONNX Runtime, where nearly all the flops land. */
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

/** J·M·J: reverses row and column order — for a square row-major matrix, the flat array reversed. */
function reverseBoth(M: Mat): Mat {
  return { data: M.data.slice().reverse(), rows: M.rows, cols: M.cols };
}

/** GPTQ's `Hinv = chol_upper(H⁻¹)` with one factorization and one triangular inverse instead of three
 * factorizations. Factor H = U·Uᵀ with U upper triangular (a Cholesky run from the last row up); then
 * H⁻¹ = U⁻ᵀ·U⁻¹, whose upper Cholesky factor is Y = U⁻¹. One recursion yields Y directly: with
 * H = [[A11, A12], [A21, A22]], U22 factors A22, U12 = A12·U22⁻ᵀ, U11 factors A11 − U12·U12ᵀ, and
 * Y = [[Y11, −Y11·U12·Y22], [0, Y22]] — every product a Gemm on ORT, U itself never assembled. Leaves
 * (≤ LEAF) are the lower algorithms above on the reversed block (J·A·J = (J·U·J)·(J·U·J)ᵀ). */
export async function upperCholeskyOfInverse(math: OrtMath, H: Mat, offset = 0): Promise<Mat> {
  const n = H.rows;
  if (n <= LEAF) {
    let L: Mat;
    try {
      L = cholLeaf(reverseBoth(H), 0);
    } catch (e) {
      if (e instanceof NotPositiveDefinite) throw new NotPositiveDefinite(offset + n - 1 - e.index);
      throw e;
    }
    return reverseBoth(triInvLeaf(L));
  }
  const h = n >> 1;
  const Y22 = await upperCholeskyOfInverse(math, slice(H, h, n, h, n), offset + h);
  const U12 = await math.gemm(slice(H, 0, h, h, n), Y22, { transB: true });
  const S = await math.gemm(U12, U12, { transB: true, alpha: -1, beta: 1 }, slice(H, 0, h, 0, h));
  const Y11 = await upperCholeskyOfInverse(math, S, offset);
  const Y12 = await math.gemm(Y11, await math.gemm(U12, Y22), { alpha: -1 });
  const Y: Mat = { data: new Float32Array(n * n), rows: n, cols: n };
  place(Y, Y11, 0, 0);
  place(Y, Y12, 0, h);
  place(Y, Y22, h, h);
  return Y;
}
