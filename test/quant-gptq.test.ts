import assert from "node:assert/strict";
import { HessianAccumulator, gptqQuantize, prepareHessian } from "../lib/quant/gptq.js";
import { GRID } from "../lib/quant/hessian-int.js";
import { upperCholeskyOfInverse } from "../lib/quant/linalg.js";
import { OrtMath } from "../lib/quant/ort-math.js";
import { dequantize, quantizeRtn, roundHalfEven } from "../lib/quant/quantizer.js";
import { roundToF16 } from "../lib/tensor/half.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

/** Correlated inputs (tokens × K): a few shared factors plus noise, scaled per column. */
function inputs(T: number, K: number, seed: number): Float32Array {
  const r = rng(seed);
  const F = 6;
  const mix = Array.from({ length: F * K }, () => gauss(r));
  const colScale = Array.from({ length: K }, () => 0.2 + 3 * r() ** 3);
  const x = new Float32Array(T * K);
  for (let t = 0; t < T; t++) {
    const f = Array.from({ length: F }, () => gauss(r));
    for (let k = 0; k < K; k++) {
      let v = 0.3 * gauss(r);
      for (let i = 0; i < F; i++) v += f[i] * mix[i * K + k];
      x[t * K + k] = v * colScale[k];
    }
  }
  return x;
}

function weights(N: number, K: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: N * K }, () => gauss(r) * 0.05);
}

// ---- float64 reference: IST-DASLab fasterquant written plainly (no lazy batching, explicit inverses) ----
function chol64(A: Float64Array, n: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = A[j * n + j];
    for (let k = 0; k < j; k++) d -= L[j * n + k] ** 2;
    L[j * n + j] = Math.sqrt(d);
    for (let i = j + 1; i < n; i++) {
      let s = A[i * n + j];
      for (let k = 0; k < j; k++) s -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = s / L[j * n + j];
    }
  }
  return L;
}
function inverseSpd64(A: Float64Array, n: number): Float64Array {
  const L = chol64(A, n);
  // solve L Lᵀ X = I column by column
  const X = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = 0; k < i; k++) s -= L[i * n + k] * y[k];
      y[i] = s / L[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = y[i];
      for (let k = i + 1; k < n; k++) s -= L[k * n + i] * X[k * n + c];
      X[i * n + c] = s / L[i * n + i];
    }
  }
  return X;
}
function hinvRef(H: Float64Array, n: number): Float64Array {
  const L = chol64(inverseSpd64(H, n), n);
  const U = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) U[i * n + j] = L[j * n + i];
  return U;
}
/** `blockSize`: GPTQ's lazy blocks, whose only visible effect is that a group starting inside a block takes
 * its parameters from the weight as it was at the block's start (§5.3.8); without it, the plain loop. */
function gptqRef(W: Float32Array, N: number, K: number, H32: Float32Array, bits: number, G: number, damp: number, blockSize = 1) {
  const H = Float64Array.from(H32);
  let mean = 0;
  for (let i = 0; i < K; i++) mean += H[i * K + i] / K;
  for (let i = 0; i < K; i++) H[i * K + i] += damp * mean;
  const Hi = hinvRef(H, K);
  const w = Float64Array.from(W);
  const out = new Float64Array(N * K);
  const maxq = 2 ** bits - 1;
  const s = new Float64Array(N), z = new Float64Array(N);
  let loss = 0;
  let atBlockStart = w;
  for (let i = 0; i < K; i++) {
    if (i % blockSize === 0) atBlockStart = w.slice();
    if (i % G === 0) {
      for (let n = 0; n < N; n++) {
        let mn = 0, mx = 0;
        for (let k = i; k < i + G; k++) { mn = Math.min(mn, atBlockStart[n * K + k]); mx = Math.max(mx, atBlockStart[n * K + k]); }
        const m = Math.max(-mn, mx);
        s[n] = roundToF16((2 * m) / maxq);
        z[n] = (maxq + 1) / 2;
      }
    }
    for (let n = 0; n < N; n++) {
      const x = w[n * K + i];
      const q = s[n] * (Math.min(maxq, Math.max(0, roundHalfEven(x / s[n]) + z[n])) - z[n]);
      out[n * K + i] = q;
      const e = (x - q) / Hi[i * K + i];
      loss += (x - q) ** 2 / Hi[i * K + i] ** 2 / 2;
      for (let j = i + 1; j < K; j++) w[n * K + j] -= e * Hi[i * K + j];
    }
  }
  return { out, loss };
}

/** The Hessian of inputs x (T × K) accumulated as the pipeline does. */
async function hessianOf(math: OrtMath, x: Float32Array, T: number, K: number, sequences: number): Promise<Float32Array> {
  const acc = new HessianAccumulator(K);
  await acc.add(math, x, T, sequences);
  return acc.finish(math);
}

/** GPTQ's result against the float64 reference: ≥ 99.5% of the dequantized weights equal, loss within 1%. */
function assertMatchesReference(res: { q: Parameters<typeof dequantize>[0]; loss: number }, ref: { out: Float64Array; loss: number }, label = ""): void {
  const got = dequantize(res.q);
  let same = 0;
  for (let i = 0; i < got.length; i++) if (Math.abs(got[i] - ref.out[i]) < 1e-6) same++;
  assert.ok(same / got.length > 0.995, `${label}only ${same}/${got.length} weights equal the reference`);
  assert.ok(Math.abs(res.loss - ref.loss) / ref.loss < 1e-2, `${label}loss ${res.loss} vs ${ref.loss}`);
}

function outputError(x: Float32Array, T: number, K: number, W: Float32Array, What: Float32Array, N: number): number {
  let e = 0;
  for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
    let d = 0;
    for (let k = 0; k < K; k++) d += x[t * K + k] * (W[n * K + k] - What[n * K + k]);
    e += d * d;
  }
  return e;
}

describe("GPTQ (SPEC §5)", function () {
  this.timeout(60000);
  const math = new OrtMath();
  after(() => math.release());

  it("upper Cholesky of H⁻¹ (ORT recursive path, K = 500) matches float64 within 5e-4 relative", async () => {
    const K = 500, T = 2000;
    const x = inputs(T, K, 1);
    const H = await hessianOf(math, x, T, K, 4);
    for (let i = 0; i < K; i++) H[i * K + i] += 0.01 * 1;
    const U = await upperCholeskyOfInverse(math, { data: Float32Array.from(H), rows: K, cols: K });
    const ref = hinvRef(Float64Array.from(H), K);
    let num = 0, den = 0;
    for (let i = 0; i < K * K; i++) { num += (U.data[i] - ref[i]) ** 2; den += ref[i] ** 2; }
    assert.ok(Math.sqrt(num / den) < 5e-4, `rel err ${Math.sqrt(num / den)}`);
  });

  it("OrtMath.transpose: float32 and uint8, from views into larger buffers", async () => {
    const rows = 37, cols = 53;
    const f = Float32Array.from({ length: rows * cols + 11 }, (_, i) => i * 0.5 - 7);
    const u = Uint8Array.from({ length: rows * cols + 5 }, (_, i) => (i * 31) & 255);
    const fv = f.subarray(11), uv = u.subarray(5);
    const ft = await math.transpose(fv, rows, cols);
    const ut = await math.transpose(uv, rows, cols);
    assert.ok(ft instanceof Float32Array && ut instanceof Uint8Array);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
      assert.equal(ft[c * rows + r], fv[r * cols + c]);
      assert.equal(ut[c * rows + r], uv[r * cols + c]);
    }
  });

  it("Hessian = 2/n Σ XᵀX (JS path, and ORT upper blocks mirrored, agree with float64)", async () => {
    const K = 96, T = 300;
    const x = inputs(T, K, 2);
    for (const split of [1, 2, 3]) {
      // split 1: 300·96² ≥ 2^20 → ORT with 40-wide blocks (3 blocks, one partial); split 2: two ORT runs
      // (a buffer too small to hold either: the first run's blocks copied, the second's added); split 3: JS
      const acc = new HessianAccumulator(K, { arithmetic: "float32", blockSize: 40, bufferFloats: split === 2 ? K * 200 : undefined });
      const per = T / split;
      for (let b = 0; b < split; b++) await acc.add(math, x.subarray(b * per * K, (b + 1) * per * K), per, 2);
      const H = await acc.finish(math);
      for (const [i, j] of [[0, 0], [5, 17], [95, 3], [3, 95], [50, 90], [90, 50]]) {
        let ref = 0;
        for (let t = 0; t < T; t++) ref += x[t * K + i] * x[t * K + j];
        ref *= 2 / (2 * split);
        assert.ok(Math.abs(H[i * K + j] - ref) <= 1e-4 * Math.abs(ref) + 1e-3);
      }
    }
  });

  it("matches a float64 reference fasterquant (sym 4-bit, g32) and beats RTN on the layer output", async () => {
    const N = 48, K = 256, T = 1024;
    const x = inputs(T, K, 3);
    const W = weights(N, K, 4);
    const H = await hessianOf(math, x, T, K, 8);
    const ref = gptqRef(W, N, K, H, 4, 32, 0.01);
    // block size = group size: every group starts a block, so the reference's group parameters (taken from
    // the matrix without the in-block updates, §5.3.8) coincide with the plain fully-updated loop
    const res = await gptqQuantize(math, W, N, K, Float32Array.from(H), { bits: 4, groupSize: 32, sym: true, damp: 0.01, descAct: false, staticGroups: false, blockSize: 32 });
    assertMatchesReference(res, ref);
    const got = dequantize(res.q);
    const rtn = dequantize(quantizeRtn(W, N, K, { bits: 4, groupSize: 32, sym: true, rule: "gptq" }));
    const eG = outputError(x, T, K, W, got, N);
    const eR = outputError(x, T, K, W, rtn, N);
    assert.ok(eG < 0.8 * eR, `GPTQ output error ${eG} vs RTN ${eR}`);
  });

  it("rows that fill no whole SIMD chunk (N = 37), blocks that groups do not divide (G = 24): as the float64 reference", async () => {
    const N = 37, K = 96, T = 400;
    const x = inputs(T, K, 11);
    const W = weights(N, K, 12);
    const H = await hessianOf(math, x, T, K, 4);
    // block 24 = group 24 (left-looking path); block 32 ∤ 24 (right-looking lazy updates, groups across blocks)
    for (const blockSize of [24, 32]) {
      const ref = gptqRef(W, N, K, H, 3, 24, 0.01, blockSize);
      const res = await gptqQuantize(math, W, N, K, Float32Array.from(H), { bits: 3, groupSize: 24, sym: true, damp: 0.01, descAct: false, staticGroups: false, blockSize });
      assertMatchesReference(res, ref, `block ${blockSize}: `);
    }
  });

  it("the column kernel split over 1, 2 or 3 threads gives the same codes (N = 1000)", async () => {
    const N = 1000, K = 64, T = 300;
    const x = inputs(T, K, 13);
    const W = weights(N, K, 14);
    const H = await hessianOf(math, x, T, K, 4);
    const runs = [];
    for (const threads of [1, 2, 3]) runs.push(await gptqQuantize(math, W, N, K, Float32Array.from(H), { bits: 4, groupSize: 32, sym: true, damp: 0.01, descAct: true, staticGroups: false, blockSize: 32, threads }));
    for (const r of runs.slice(1)) {
      assert.deepEqual(r.q.codes, runs[0].q.codes);
      assert.deepEqual(r.q.scales, runs[0].q.scales);
      assert.ok(Math.abs(r.loss - runs[0].loss) <= 1e-9 * runs[0].loss);
    }
    // act-order is the plain algorithm on columns sorted by descending Hessian diagonal (stable)
    const perm = Array.from({ length: K }, (_, i) => i).sort((a, b) => H[b * K + b] - H[a * K + a] || a - b);
    const Wp = Float32Array.from({ length: N * K }, (_, i) => W[Math.floor(i / K) * K + perm[i % K]]);
    const Hp = Float32Array.from({ length: K * K }, (_, i) => H[perm[Math.floor(i / K)] * K + perm[i % K]]);
    const ref = gptqRef(Wp, N, K, Hp, 4, 32, 0.01).loss;
    assert.ok(Math.abs(runs[0].loss - ref) / ref < 1e-2, `loss ${runs[0].loss} vs float64 ${ref}`);
  });

  it("lazy 128-column blocks (ORT update path) equal the plain loop (8-bit, per channel)", async () => {
    const N = 160, K = 256, T = 600;
    const x = inputs(T, K, 8);
    const W = weights(N, K, 9);
    const H = await hessianOf(math, x, T, K, 4);
    const ref = gptqRef(W, N, K, H, 8, K, 0.01);
    const res = await gptqQuantize(math, W, N, K, Float32Array.from(H), { bits: 8, groupSize: -1, sym: true, damp: 0.01, descAct: false, staticGroups: false });
    const got = dequantize(res.q);
    let same = 0;
    for (let i = 0; i < got.length; i++) if (Math.abs(got[i] - ref.out[i]) < 1e-6) same++;
    assert.ok(same / got.length > 0.995, `only ${same}/${got.length} weights equal the reference`);
  });

  for (const [descAct, staticGroups] of [[true, false], [true, true], [false, true]] as const) {
    it(`act-order=${descAct} static_groups=${staticGroups}: g_idx convention and better than RTN (3-bit asym)`, async () => {
      const N = 32, K = 128, T = 512;
      const x = inputs(T, K, 5);
      const W = weights(N, K, 6);
      const H = await hessianOf(math, x, T, K, 4);
      const res = await gptqQuantize(math, W, N, K, H, { bits: 3, groupSize: 32, sym: false, damp: 0.01, descAct, staticGroups });
      const g = Array.from(res.q.gIdx);
      if (staticGroups) assert.deepEqual(g, g.map((_, k) => Math.floor(k / 32)));
      else {
        assert.notDeepEqual(g, g.map((_, k) => Math.floor(k / 32)));
        for (let b = 0; b < 4; b++) assert.equal(g.filter((v) => v === b).length, 32);
      }
      const rtn = dequantize(quantizeRtn(W, N, K, { bits: 3, groupSize: 32, sym: false, rule: "gptq" }));
      assert.ok(outputError(x, T, K, W, dequantize(res.q), N) < outputError(x, T, K, W, rtn, N));
    });
  }

  it("one prepared Hessian (dead input, act-order, damping) serves several linears with the result each gets alone", async () => {
    const K = 96, T = 400;
    const x = inputs(T, K, 15);
    for (let t = 0; t < T; t++) x[t * K + 7] = 0; // a dead input
    const H = await hessianOf(math, x, T, K, 4);
    const opts = { bits: 4 as const, groupSize: 32, sym: false, damp: 0.01, descAct: true, staticGroups: false };
    const shared = await prepareHessian(math, Float32Array.from(H), K, opts);
    assert.deepEqual(shared.dead, [7]);
    for (const [N, seed] of [[24, 16], [40, 17]]) {
      const W = weights(N, K, seed);
      const alone = await gptqQuantize(math, W, N, K, Float32Array.from(H), opts);
      const withShared = await gptqQuantize(math, W, N, K, shared, opts);
      assert.deepEqual(withShared.q.codes, alone.q.codes);
      assert.deepEqual(withShared.q.gIdx, alone.q.gIdx);
      assert.equal(withShared.loss, alone.loss);
      const wh = dequantize(withShared.q);
      for (let n = 0; n < N; n++) assert.equal(wh[n * K + 7], 0);
    }
  });

  it("raises damping when the Hessian is singular instead of failing", async () => {
    const N = 8, K = 64;
    const W = weights(N, K, 7);
    // rank-1 Hessian with a zero diagonal entry (a dead input)
    const v = Float32Array.from({ length: K }, (_, i) => (i === 3 ? 0 : 1 + (i % 5)));
    const H = new Float32Array(K * K);
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) H[i * K + j] = v[i] * v[j];
    const res = await gptqQuantize(math, W, N, K, H, { bits: 4, groupSize: -1, sym: true, damp: 0, descAct: false, staticGroups: false });
    assert.ok(res.damp > 0);
    const wh = dequantize(res.q);
    for (let n = 0; n < N; n++) assert.equal(wh[n * K + 3], 0); // dead column zeroed
  });
});

describe("integer Hessian (14-bit grid, exact int8 products)", function () {
  this.timeout(120000);
  const math = new OrtMath();
  after(() => math.release());

  /** 2/n Σ x̃ᵢx̃ⱼ in float64 over `runs` (token ranges), x̃ = each run's inputs on its own grid: per column
   * m = max|x|, q = round_half_even(fround(x · fround(GRID/m))), x̃ = q · m/GRID. */
  function gridHessian(x: Float32Array, K: number, runs: [number, number][], n: number): Float64Array {
    const H = new Float64Array(K * K);
    const xt = new Float64Array(K);
    for (const [t0, t1] of runs) {
      const m = new Float64Array(K);
      for (let t = t0; t < t1; t++) for (let j = 0; j < K; j++) m[j] = Math.max(m[j], Math.abs(x[t * K + j]));
      const r = Array.from(m, (v) => (v > 0 ? Math.fround(GRID / v) : 0));
      for (let t = t0; t < t1; t++) {
        for (let j = 0; j < K; j++) xt[j] = roundHalfEven(Math.fround(x[t * K + j] * r[j])) * (m[j] / GRID);
        for (let i = 0; i < K; i++) for (let j = i; j < K; j++) H[i * K + j] += xt[i] * xt[j];
      }
    }
    for (let i = 0; i < K; i++) for (let j = i; j < K; j++) H[j * K + i] = H[i * K + j] *= 2 / n;
    return H;
  }

  /** max over (i, j) of |A − B| / sqrt(Bᵢᵢ Bⱼⱼ) */
  function maxScaledError(A: ArrayLike<number>, B: ArrayLike<number>, K: number): number {
    let e = 0;
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) {
      const s = Math.sqrt(B[i * K + i] * B[j * K + j]);
      if (s > 0) e = Math.max(e, Math.abs(A[i * K + j] - B[i * K + j]) / s);
    }
    return e;
  }

  it("equals the float64 Gram of the inputs on each run's grid, to float32 rounding (runs, padding, partial block, dead column)", async function () {
    if (!(await math.intProductsExact())) this.skip(); // the float32 path is taken there
    const K = 432, T = 1278; // blocks of 128: 3 full + 48; runs of 501, 600 and 177 tokens (padded to 4)
    const x = inputs(T, K, 11);
    for (let t = 0; t < T; t++) {
      x[t * K + 7] = 0; // a dead input
      if (t >= 501) x[t * K + 100] *= 40; // the later runs on a coarser grid for this column
    }
    const acc = new HessianAccumulator(K, { blockSize: 128, bufferFloats: 600 * K });
    await acc.add(math, x.subarray(0, 501 * K), 501, 1); // ≥ half the buffer: a run of its own
    await acc.add(math, x.subarray(501 * K), T - 501, 2); // split into runs of 600 + 177
    const H = await acc.finish(math);
    const ref = gridHessian(x, K, [[0, 501], [501, 1101], [1101, T]], 3);
    assert.ok(maxScaledError(H, ref, K) < 2e-6, `max scaled error ${maxScaledError(H, ref, K)}`);
    for (let j = 0; j < K; j++) assert.equal(H[7 * K + j], 0);
    // buffered batches: one run over all of them
    const buffered = new HessianAccumulator(K, { blockSize: 128, bufferFloats: 600 * K });
    for (let b = 0; b < 5; b++) await buffered.add(math, x.subarray(b * 100 * K, (b + 1) * 100 * K), 100, 1);
    const Hb = await buffered.finish(math);
    const refB = gridHessian(x, K, [[0, 500]], 5);
    assert.ok(maxScaledError(Hb, refB, K) < 2e-6, `buffered: max scaled error ${maxScaledError(Hb, refB, K)}`);
  });

  it("falls back to float32 where MatMulInteger is not exact, or the width is not a multiple of 16", async () => {
    class Saturating extends OrtMath {
      override intProductsExact(): Promise<boolean> {
        return Promise.resolve(false);
      }
    }
    const saturating = new Saturating();
    try {
      for (const [K, m] of [[256, saturating], [200, math]] as const) {
        const T = 700;
        const x = inputs(T, K, 14);
        const a = new HessianAccumulator(K);
        await a.add(m, x, T, 1);
        const b = new HessianAccumulator(K, { arithmetic: "float32" });
        await b.add(math, x, T, 1);
        assert.deepEqual(await a.finish(m), await b.finish(math), `K = ${K}`);
      }
    } finally {
      await saturating.release();
    }
  });

  it("is within 2e-5 of the float64 Hessian in norm; GPTQ on it gives the codes of the float32 Hessian within 1%", async () => {
    const N = 64, K = 512, T = 4096;
    const x = inputs(T, K, 12);
    for (let t = 0; t < T; t += 97) x[t * K + 3] = 60; // an outlier token in one column
    const H64 = new Float64Array(K * K);
    for (let t = 0; t < T; t++) for (let i = 0; i < K; i++) {
      const xi = x[t * K + i];
      for (let j = i; j < K; j++) H64[i * K + j] += xi * x[t * K + j];
    }
    for (let i = 0; i < K; i++) for (let j = i; j < K; j++) H64[j * K + i] = H64[i * K + j] *= 2 / 8;
    const Hint = await hessianOf(math, x, T, K, 8);
    const f32 = new HessianAccumulator(K, { arithmetic: "float32" });
    await f32.add(math, x, T, 8);
    const Hf = await f32.finish(math);
    let num = 0, den = 0;
    for (let i = 0; i < K * K; i++) { num += (Hint[i] - H64[i]) ** 2; den += H64[i] ** 2; }
    assert.ok(Math.sqrt(num / den) < 2e-5, `‖H_int − H‖/‖H‖ = ${Math.sqrt(num / den)}`);
    assert.ok(maxScaledError(Hint, H64, K) < 1e-4, `max scaled error ${maxScaledError(Hint, H64, K)}`);
    const W = weights(N, K, 13);
    const opts = { bits: 4 as const, groupSize: 64, sym: true, damp: 0.01, descAct: true, staticGroups: false };
    const a = await gptqQuantize(math, W, N, K, Hint, opts);
    const b = await gptqQuantize(math, W, N, K, Hf, opts);
    let same = 0;
    for (let i = 0; i < N * K; i++) if (a.q.codes[i] === b.q.codes[i]) same++;
    assert.ok(same / (N * K) > 0.99, `${same}/${N * K} codes equal`);
    assert.ok(Math.abs(a.loss - b.loss) / b.loss < 0.01, `loss ${a.loss} vs ${b.loss}`);
  });
});
