import assert from "node:assert/strict";
import { GraphBuilder } from "../lib/engine/onnx-builder.js";
import { createSession, ort } from "../lib/engine/session.js";
import { roundToF16 } from "../lib/tensor/half.js";
import {
  AWQ_ORDER, packAwq, packGgml, packGptq, packMatMulNBits, unpackAwq, unpackGgml, unpackGptq, unpackMatMulNBits,
} from "../lib/quant/pack.js";
import { RtnKernel, quantizeRtnFast } from "../lib/quant/rtn-kernel.js";
import { type Bits, type QuantizedMatrix, assertFinite, dequantize, fakeQuantizeRtn, quantizationError, quantizeRtn, relativeError, roundHalfEven } from "../lib/quant/quantizer.js";
import { reorderActOrder } from "../lib/quant/weight-source.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function randomWeight(N: number, K: number, seed: number): Float32Array {
  const r = rng(seed);
  const w = new Float32Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = (r() - 0.5) * 0.2 + (r() < 0.01 ? 0.5 : 0);
  return w;
}

/** A matrix whose codes are given, for the worked examples. */
function fromCodes(N: number, K: number, bits: Bits, code: (n: number, k: number) => number, zero = 1 << (bits - 1), G = K): QuantizedMatrix {
  const codes = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) codes[n * K + k] = code(n, k);
  const ng = K / G;
  const gIdx = new Int32Array(K).map((_, k) => Math.floor(k / G));
  return { N, K, bits, groupSize: G, sym: true, codes, scales: new Float32Array(N * ng).fill(0.5), zeros: new Uint8Array(N * ng).fill(zero), gIdx };
}

function sameCodes(a: QuantizedMatrix, b: QuantizedMatrix): void {
  assert.deepEqual(Array.from(b.codes), Array.from(a.codes));
  assert.deepEqual(Array.from(b.zeros), Array.from(a.zeros));
  assert.deepEqual(Array.from(b.scales), Array.from(a.scales));
  assert.deepEqual(Array.from(b.gIdx), Array.from(a.gIdx));
}

describe("quantizer (SPEC §4)", () => {
  it("rounds half to even like torch.round", () => {
    assert.deepEqual([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4, 2.6].map(roundHalfEven), [-2, -2, -0, 0, 2, 2, 2, 3]);
    // beyond the 1.5·2⁵² trick's range: 2⁵¹ + 0.5 and 2⁵¹ + 1.5 still have a half; 2⁵³ is an integer already
    assert.deepEqual([2 ** 51 + 0.5, 2 ** 51 + 1.5, -(2 ** 51) - 0.5, 2 ** 53, 2 ** 51 - 0.5].map(roundHalfEven), [2 ** 51, 2 ** 51 + 2, -(2 ** 51), 2 ** 53, 2 ** 51]);
  });

  it("quantizationError equals relativeError(W, dequantize(q)) exactly, also with a permuted g_idx", () => {
    const N = 16, K = 96, w = randomWeight(N, K, 9);
    for (const G of [-1, 32]) {
      const q = quantizeRtn(w, N, K, { bits: 3, groupSize: G, sym: false, rule: "gptq" });
      assert.equal(quantizationError(w, q), relativeError(w, dequantize(q)));
      const ng = q.scales.length / N;
      const permuted = { ...q, gIdx: Int32Array.from(q.gIdx, (_, k) => (k * 7) % ng) };
      assert.equal(quantizationError(w, permuted), relativeError(w, dequantize(permuted)));
    }
  });

  it("fakeQuantizeRtn equals dequantize(quantizeRtn(·)), with and without per-column scaling, bit for bit", () => {
    const N = 12, K = 96, w = randomWeight(N, K, 11);
    const c = Float32Array.from({ length: K }, (_, k) => 0.25 + ((k * 37) % 17) / 8);
    for (const bits of [2, 3, 4, 8] as Bits[]) for (const groupSize of [-1, 32, 40]) for (const sym of [true, false]) for (const rule of ["gptq", "minmax"] as const) {
      if (rule === "minmax" && sym) continue;
      const spec = { bits, groupSize, sym, rule };
      assert.deepEqual(fakeQuantizeRtn(w, N, K, spec, new Float32Array(N * K)), dequantize(quantizeRtn(w, N, K, spec)));
      // the scaled composition written out: W·diag(c) stored as float32, quantized, dequantized, divided back
      const ws = Float32Array.from(w, (x, i) => x * c[i % K]);
      const expected = Float32Array.from(dequantize(quantizeRtn(ws, N, K, spec)), (x, i) => x / c[i % K]);
      assert.deepEqual(fakeQuantizeRtn(w, N, K, spec, new Float32Array(N * K), c), expected, `${bits}-bit g${groupSize} ${sym ? "sym" : "asym"} ${rule}`);
    }
  });

  it("RtnKernel.dequantized (WebAssembly, AWQ's searches) equals dequantize(quantizeRtn(·)) bit for bit: plain, scaled, clipped; 1–3 threads", async () => {
    const N = 70, K = 192;
    const w = randomWeight(N, K, 12);
    const c = Float32Array.from({ length: K }, (_, k) => 0.25 + ((k * 37) % 17) / 8);
    for (const bits of [2, 3, 4, 8] as Bits[]) for (const groupSize of [-1, 32, 64]) for (const threads of [1, 2, 3]) {
      const spec = { bits, groupSize, sym: false, rule: "minmax" as const };
      const G = groupSize === -1 ? K : groupSize, ng = K / G;
      const fq = RtnKernel.create(w, N, K, groupSize, "dequantized", threads)!;
      try {
        const label = `${bits}-bit g${groupSize}, ${threads} thread(s)`;
        assert.deepEqual(await fq.dequantized(new Float32Array(N * K), bits), dequantize(quantizeRtn(w, N, K, spec)), `plain, ${label}`);
        const ws = Float32Array.from(w, (x, i) => x * c[i % K]);
        const scaled = Float32Array.from(dequantize(quantizeRtn(ws, N, K, spec)), (x, i) => x / c[i % K]);
        assert.deepEqual(await fq.dequantized(new Float32Array(N * K), bits, { c }), scaled, `scaled, ${label}`);
        // clipped to ±m per (row, group): the clamp written out, then quantized
        const clip = Float32Array.from({ length: N * ng }, (_, i) => Math.fround(0.002 + ((i * 13) % 7) * 0.004));
        const wc = Float32Array.from(w, (x, i) => { const m = clip[Math.floor(i / K) * ng + Math.floor((i % K) / G)]; return x > m ? m : x < -m ? -m : x; });
        assert.deepEqual(await fq.dequantized(new Float32Array(N * K), bits, { clip }), dequantize(quantizeRtn(wc, N, K, spec)), `clipped, ${label}`);
      } finally {
        fq.release();
      }
    }
    assert.equal(RtnKernel.create(w, N, K, 6, "dequantized"), undefined, "groups of 6 weights are left to fakeQuantizeRtn");
  });

  it("quantizeRtnFast (WebAssembly) equals quantizeRtn: codes, scales, zeros, for both rules, sym and asym, 1–3 threads", async () => {
    const N = 70, K = 192;
    const w = randomWeight(N, K, 13);
    w[5] = 0; w[K + 3] = -0; // zero and negative zero in a group
    for (const bits of [2, 3, 4, 8] as Bits[]) for (const groupSize of [-1, 32, 64, 6]) for (const sym of [true, false]) for (const rule of ["gptq", "minmax"] as const) for (const threads of [1, 2, 3]) {
      if (rule === "minmax" && sym) continue;
      const spec = { bits, groupSize, sym, rule };
      // group 6 is not a multiple of 4 weights: the JavaScript path, same result
      assert.deepEqual(await quantizeRtnFast(w, N, K, spec, threads), quantizeRtn(w, N, K, spec), `${bits}-bit g${groupSize} ${sym ? "sym" : "asym"} ${rule}, ${threads} thread(s)`);
    }
  });

  it("assertFinite names the first NaN/±Inf and its index; finite weights pass", () => {
    assert.doesNotThrow(() => assertFinite(Float32Array.from([0, -1e38, 3e38, 1e-45]), "w"));
    for (const [bad, at] of [[NaN, 5], [Infinity, 9], [-Infinity, 0]] as const) {
      const w = new Float32Array(10);
      w[at] = bad;
      assert.throws(() => assertFinite(w, "model.layers.0.mlp.up_proj.weight"), (e: Error) => e.message.includes("model.layers.0.mlp.up_proj.weight") && e.message.includes(`index ${at}`) && e.message.includes(String(bad)));
    }
  });

  it("GPTQ sym 4-bit: s = 2·max|w|/15 rounded to fp16, z = 8 (hand-worked)", () => {
    const w = Float32Array.from([0.3, -0.75, 0.1, 0.0]);
    const q = quantizeRtn(w, 1, 4, { bits: 4, groupSize: -1, sym: true, rule: "gptq" });
    const s = roundToF16((2 * 0.75) / 15);
    assert.equal(q.scales[0], s);
    assert.equal(q.zeros[0], 8);
    assert.deepEqual(Array.from(q.codes), [0.3, -0.75, 0.1, 0].map((x) => Math.min(15, Math.max(0, roundHalfEven(Math.fround(x) / s) + 8))));
  });

  it("GPTQ asym: the range includes zero; AWQ min-max does not", () => {
    const w = Float32Array.from([0.2, 0.5, 0.9, 0.35]);
    const g = quantizeRtn(w, 1, 4, { bits: 4, groupSize: -1, sym: false, rule: "gptq" });
    const sg = roundToF16(Math.fround(0.9) / 15);
    assert.equal(g.scales[0], sg);
    assert.equal(g.zeros[0], 0);
    const a = quantizeRtn(w, 1, 4, { bits: 4, groupSize: -1, sym: false, rule: "minmax" });
    const sa = roundToF16((Math.fround(0.9) - Math.fround(0.2)) / 15);
    assert.equal(a.scales[0], sa);
    assert.equal(a.zeros[0], Math.min(15, Math.max(0, -roundHalfEven(Math.fround(0.2) / sa))));
    // AutoAWQ's zero clamps at 0 for an all-positive group, so the top of the range saturates at 15
    assert.equal(a.zeros[0], 0);
    assert.equal(a.codes[2], 15);
  });

  it("every code is within [0, 2^b−1] and each weight's error is at most about one step", () => {
    const N = 16, K = 128;
    const w = randomWeight(N, K, 7);
    for (const bits of [2, 3, 4, 8] as Bits[]) {
      for (const G of [-1, 32, 64, 128]) {
        for (const [rule, sym] of [["gptq", true], ["gptq", false], ["minmax", false]] as const) {
          const q = quantizeRtn(w, N, K, { bits, groupSize: G, sym, rule });
          const wh = dequantize(q);
          for (let i = 0; i < w.length; i++) {
            assert.ok(q.codes[i] <= (1 << bits) - 1);
            const g = Math.floor(i / K) * q.scales.length / N + q.gIdx[i % K];
            // half a step from rounding, plus clamping at the extremes (rounded zero, fp16-rounded scale)
            assert.ok(Math.abs(wh[i] - w[i]) <= q.scales[g] * 1.2 + 1e-7, `${bits} ${G} ${rule} ${sym} at ${i}`);
          }
        }
      }
    }
  });
});

describe("packing worked examples (SPEC §16.4)", () => {
  it("GPTQ 4-bit: K-codes 0..7 pack to 0x76543210; sym v1 qzeros word 0x77777777", () => {
    const q = fromCodes(8, 8, 4, (_n, k) => k);
    const t = packGptq(q);
    assert.deepEqual(t.shapes.qweight, [1, 8]);
    assert.equal(t.qweight[0] >>> 0, 0x76543210);
    assert.equal(t.qweight[0], 1985229328);
    assert.equal(t.qzeros[0] >>> 0, 0x77777777);
  });

  it("GPTQ v1 asym zero 0 is stored as 15, masked (no bits leak into neighbours)", () => {
    const q = fromCodes(8, 8, 4, () => 3, 0);
    q.zeros[1] = 5;
    const t = packGptq(q);
    assert.equal(t.qzeros[0] >>> 0, 0xffffff4f);
  });

  it("GPTQ 3-bit: 32 values in 3 words, values 10 and 21 straddle word boundaries", () => {
    const q = fromCodes(1, 32, 3, (_n, k) => k % 8);
    const t = packGptq(q);
    // independent reference: AutoGPTQ's loop for bits == 3
    const v = Array.from({ length: 32 }, (_, k) => k % 8);
    const ref = [0, 0, 0];
    let i = 0;
    for (let j = i; j < i + 10; j++) ref[0] |= v[j] << (3 * (j - i));
    i += 10;
    ref[0] |= v[i] << 30;
    ref[1] |= (v[i] >> 2) & 1;
    i += 1;
    for (let j = i; j < i + 10; j++) ref[1] |= v[j] << (3 * (j - i) + 1);
    i += 10;
    ref[1] |= v[i] << 31;
    ref[2] |= (v[i] >> 1) & 3;
    i += 1;
    for (let j = i; j < i + 10; j++) ref[2] |= v[j] << (3 * (j - i) + 2);
    assert.deepEqual(Array.from(t.qweight), ref);
  });

  it("AWQ: channels 0..7 holding codes 0..7 pack to 0x75316420", () => {
    const q = fromCodes(8, 8, 4, (n) => n, 0);
    const t = packAwq(q);
    assert.deepEqual(AWQ_ORDER, [0, 2, 4, 6, 1, 3, 5, 7]);
    assert.equal(t.qweight[0] >>> 0, 0x75316420);
    assert.equal(t.qweight[0], 1966171168);
  });

  it("MatMulNBits 4-bit: k-codes (1, 2) pack to byte 0x21; odd k_blocks pads zero points with 8", () => {
    const q = fromCodes(1, 48, 4, (_n, k) => (k === 0 ? 1 : k === 1 ? 2 : 0), 3, 16);
    const t = packMatMulNBits(q);
    assert.equal(t.B[0], 0x21);
    assert.deepEqual(t.shapes.B, [1, 3, 8]);
    assert.deepEqual(Array.from(t.zeroPoints), [0x33, 0x83]);
  });

  it("Q4_0: byte j = e[j] | e[j+16] << 4 after the fp16 scale", () => {
    const q = fromCodes(1, 32, 4, (_n, k) => k % 16, 8, 32);
    const b = packGgml(q);
    assert.equal(b.length, 18);
    assert.equal(b[0] | (b[1] << 8), 0x3800); // 0.5 in fp16
    for (let j = 0; j < 16; j++) assert.equal(b[2 + j], (j % 16) | (((j + 16) % 16) << 4));
  });
});

describe("write → read round trips are exact", () => {
  const N = 64, K = 128;
  const w = randomWeight(N, K, 3);
  for (const bits of [2, 3, 4, 8] as Bits[]) {
    for (const G of [-1, 32, 64, 128]) {
      it(`GPTQ ${bits}-bit g${G} sym and asym`, () => {
        for (const sym of [true, false]) {
          const q = quantizeRtn(w, N, K, { bits, groupSize: G, sym, rule: "gptq" });
          const back = unpackGptq(packGptq(q), N, K, bits, sym);
          sameCodes(q, back);
          assert.deepEqual(dequantize(back), dequantize(q));
        }
      });
      if (bits !== 3) it(`MatMulNBits ${bits}-bit block ${G === -1 ? K : G}`, () => {
        const q = quantizeRtn(w, N, K, { bits, groupSize: G, sym: false, rule: "gptq" });
        const t = packMatMulNBits(q);
        const back = unpackMatMulNBits(t, N, K, bits, q.groupSize);
        sameCodes(q, back);
      });
    }
  }
  for (const bits of [2, 4, 8] as Bits[]) {
    it(`MatMulNBits ${bits}-bit, K = 101 (a partial byte and a partial block at the end)`, () => {
      const w101 = randomWeight(8, 101, 5);
      const q = quantizeRtn(w101, 8, 101, { bits, groupSize: 32, sym: false, rule: "gptq" });
      const t = packMatMulNBits(q);
      sameCodes(q, unpackMatMulNBits(t, 8, 101, bits, 32));
      // the padding past K packs as zero codes: each row's last block byte holds only what K puts there
      const perByte = 8 / bits, blob = (32 * bits) / 8, lastByte = 3 * blob + Math.floor((101 - 96) / perByte);
      for (let n = 0; n < 8; n++) {
        let expect = 0;
        for (let k = Math.floor(101 / perByte) * perByte; k < 101; k++) expect |= q.codes[n * 101 + k] << (bits * (k % perByte));
        if (101 % perByte !== 0) assert.equal(t.B[n * 4 * blob + lastByte], expect);
        for (let j = lastByte + 1; j < 4 * blob; j++) assert.equal(t.B[n * 4 * blob + j], 0);
      }
    });
  }
  for (const G of [-1, 32, 64, 128]) {
    it(`AWQ 4-bit g${G}`, () => {
      const q = quantizeRtn(w, N, K, { bits: 4, groupSize: G, sym: false, rule: "minmax" });
      const back = unpackAwq(packAwq(q), N, K);
      sameCodes(q, back);
    });
  }
  for (const bits of [4, 8] as const) {
    it(`ggml Q${bits}_0`, () => {
      const q = quantizeRtn(w, N, K, { bits, groupSize: 32, sym: true, rule: "gptq" });
      const back = unpackGgml(packGgml(q), N, K, bits);
      sameCodes(q, back);
    });
  }
});

describe("MatMulNBits layout in onnxruntime (accuracy_level 0)", () => {
  for (const [bits, block, sym] of [[4, 32, false], [4, 128, true], [8, 64, false], [2, 16, false]] as const) {
    it(`${bits}-bit block ${block}${sym ? " sym (default zero point)" : ""}: ORT output = A · dequant(W)ᵀ`, async () => {
      const N = 24, K = 256, M = 3;
      const W = randomWeight(N, K, 11);
      const q = quantizeRtn(W, N, K, { bits, groupSize: block, sym, rule: "gptq" });
      const t = packMatMulNBits(q);
      const g = new GraphBuilder();
      g.input("A", "F32", [M, K]);
      const ins = ["A", g.initializer("B", "U8", t.shapes.B, t.B), g.initializer("S", "F32", t.shapes.scales, new Uint8Array(t.scales.buffer))];
      if (!sym) ins.push(g.initializer("Z", "U8", t.shapes.zeroPoints, t.zeroPoints));
      g.node("MatMulNBits", ins, ["Y"], { K, N, bits, block_size: block, accuracy_level: 0 }, "com.microsoft");
      g.output("Y", "F32", [M, N]);
      const s = await createSession(g.toBytes());
      const r = rng(5);
      const A = Float32Array.from({ length: M * K }, () => r() - 0.5);
      const Y = (await s.run({ A: new ort.Tensor("float32", A, [M, K]) })).Y.data as Float32Array;
      await s.release();
      const wh = dequantize(q);
      for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
        let ref = 0;
        for (let k = 0; k < K; k++) ref += A[m * K + k] * wh[n * K + k];
        assert.ok(Math.abs(Y[m * N + n] - ref) < 1e-4 * (1 + Math.abs(ref)), `${m},${n}: ${Y[m * N + n]} vs ${ref}`);
      }
    });
  }
});

describe("act-order reordering for MatMulNBits", () => {
  it("reordered codes with trivial groups equal the original weight with permuted columns", () => {
    const N = 8, K = 64, G = 16;
    const q = quantizeRtn(randomWeight(N, K, 21), N, K, { bits: 4, groupSize: G, sym: false, rule: "gptq" });
    // scatter the columns the way act-order does: column perm[i] belongs to group i / G
    const perm = Array.from({ length: K }, (_, i) => (i * 37) % K);
    const codes = new Uint8Array(N * K), gIdx = new Int32Array(K);
    for (let n = 0; n < N; n++) for (let i = 0; i < K; i++) codes[n * K + perm[i]] = q.codes[n * K + i];
    for (let i = 0; i < K; i++) gIdx[perm[i]] = Math.floor(i / G);
    const act = { ...q, codes, gIdx };
    const r = reorderActOrder(act)!;
    assert.deepEqual(Array.from(r.q.gIdx), Array.from({ length: K }, (_, i) => Math.floor(i / G)));
    const a = dequantize(act), b = dequantize(r.q);
    for (let n = 0; n < N; n++) for (let i = 0; i < K; i++) assert.equal(b[n * K + i], a[n * K + r.perm[i]]);
    // uneven groups cannot be made contiguous blocks
    const bad = { ...act, gIdx: Int32Array.from(gIdx, (g, k) => (k === 0 ? (g + 1) % 4 : g)) };
    assert.equal(reorderActOrder(bad), undefined);
  });
});
