import assert from "node:assert/strict";
import { join } from "node:path";
import { generateLlamaModel, generateLoraAdapter } from "../lib/fixtures/index.js";
import { ModelDir } from "../lib/io/model-dir.js";
import { SafetensorsFile, writeSafetensors } from "../lib/io/safetensors.js";
import { loadAdapter } from "../lib/lora/adapter.js";
import { merge } from "../lib/lora/merge.js";
import { type KernelDType, LowRankKernels, packR } from "../lib/tensor/lowrank.js";
import { tempDir } from "./helpers/paths.js";

/** bf16 bits -> number, written out from the format (sign, 8-bit exponent, 7-bit mantissa). */
function bf16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 7) & 0xff, mant = h & 0x7f;
  if (exp === 0xff) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** -133;
  return sign * (1 + mant / 128) * 2 ** (exp - 127);
}

/** Distance between neighbouring bf16 values around x (x normal). */
const bf16Ulp = (x: number) => 2 ** (Math.floor(Math.log2(Math.abs(x))) - 7);

/** float16 bits -> number, written out from the format (sign, 5-bit exponent, 10-bit mantissa). */
function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Distance between neighbouring float16 values around x (2^-24 among the subnormals). */
const f16Ulp = (x: number) => 2 ** Math.max(Math.floor(Math.log2(Math.abs(x))) - 10, -24);

/** The float16 bit pattern of a value that float16 holds exactly (found by search, independent of the code). */
function f16Bits(v: number): number {
  for (let h = 0; h < 0x10000; h++) if (Object.is(f16Value(h), v)) return h;
  throw new Error(`${v} is not a float16 value`);
}

let seed = 7;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 - 0.5; };

interface Case { rows: number; cols: number; r: number; inT: KernelDType; outT: KernelDType; w: number[]; L: number[]; R: number[] }

/** Lays a case out in a fresh kernel memory, runs it, returns output values and stats. */
async function runCase(c: Case, threads = 1) {
  const k = new LowRankKernels(threads);
  const isz = c.inT === "F32" ? 4 : 2, osz = c.outT === "F32" ? 4 : 2;
  const F = LowRankKernels.FIRST_FREE;
  const at = { r: F, l: F + c.r * c.cols * 4 } as { r: number; l: number; w: number; out: number };
  at.w = at.l + c.rows * c.r * 4; at.out = at.w + c.rows * c.cols * 4;
  k.reserve(at.out + c.rows * c.cols * osz);
  packR(k.f32(at.r, c.r * c.cols), c.r, c.cols, (q, j) => c.R[q * c.cols + j]);
  k.f32(at.l, c.rows * c.r).set(c.L);
  const wb = k.bytes(at.w, c.rows * c.cols * isz);
  if (c.inT === "F32") new Float32Array(wb.buffer, wb.byteOffset, c.w.length).set(c.w);
  else if (c.inT === "F16") new Uint16Array(wb.buffer, wb.byteOffset, c.w.length).set(c.w.map(f16Bits));
  else { const f = new Float32Array(c.w), u = new Uint32Array(f.buffer); new Uint16Array(wb.buffer, wb.byteOffset, c.w.length).set(Array.from(u, (x) => x >>> 16)); }
  const st = await k.run(c.r, c.inT, c.outT, { w: at.w, l: at.l, r: at.r, out: at.out }, c.rows, c.cols);
  const ob = k.bytes(at.out, c.rows * c.cols * osz);
  const out = c.outT === "F32" ? Array.from(new Float32Array(ob.buffer, ob.byteOffset, c.rows * c.cols)) : Array.from(new Uint16Array(ob.buffer, ob.byteOffset, c.rows * c.cols), c.outT === "F16" ? f16Value : bf16Value);
  await k.close();
  return { st, out };
}

function randomCase(rows: number, cols: number, r: number, inT: KernelDType, outT: KernelDType): Case {
  // W exactly representable in the input dtype (bf16: upper 16 bits of an f32; f16: a random finite pattern,
  // subnormals included)
  const w = Array.from({ length: rows * cols }, () => {
    if (inT === "F16") { let h; do h = Math.floor((rnd() + 0.5) * 0x10000) & 0xffff; while ((h & 0x7c00) === 0x7c00 || (h & 0x7c00) > 0x4800); return f16Value(h); }
    const x = new Float32Array([rnd() * 4]); if (inT === "BF16") new Uint32Array(x.buffer)[0] &= 0xffff0000; return x[0];
  });
  return { rows, cols, r, inT, outT, w, L: Array.from({ length: rows * r }, () => Math.fround(rnd() * 0.2)), R: Array.from({ length: r * cols }, () => Math.fround(rnd())) };
}

describe("low-rank merge kernel (WebAssembly SIMD)", function () {
  this.timeout(60_000);

  for (const [rows, cols, r, inT, outT] of [[3, 12, 5, "BF16", "BF16"], [5, 16, 16, "BF16", "BF16"], [4, 20, 3, "F32", "BF16"], [2, 8, 7, "F32", "F32"], [3, 24, 2, "BF16", "F32"],
    [4, 20, 3, "F16", "F16"], [3, 24, 5, "F16", "F32"], [5, 16, 16, "BF16", "F16"], [6, 8, 2, "F32", "F16"]] as const) {
    it(`${inT}->${outT} ${rows}x${cols} r=${r}: nearest value of W + L·R, statistics match float64`, async () => {
      const c = randomCase(rows, cols, r, inT, outT);
      const { st, out } = await runCase(c);
      let dd = 0, ww = 0, md = 0, re = 0, maxY = 0;
      for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
        let d = 0;
        for (let q = 0; q < r; q++) d += c.L[i * r + q] * c.R[q * cols + j];
        const y = c.w[i * cols + j] + d, got = out[i * cols + j];
        dd += d * d; ww += c.w[i * cols + j] ** 2; md = Math.max(md, Math.abs(d)); re = Math.max(re, Math.abs(got - y)); maxY = Math.max(maxY, Math.abs(y));
        // fp32 arithmetic: within a few fp32 ulps of the exact value; rounded output: the nearest bf16 of it
        const tol = outT === "F32" ? 1e-6 * (Math.abs(y) + 1) : 0.5 * (outT === "F16" ? f16Ulp(y) : bf16Ulp(y)) + 1e-6 * (Math.abs(y) + 1);
        assert.ok(Math.abs(got - y) <= tol, `(${i},${j}): got ${got}, exact ${y}`);
      }
      assert.ok(Math.abs(st.sumSqDelta - dd) <= 1e-5 * dd && Math.abs(st.sumSqW - ww) <= 1e-6 * ww);
      assert.ok(Math.abs(st.maxAbsDelta - md) <= 1e-6 * md);
      if (outT === "F32") assert.equal(st.maxRoundErr, 0);
      else assert.ok(Math.abs(st.maxRoundErr - re) <= 1e-6 * (maxY + 1), `${st.maxRoundErr} vs ${re}`); // kernel: |round(y32) − y32|
      assert.equal(st.finite, true);
    });
  }

  for (const [rows, cols, r, inT, outT, threads] of [[5, 16, 4, "BF16", "BF16", 1], [130, 12, 3, "F32", "F32", 2], [4, 20, 16, "F16", "F16", 1], [3, 8, 2, "BF16", "F32", 1]] as const) {
    it(`DoRA modes ${inT}->${outT} ${rows}x${cols} r=${r}, ${threads} thread(s): Σ (W + L·R)² per row, then each row scaled by m/‖row‖, against float64`, async () => {
      const c = randomCase(rows, cols, r, inT, outT);
      const mag = Array.from({ length: rows }, () => 0.5 + rnd());
      const k = new LowRankKernels(threads);
      const isz = inT === "F32" ? 4 : 2, osz = outT === "F32" ? 4 : 2;
      const F = LowRankKernels.FIRST_FREE;
      const at = { r: F, l: F + r * cols * 4, w: 0, out: 0, norms: 0, scale: 0 };
      at.w = at.l + rows * r * 4; at.out = at.w + rows * cols * 4; at.norms = at.out + rows * cols * 4; at.scale = at.norms + rows * 8;
      k.reserve(at.scale + rows * 4);
      packR(k.f32(at.r, r * cols), r, cols, (q, j) => c.R[q * cols + j]);
      k.f32(at.l, rows * r).set(c.L);
      const wb = k.bytes(at.w, rows * cols * isz);
      if (inT === "F32") new Float32Array(wb.buffer, wb.byteOffset, c.w.length).set(c.w);
      else if (inT === "F16") new Uint16Array(wb.buffer, wb.byteOffset, c.w.length).set(c.w.map(f16Bits));
      else { const f = new Float32Array(c.w), u = new Uint32Array(f.buffer); new Uint16Array(wb.buffer, wb.byteOffset, c.w.length).set(Array.from(u, (x) => x >>> 16)); }
      const ss = await k.rowSquares(r, inT, { w: at.w, l: at.l, r: at.r, out: at.norms }, rows, cols);
      const y = Array.from({ length: rows * cols }, (_, i) => {
        const row = Math.floor(i / cols), j = i % cols;
        let d = 0;
        for (let q = 0; q < r; q++) d += c.L[row * r + q] * c.R[q * cols + j];
        return c.w[i] + d;
      });
      const f = k.f32(at.scale, rows);
      for (let i = 0; i < rows; i++) {
        let want = 0;
        for (let j = 0; j < cols; j++) want += y[i * cols + j] ** 2;
        assert.ok(Math.abs(ss[i] - want) <= 1e-6 * want, `row ${i}: ${ss[i]} vs ${want}`);
        f[i] = mag[i] / Math.sqrt(ss[i]);
      }
      const st = await k.run(r, inT, outT, { w: at.w, l: at.l, r: at.r, out: at.out, scale: at.scale }, rows, cols);
      const ob = k.bytes(at.out, rows * cols * osz);
      const out = outT === "F32" ? Array.from(new Float32Array(ob.buffer, ob.byteOffset, rows * cols)) : Array.from(new Uint16Array(ob.buffer, ob.byteOffset, rows * cols), outT === "F16" ? f16Value : bf16Value);
      await k.close();
      let dd = 0;
      for (let i = 0; i < rows; i++) {
        let norm = 0;
        for (let j = 0; j < cols; j++) norm += y[i * cols + j] ** 2;
        for (let j = 0; j < cols; j++) {
          const v = (mag[i] / Math.sqrt(norm)) * y[i * cols + j], got = out[i * cols + j];
          dd += (v - c.w[i * cols + j]) ** 2;
          const tol = outT === "F32" ? 2e-6 * (Math.abs(v) + 1) : 0.5 * (outT === "F16" ? f16Ulp(v) : bf16Ulp(v)) + 2e-6 * (Math.abs(v) + 1);
          assert.ok(Math.abs(got - v) <= tol, `(${i},${j}): got ${got}, exact ${v}`);
        }
      }
      assert.ok(Math.abs(st.sumSqDelta - dd) <= 1e-4 * dd, `Σ Δ² ${st.sumSqDelta} vs ${dd}`);
      assert.equal(st.finite, true);
    });
  }

  it("rounds exact ties to even and large values to infinity (flagged non-finite)", async () => {
    // L = 0: y = W exactly, so only the output rounding acts. 1 + 2^-8 lies halfway between 1 and 1 + 2^-7
    // (odd mantissa): even is 1. 1 + 3·2^-8 lies between 1 + 2^-7 (odd) and 1 + 2^-6 (even): up.
    const w = [1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 1 + 2 ** -8 + 2 ** -20];
    const c: Case = { rows: 1, cols: 4, r: 1, inT: "F32", outT: "BF16", w, L: [0], R: [0, 0, 0, 0] };
    const { st, out } = await runCase(c);
    assert.deepEqual(out, [1, 1 + 2 ** -6, -1, 1 + 2 ** -7]);
    assert.equal(st.finite, true);
    assert.equal(st.maxRoundErr, 2 ** -8);
    // bf16's largest finite value is (2 − 2^-7)·2^127 ≈ 3.3895e38; 3.4e38 is past the halfway point to 2^128
    const big = await runCase({ ...c, w: [3.4e38, 1, 1, 1] });
    assert.equal(big.out[0], Infinity);
    assert.equal(big.st.finite, false);
    const nan = await runCase({ ...c, inT: "BF16", w: [1, 1, 1, 1], L: [Infinity], R: [0, 1, 1, 1] }); // Inf·0 = NaN
    assert.equal(nan.st.finite, false);
  });

  it("float16 output: ties to even, subnormals, overflow to infinity, NaN, signed zero", async () => {
    // L = 0: y = W exactly (F32 in), so only the output rounding acts
    const cases: [number, number][] = [
      [1 + 2 ** -11, 1], // halfway between 1 and 1 + 2^-10 (odd): even is 1
      [1 + 3 * 2 ** -11, 1 + 2 ** -9], // halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even): up
      [2 ** -24, 2 ** -24], // the smallest subnormal, exact
      [2 ** -25, 0], // halfway between 0 and 2^-24: even is 0
      [3 * 2 ** -25, 2 ** -23], // halfway between 2^-24 (odd) and 2^-23: up
      [-(2 ** -14) * (1 - 2 ** -11), -(2 ** -14)], // just under the smallest normal rounds up into it
      [65504, 65504], // the largest finite value
      [65519.99, 65504],
      [-(2 ** -26), -0], // underflows to zero and keeps its sign
      [0.1, f16Value(0x2e66)], // 0.0999755859375, the nearest float16 of 0.1
    ];
    for (let i = 0; i < cases.length; i += 4) {
      const part = cases.slice(i, i + 4);
      while (part.length < 4) part.push([1, 1]);
      const { st, out } = await runCase({ rows: 1, cols: 4, r: 1, inT: "F32", outT: "F16", w: part.map((x) => Math.fround(x[0])), L: [0], R: [0, 0, 0, 0] });
      part.forEach(([x, want], j) => assert.ok(Object.is(out[j], want), `${x} → ${out[j]}, want ${want}`));
      assert.equal(st.finite, true);
    }
    // 65520 is halfway between 65504 (odd mantissa) and 65536, which float16 cannot hold: infinity
    const big = await runCase({ rows: 1, cols: 4, r: 1, inT: "F32", outT: "F16", w: [65520, -1e6, 1, 1], L: [0], R: [0, 0, 0, 0] });
    assert.deepEqual(big.out.slice(0, 2), [Infinity, -Infinity]);
    assert.equal(big.st.finite, false);
    const nan = await runCase({ rows: 1, cols: 4, r: 1, inT: "F16", outT: "F16", w: [1, 1, 1, 1], L: [Infinity], R: [0, 1, 1, 1] }); // Inf·0 = NaN
    assert.ok(Number.isNaN(nan.out[0]));
    assert.equal(nan.st.finite, false);
  });

  it("rows split over 2, 3 or 4 threads give the same bytes and statistics as one thread", async () => {
    const c = randomCase(300, 40, 4, "BF16", "BF16"); // 300 rows: up to 4 parts of ≥ 64 rows
    const one = await runCase(c, 1);
    for (const threads of [2, 3, 4]) {
      const many = await runCase(c, threads);
      assert.deepEqual(many.out, one.out);
      assert.ok(Math.abs(many.st.sumSqDelta - one.st.sumSqDelta) <= 1e-9 * one.st.sumSqDelta);
      assert.ok(Math.abs(many.st.sumSqW - one.st.sumSqW) <= 1e-9 * one.st.sumSqW);
      assert.equal(many.st.maxAbsDelta, one.st.maxAbsDelta);
      assert.equal(many.st.maxRoundErr, one.st.maxRoundErr);
    }
    // a non-finite value in the last part (a helper's rows) is reported
    const bad = await runCase({ ...c, L: c.L.map((x, i) => (i === c.L.length - 1 ? Infinity : x)) }, 4);
    assert.equal(bad.st.finite, false);
  });
});

describe("merge fast path on bf16 models", function () {
  this.timeout(120_000);
  const tmp = tempDir();
  after(() => tmp.cleanup());

  for (const dtype of ["BF16", "F16"] as const) it(`${dtype.toLowerCase()} base -> ${dtype.toLowerCase()}: every merged tensor is the nearest value of the float64 W + s·B·A; others byte-identical`, async () => {
    const ulp = dtype === "F16" ? f16Ulp : bf16Ulp;
    const b = join(tmp.path, `b-${dtype}`), a = join(tmp.path, `a-${dtype}`), out = join(tmp.path, `o-${dtype}`);
    // intermediate 132: cols % 8 = 4 (one column block per iteration) on down_proj; 160 rows of q_proj split between two threads
    await generateLlamaModel(b, { hiddenSize: 160, intermediateSize: 132, numLayers: 1, numHeads: 4, numKvHeads: 2, vocabSize: 30, dtype, seed: 11 });
    await generateLoraAdapter(a, b, { r: 4, alpha: 8, targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], seed: 12, dtype });
    const rep = await merge({ base: b, adapters: [{ path: a, weight: 0.8 }], out });
    const ad = await loadAdapter(a), base = await ModelDir.open(b), m = await ModelDir.open(out);
    try {
      for (const name of base.names()) {
        const mod = ad.modules.get(name);
        if (!mod) { assert.deepEqual(await m.readBytes(name), await base.readBytes(name), name); continue; }
        assert.equal(m.entry(name).dtype, dtype);
        const w = (await base.read(name)).toF32(), got = (await m.read(name)).toF32();
        const [rows, cols] = base.entry(name).shape, A = mod.A.toF32(), B = mod.B.toF32(), s = mod.scaling * 0.8;
        let dd = 0, ww = 0;
        for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
          let d = 0;
          for (let q = 0; q < mod.r; q++) d += B[i * mod.r + q] * A[q * cols + j];
          const y = w[i * cols + j] + s * d;
          dd += (s * d) ** 2; ww += w[i * cols + j] ** 2;
          // the kernel's fp32 sum may lose digits when W and s·BA nearly cancel: bound by their sizes, not y's
          assert.ok(Math.abs(got[i * cols + j] - y) <= 0.5 * ulp(y) + 1e-6 * (Math.abs(w[i * cols + j]) + Math.abs(s * d)), `${name}[${i},${j}]: ${got[i * cols + j]} vs ${y}`);
        }
        const r = rep.modules.find((x) => x.tensor === name)!;
        assert.ok(Math.abs(r.relDelta - Math.sqrt(dd / ww)) <= 1e-4 * r.relDelta, `${name} relDelta`);
        assert.ok(r.roundingError > 0 && r.roundingError <= (dtype === "F16" ? 2 ** -11 : 2 ** -8) * 4);
      }
      assert.equal(rep.modules.length, 7);
    } finally { await base.close(); await m.close(); }
  });
});

describe("streaming writer as the merge uses it", () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it("pipelined chunks through two reused buffers, background syncs: the file reads back byte for byte", async () => {
    const a = Uint8Array.from({ length: 4000 }, (_, i) => (i * 7) & 255), b = Uint8Array.from({ length: 24 }, (_, i) => 255 - i);
    const bufs = [new Uint8Array(1000), new Uint8Array(1000)];
    let turn = 0;
    async function* chunks(src: Uint8Array) { // like FastPath.copyChunks: each chunk overwrites the buffer used two chunks ago
      for (let at = 0; at < src.length; at += 1000) { const buf = bufs[(turn ^= 1)]; buf.set(src.subarray(at, at + 1000)); yield buf.subarray(0, Math.min(1000, src.length - at)); }
    }
    const path = join(tmp.path, "x.safetensors");
    await writeSafetensors(path, [{ name: "a", dtype: "U8", shape: [4000] }, { name: "b", dtype: "F32", shape: [2, 3] }],
      (t) => (t.name === "a" ? chunks(a) : b), undefined, { pipelined: true, syncEvery: 1500 });
    const f = await SafetensorsFile.open(path);
    try {
      assert.deepEqual(await f.readBytes("a"), a);
      assert.deepEqual(await f.readBytes("b"), b);
      assert.deepEqual(await f.readRange("a", 1500, new Uint8Array(10)), a.subarray(1500, 1510));
    } finally { await f.close(); }
    await assert.rejects(writeSafetensors(path, [{ name: "a", dtype: "U8", shape: [4000] }], () => chunks(a.subarray(0, 3000)), undefined, { pipelined: true }), /produced 3000 bytes, planned 4000/);
  });
});
