import assert from "node:assert/strict";
import { N_GRID, candidateScales, clipSearch, meanAbsColumns, pseudoQuantScaled, searchScales, weightMeanColumns } from "../lib/quant/awq.js";
import { OrtMath } from "../lib/quant/ort-math.js";
import { dequantize, quantizeRtn } from "../lib/quant/quantizer.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/** Inputs with a few salient (large) channels, as AWQ assumes. */
function inputs(T: number, K: number, seed: number): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(T * K);
  for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) x[t * K + k] = r() * (k % 16 === 3 ? 25 : 1);
  return x;
}

function outputMse(x: Float32Array, T: number, K: number, W: Float32Array, Wq: Float32Array, N: number): number {
  let e = 0;
  for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
    let d = 0;
    for (let k = 0; k < K; k++) d += x[t * K + k] * (Wq[n * K + k] - W[n * K + k]);
    e += d * d;
  }
  return e / (T * N);
}

describe("AWQ (SPEC §6.2)", function () {
  this.timeout(60_000);
  const math = new OrtMath();
  after(() => math.release());

  it("statistics and candidate scales follow the formulas (duo scaling, sqrt(max·min) normalisation)", () => {
    const x = Float32Array.from([1, -2, 0.5, 4, -3, 0]); // T = 2, K = 3
    assert.deepEqual(Array.from(meanAbsColumns(x, 2, 3)), [2.5, 2.5, 0.25]);
    const W = Float32Array.from([1, -2, 4, 2]); // N = 2, K = 2, G = 2
    const wm = weightMeanColumns([{ W, N: 2 }], 2, 2);
    assert.ok(Math.abs(wm[0] - (1 / (2 + 1e-6) + 4 / (4 + 1e-6)) / 2) < 1e-12);
    assert.ok(Math.abs(wm[1] - (2 / (2 + 1e-6) + 2 / (4 + 1e-6)) / 2) < 1e-12);
    const xm = Float64Array.from([4, 0.25]);
    const s = candidateScales(xm, wm, 0.5);
    const raw = [0, 1].map((c) => Math.sqrt(xm[c]) / (Math.sqrt(wm[c]) + 1e-4));
    const norm = Math.sqrt(Math.max(...raw) * Math.min(...raw));
    for (let c = 0; c < 2; c++) assert.ok(Math.abs(s[c] - raw[c] / norm) < 1e-6);
    assert.ok(Math.abs(Math.max(...s) * Math.min(...s) - 1) < 1e-5);
  });

  it("the grid search picks a scale that beats plain min-max RTN on the layer output", async () => {
    const N = 32, K = 128, T = 256;
    const r = rng(7);
    const W = Float32Array.from({ length: N * K }, () => r() * 0.1);
    const x = inputs(T, K, 8);
    const ratios: number[] = [];
    const res = await searchScales([{ W, N }], K, meanAbsColumns(x, T, K), 4, 32, async ([c]) => {
      ratios.push(ratios.length / N_GRID);
      return outputMse(x, T, K, W, c, N);
    });
    assert.equal(ratios.length, 20);
    const rtn = outputMse(x, T, K, W, dequantize(quantizeRtn(W, N, K, { bits: 4, groupSize: 32, sym: false, rule: "minmax" })), N);
    assert.ok(res.loss < 0.8 * rtn, `AWQ ${res.loss} vs RTN ${rtn}`);
    assert.ok(res.ratio > 0);
    assert.equal(outputMse(x, T, K, W, pseudoQuantScaled(W, N, K, res.scales, 4, 32), N), res.loss);
  });

  it("clip search: ORT and JavaScript paths agree, and clipping never increases the group error", async () => {
    const N = 64, K = 128, T = 1024;
    const r = rng(9);
    const W = Float32Array.from({ length: N * K }, () => r() * 0.1 + (r() > 0.495 ? 0.4 : 0));
    const x = inputs(T, K, 10);
    const a = Float32Array.from(W), b = Float32Array.from(W);
    const maxOrt = await clipSearch(a, N, K, x, T, 4, 32, math);
    const maxJs = await clipSearch(b, N, K, x, T, 4, 32);
    let same = 0;
    for (let i = 0; i < maxOrt.length; i++) if (maxOrt[i] === maxJs[i]) same++;
    assert.ok(same / maxOrt.length > 0.98, `${same}/${maxOrt.length}`);
    const clipped = dequantize(quantizeRtn(b, N, K, { bits: 4, groupSize: 32, sym: false, rule: "minmax" }));
    const plain = dequantize(quantizeRtn(W, N, K, { bits: 4, groupSize: 32, sym: false, rule: "minmax" }));
    // sampled tokens: every T/512-th
    const xs = Float32Array.from({ length: 512 * K }, (_, i) => x[Math.floor(i / K) * 2 * K + (i % K)]);
    assert.ok(outputMse(xs, 512, K, W, clipped, N) <= outputMse(xs, 512, K, W, plain, N));
    let clippedGroups = 0;
    for (let n = 0; n < N; n++) for (let g = 0; g < 4; g++) {
      let amax = 0;
      for (let k = g * 32; k < (g + 1) * 32; k++) amax = Math.max(amax, Math.abs(W[n * K + k]));
      if (maxJs[n * 4 + g] < amax) clippedGroups++;
    }
    assert.ok(clippedGroups > 0, "some group was clipped");
  });
});
