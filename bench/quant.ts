/**
 * Quantization benchmark (JSON on stdout):
 *  - RTN throughput (weights/s) on a 4096×4096 weight, g128, asym: the kernel `quantize` uses, and the
 *    JavaScript reference in the same run;
 *  - GPTQ on a 4096×4096 linear with 128×512 calibration tokens (Hessian accumulation and fasterquant
 *    timed apart) next to one 4096³ fp32 MatMul on ONNX Runtime in the same process — with the default
 *    integer Hessian, and the float32 Hessian of the same inputs (their difference, and the codes and loss
 *    fasterquant gets from each);
 *  - decode tokens/s of a Llama-2-7B-shaped model (4 decoder layers by default, vocab 32000) quantized to
 *    4 bits (RTN g128 → ONNX MatMulNBits, accuracy_level 4; once with lm_head kept fp32, once quantized too)
 *    against its fp32 twin, runs interleaved. The fp32 twin of all 32 layers (27 GB) does not fit in memory;
 *    the fewer the layers, the larger the fp32 lm_head's share of the bytes a token reads (2 layers: 24%,
 *    4 layers: 14%, the real 7B: 2%), which caps the ratio.
 *
 *  - AWQ of one hidden-2048 decoder layer on 1,024 calibration tokens (seconds, as `quantize` runs it).
 *
 *   node --import tsx bench/quant.ts [--threads N] [--skip-7b] [--skip-gptq] [--skip-awq] [--rounds R] [--layers L] [--awq-tokens T]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generateLlamaModel } from "../lib/fixtures/index.js";
import { parseConfig } from "../lib/io/hf-config.js";
import { seededRandom } from "../lib/random.js";
import { writeSafetensors } from "../lib/io/safetensors.js";
import { layerLinears, linearShape } from "../lib/model/architecture.js";
import { CausalLM } from "../lib/model/causal-lm.js";
import { generate } from "../lib/model/generate.js";
import { openWeightSource } from "../lib/model/weights.js";
import { HessianAccumulator, type HessianArithmetic, gptqQuantize } from "../lib/quant/gptq.js";
import { OrtMath } from "../lib/quant/ort-math.js";
import { quantizeModel } from "../lib/quant/pipeline.js";
import { quantizeRtn } from "../lib/quant/quantizer.js";
import { quantizeRtnFast } from "../lib/quant/rtn-kernel.js";

/** Uniform in offset ± scale. */
function random(n: number, seed: number, scale: number, offset = 0): Float32Array {
  const r = seededRandom(seed), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = offset + 2 * scale * (r() - 0.5);
  return out;
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

/** RTN as `quantize` runs it (the WebAssembly kernel, rows on threads) and the JavaScript reference
 * `quantizeRtn` (same codes) in the same run. */
async function benchRtn(): Promise<Record<string, number>> {
  const N = 4096, K = 4096;
  const W = random(N * K, 1, 0.02);
  const spec = { bits: 4 as const, groupSize: 128, sym: false, rule: "gptq" as const };
  const time = async (f: () => unknown) => {
    const runs: number[] = [];
    for (let i = 0; i < 4; i++) {
      const t = performance.now();
      await f();
      if (i > 0) runs.push((performance.now() - t) / 1000);
    }
    return median(runs);
  };
  const kernel = await time(() => quantizeRtnFast(W, N, K, spec));
  const js = await time(() => quantizeRtn(W, N, K, spec));
  return { weights: N * K, seconds: kernel, weightsPerSecond: (N * K) / kernel, jsWeightsPerSecond: (N * K) / js, kernelOverJs: js / kernel };
}

async function benchGptq(math: OrtMath): Promise<Record<string, number>> {
  const N = 4096, K = 4096, samples = 128, seqLen = 512, chunkTokens = 4096;
  // correlated inputs: shared low-rank factors + noise; one chunk reused with a per-chunk gain
  const uniform = seededRandom(2), r = () => uniform() - 0.5;
  const F = 16;
  const mix = random(F * K, 3, 1);
  const x = new Float32Array(chunkTokens * K);
  for (let t = 0; t < chunkTokens; t++) {
    const f = Array.from({ length: F }, () => r());
    for (let k = 0; k < K; k++) {
      let v = 0.2 * r();
      for (let i = 0; i < F; i++) v += f[i] * mix[i * K + k];
      x[t * K + k] = v;
    }
  }
  const gemm = async () => {
    const A = { data: random(K * K, 4, 1), rows: K, cols: K };
    await math.gemm(A, A); // warm-up
    const runs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      await math.gemm(A, A);
      runs.push((performance.now() - t) / 1000);
    }
    return median(runs);
  };
  const gemmBefore = await gemm();
  const chunks = (samples * seqLen) / chunkTokens;
  const hessian = async (arithmetic: HessianArithmetic) => {
    const acc = new HessianAccumulator(K, { arithmetic });
    const t0 = performance.now();
    for (let c = 0; c < chunks; c++) await acc.add(math, x, chunkTokens, chunkTokens / seqLen);
    const H = await acc.finish(math);
    return { H, seconds: (performance.now() - t0) / 1000 };
  };
  const opts = { bits: 4, groupSize: 128, sym: true, damp: 0.01, descAct: false, staticGroups: false } as const;
  const W = random(N * K, 5, 0.02);
  const fasterquant = async (H: Float32Array) => {
    const t1 = performance.now();
    const res = await gptqQuantize(math, W, N, K, H, opts);
    return { res, seconds: (performance.now() - t1) / 1000 };
  };
  // the default (integer products) and float32 products, each followed by fasterquant
  const int = await hessian("int");
  const f32 = await hessian("float32");
  let num = 0, den = 0;
  for (let i = 0; i < K * K; i++) { num += (int.H[i] - f32.H[i]) ** 2; den += f32.H[i] ** 2; }
  const q = await fasterquant(int.H);
  const qf = await fasterquant(f32.H);
  let same = 0;
  for (let i = 0; i < N * K; i++) if (q.res.q.codes[i] === qf.res.q.codes[i]) same++;
  const gemmAfter = await gemm();
  const gemmSeconds = Math.min(gemmBefore, gemmAfter);
  return {
    calibrationTokens: samples * seqLen,
    hessianSeconds: int.seconds,
    fasterquantSeconds: q.seconds,
    gptqSeconds: int.seconds + q.seconds,
    gemm4096Seconds: gemmSeconds,
    gemm4096GflopPerS: (2 * K ** 3) / gemmSeconds / 1e9,
    hessianOverGemm: int.seconds / gemmSeconds,
    fasterquantOverGemm: q.seconds / gemmSeconds,
    gptqOverGemm: (int.seconds + q.seconds) / gemmSeconds,
    loss: q.res.loss,
    fasterquantParts: q.res.timings,
    /** the same with float32 products for XᵀX */
    hessianFloat32Seconds: f32.seconds,
    /** floor of a float32 Hessian at the GEMM's speed: tokens·K² multiply-adds, half of them (symmetry) */
    hessianFlopFloorOverGemm: (samples * seqLen) / K / 2,
    gptqFloat32OverGemm: (f32.seconds + qf.seconds) / gemmSeconds,
    lossFloat32: qf.res.loss,
    /** ‖H_int − H_float32‖_F / ‖H_float32‖_F */
    hessianRelativeDifference: Math.sqrt(num / den),
    /** share of the 4-bit codes equal under the two Hessians */
    codesEqualFloat32: same / (N * K),
  } as Record<string, unknown> as Record<string, number>;
}

async function write7bShaped(dir: string, layers: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const raw = {
    architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: 4096, intermediate_size: 11008, num_attention_heads: 32,
    num_key_value_heads: 32, num_hidden_layers: layers, vocab_size: 32000, max_position_embeddings: 4096, rms_norm_eps: 1e-5,
    rope_theta: 10000, hidden_act: "silu", tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: "float32",
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(raw, null, 2));
  const cfg = parseConfig(raw);
  const plan: { name: string; dtype: "F32"; shape: number[]; scale: number; offset: number }[] = [];
  const add = (name: string, shape: number[], scale: number, offset = 0) => plan.push({ name, dtype: "F32", shape, scale, offset });
  add("model.embed_tokens.weight", [32000, 4096], 0.02);
  for (let l = 0; l < layers; l++) {
    add(`model.layers.${l}.input_layernorm.weight`, [4096], 0.1, 1);
    add(`model.layers.${l}.post_attention_layernorm.weight`, [4096], 0.1, 1);
    for (const m of layerLinears(l)) add(`${m}.weight`, linearShape(cfg, m), 1 / Math.sqrt(linearShape(cfg, m)[1]));
  }
  add("model.norm.weight", [4096], 0.1, 1);
  add("lm_head.weight", [32000, 4096], 1 / 64);
  await writeSafetensors(join(dir, "model.safetensors"), plan, (p, i) => {
    const q = plan[i];
    return new Uint8Array(random(p.shape.reduce((a, b) => a * b, 1), 1000 + i, q.scale, q.offset).buffer);
  });
}

async function benchDecode(work: string, threads: number | undefined, rounds: number, layers: number): Promise<Record<string, unknown>> {
  const fp = join(work, "fp32"), q4 = join(work, "q4"), q4h = join(work, "q4-head");
  await write7bShaped(fp, layers);
  const tq = performance.now();
  const report = await quantizeModel({ model: fp, out: q4, method: "rtn", bits: 4, groupSize: 128, sym: false, format: "onnx", threads });
  const quantizeSeconds = (performance.now() - tq) / 1000;
  const reportHead = await quantizeModel({ model: fp, out: q4h, method: "rtn", bits: 4, groupSize: 128, sym: false, format: "onnx", threads, lmHead: true });
  const load = async (dir: string) => {
    const src = await openWeightSource(dir);
    try {
      return await CausalLM.load(src, { threads, maxContext: 256 });
    } finally {
      await src.close();
    }
  };
  const lms = { fp32: await load(fp), int4: await load(q4), int4LmHead: await load(q4h) };
  const prompt = [1, 450, 4996, 17354, 1701, 432];
  const tps: Record<string, number[]> = { fp32: [], int4: [], int4LmHead: [] };
  for (let round = -1; round < rounds; round++)
    for (const [k, lm] of Object.entries(lms)) {
      const r = await generate(lm, prompt, { maxNewTokens: 24, stopIds: [] });
      if (round >= 0) tps[k].push((r.tokenMs.length * 1000) / r.tokenMs.reduce((a, b) => a + b, 0));
    }
  for (const lm of Object.values(lms)) await lm.release();
  const ratio = (k: string) => median(tps[k].map((v, i) => v / tps.fp32[i]));
  const layerBytes = 4 * (4 * 4096 * 4096 + 3 * 4096 * 11008), headBytes = 4 * 32000 * 4096;
  return {
    model: `Llama-2-7B-shaped, ${layers} decoder layers, vocab 32000`,
    /** share of the bytes an fp32 token reads that is the lm_head (the real 32-layer 7B: 2%) */
    lmHeadShareOfFp32Read: headBytes / (layers * layerBytes + headBytes),
    quantizeSeconds, bytesBefore: report.bytesBefore, bytesAfter: report.bytesAfter, bytesAfterWithLmHead: reportHead.bytesAfter,
    decodeTokPerS: { fp32: median(tps.fp32), int4: median(tps.int4), int4LmHead: median(tps.int4LmHead), runs: tps },
    int4OverFp32: ratio("int4"),
    int4LmHeadOverFp32: ratio("int4LmHead"),
  };
}

/** AWQ (4-bit g128) of one decoder layer of hidden 2048 / intermediate 5504 (a 3B-class layer) calibrated on
 * `tokens` random token ids in windows of 512: the scale search (20 candidates per scaling group, each run on
 * the part of the layer it feeds), the clipping search and the writing, timed as `quantize` runs them. */
async function benchAwq(work: string, threads: number | undefined, tokens: number): Promise<Record<string, unknown>> {
  const dir = join(work, "awq-model");
  await generateLlamaModel(dir, { hiddenSize: 2048, intermediateSize: 5504, numLayers: 1, numHeads: 16, numKvHeads: 16, vocabSize: 1000, dtype: "F32", seed: 3 });
  const r = seededRandom(6);
  const windows = Array.from({ length: Math.max(1, Math.round(tokens / 512)) }, () => Array.from({ length: 512 }, () => Math.floor(r() * 1000)));
  const t = performance.now();
  const report = await quantizeModel({ model: dir, out: join(work, "awq-out"), method: "awq", format: "awq", bits: 4, groupSize: 128, windows, threads });
  const seconds = (performance.now() - t) / 1000;
  return { layer: "hidden 2048, intermediate 5504", tokens: windows.length * 512, weights: report.modules.reduce((a, m) => a + m.shape[0] * m.shape[1], 0), seconds };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { threads: { type: "string" }, "skip-7b": { type: "boolean" }, "skip-gptq": { type: "boolean" }, "skip-awq": { type: "boolean" }, rounds: { type: "string" }, layers: { type: "string" }, "awq-tokens": { type: "string" } } });
  const threads = values.threads ? Number(values.threads) : undefined;
  const out: Record<string, unknown> = { threads: threads ?? "ORT default" };
  process.stderr.write("RTN...\n");
  out.rtn = await benchRtn();
  const math = new OrtMath(threads);
  if (!values["skip-gptq"]) {
    process.stderr.write("GPTQ 4096×4096, 128×512 tokens...\n");
    out.gptq = await benchGptq(math);
  }
  await math.release();
  const work = mkdtempSync(join(tmpdir(), "loralab-bench-quant-"));
  try {
    if (!values["skip-awq"]) {
      process.stderr.write("AWQ of one decoder layer...\n");
      out.awq = await benchAwq(work, threads, Number(values["awq-tokens"] ?? 1024));
    }
    if (!values["skip-7b"]) {
      process.stderr.write("7B-shaped decode fp32 vs 4-bit...\n");
      out.decode = await benchDecode(work, threads, Number(values.rounds ?? 3), Number(values.layers ?? 4));
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(out, null, 2) + "\n");
}

await main();
