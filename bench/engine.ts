/**
 * Engine benchmark (prints one JSON object): TTFT, decode tok/s and peak RSS for base, base + dynamic
 * LoRA (r=16 on all seven linears of every layer) and merged, on stories260K and on a generated fp32
 * model with Llama-2-7B layer shapes and 2 decoder layers; plus the decode memory-bandwidth bound
 * measured in the same run (weight bytes read per token ÷ large-buffer copy bandwidth).
 *
 *   node --import tsx bench/engine.ts [--threads N] [--repeats R] [--rounds K] [--skip-7b] [--skip-stories] [--dir DIR] [--prepare]
 *                                     [--paired-rounds K] [--control] [--no-prepack]
 * (--control adds a second session of the base model to the paired child: the noise floor of the ratios)
 * (--dir keeps the generated and merged models there and reuses them on the next run; --prepare only
 * writes them, so the timed run under the bench lock does not include writing gigabytes)
 *
 * Copy bandwidth (1 GiB buffer) is measured in every child right after its benchmark; the bound uses the
 * median over all children.
 * Every configuration runs in its own child process, so peak RSS belongs to that configuration alone.
 * Generated models and merged copies are written as ordinary HF directories under a temp dir (removed
 * at the end) and loaded like any user model (tensors streamed, external ONNX data above 1.5 GB).
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { benchLoaded, rssBytes } from "../lib/bench/benchmark.js";
import { percentile, summarize } from "../lib/bench/stats.js";
import { createSession, ort } from "../lib/engine/session.js";
import { GraphBuilder } from "../lib/engine/onnx-builder.js";
import { type ModelConfig, loadConfig, parseConfig } from "../lib/io/hf-config.js";
import { ModelDir } from "../lib/io/model-dir.js";
import { writeSafetensors } from "../lib/io/safetensors.js";
import type { Adapter, LoraModule } from "../lib/lora/types.js";
import { layerLinears, linearShape } from "../lib/model/architecture.js";
import { CausalLM } from "../lib/model/causal-lm.js";
import { generate } from "../lib/model/generate.js";
import { TextTokenizer } from "../lib/model/tokenizer.js";
import { AdapterWeightSource, openWeightSource } from "../lib/model/weights.js";
import { nameSeed } from "../lib/fixtures/random.js";
import { seededRandom } from "../lib/random.js";
import { Tensor } from "../lib/tensor/tensor.js";

const SHARED = process.env.LORALAB_SHARED_DATA ?? join(fileURLToPath(new URL("../../shared/data", import.meta.url)));
const RANK = 16, ALPHA = 32;
/** --no-prepack: sessions without ORT's weight prepacking (SessionOptions.prepack) */
let prepack = true;
const PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.";

/** Uniform in offset ± scale, seeded by a name (the same values in every process). */
function randomF32(n: number, seedText: string, scale: number, offset = 0): Float32Array {
  const r = seededRandom(nameSeed(0, seedText)), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = offset + 2 * scale * (r() - 0.5);
  return out;
}

/** The seeded r=16 adapter on all seven linears of every layer (same values in every process). */
function generatedAdapter(cfg: ModelConfig): Adapter {
  const modules = new Map<string, LoraModule>();
  for (let l = 0; l < cfg.numLayers; l++)
    for (const module of layerLinears(l)) {
      const [out, inp] = linearShape(cfg, module);
      const A = new Tensor("F32", [RANK, inp], randomF32(RANK * inp, `${module}.A`, 1 / Math.sqrt(inp)));
      const B = new Tensor("F32", [out, RANK], randomF32(out * RANK, `${module}.B`, 0.02));
      modules.set(`${module}.weight`, { module, target: `${module}.weight`, kind: "linear", A, B, r: RANK, alpha: ALPHA, scaling: ALPHA / RANK, fanInFanOut: false });
    }
  return { dir: "generated r=16 all-linear adapter", config: { r: RANK, lora_alpha: ALPHA }, modules, replacements: new Map(), trainableTokens: new Map() };
}

/** Writes a seeded fp32 model with Llama-2-7B layer shapes and `layers` decoder layers. */
async function writeLlama7bShaped(dir: string, layers: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const raw = {
    architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: 4096, intermediate_size: 11008, num_attention_heads: 32,
    num_key_value_heads: 32, num_hidden_layers: layers, vocab_size: 32000, max_position_embeddings: 4096, rms_norm_eps: 1e-5,
    rope_theta: 10000, hidden_act: "silu", tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: "float32",
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(raw, null, 2));
  const cfg = parseConfig(raw);
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(SHARED, "llama2-tokenizer", f), join(dir, f));
  const plan: { name: string; dtype: "F32"; shape: number[]; scale: number; offset: number }[] = [];
  const add = (name: string, shape: number[], scale: number, offset = 0) => plan.push({ name, dtype: "F32", shape, scale, offset });
  add("model.embed_tokens.weight", [32000, 4096], 0.02);
  for (let l = 0; l < layers; l++) {
    add(`model.layers.${l}.input_layernorm.weight`, [4096], 0.1, 1);
    add(`model.layers.${l}.post_attention_layernorm.weight`, [4096], 0.1, 1);
    for (const m of layerLinears(l)) {
      const s = linearShape(cfg, m);
      add(`${m}.weight`, s, 1 / Math.sqrt(s[1]));
    }
  }
  add("model.norm.weight", [4096], 0.1, 1);
  add("lm_head.weight", [32000, 4096], 1 / 64);
  await writeSafetensors(join(dir, "model.safetensors"), plan, (p) => {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const pp = plan.find((q) => q.name === p.name)!;
    return new Uint8Array(randomF32(n, p.name, pp.scale, pp.offset).buffer);
  });
}

/** W' = W + s·B·A for every adapted tensor, computed by ORT (Gemm), written tensor by tensor. */
async function writeMerged(baseDir: string, adapter: Adapter, outDir: string): Promise<void> {
  mkdirSync(outDir, { recursive: true });
  const base = await ModelDir.open(baseDir);
  for (const f of ["config.json", ...base.auxFiles]) copyFileSync(join(baseDir, f), join(outDir, f));
  const g = new GraphBuilder("merge");
  g.input("W", "F32", ["o", "i"]);
  g.input("B", "F32", ["o", "r"]);
  g.input("A", "F32", ["r", "i"]);
  g.node("Gemm", ["B", "A", "W"], ["Y"], { alpha: { float: ALPHA / RANK }, beta: { float: 1 } });
  g.output("Y", "F32", ["o", "i"]);
  const session = await createSession(g.toBytes());
  const names = base.names();
  await writeSafetensors(join(outDir, "model.safetensors"), names.map((n) => base.entry(n)), async (p) => {
    const t = await base.read(p.name);
    const m = adapter.modules.get(p.name);
    if (!m) return t.bytes();
    const f = (x: Tensor) => new ort.Tensor("float32", x.toF32(), [...x.shape]);
    const y = await session.run({ W: f(t), B: f(m.B), A: f(m.A) });
    const d = y.Y.data as Float32Array;
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  });
  await session.release();
  await base.close();
}

/** Bytes of weights decode reads per token: every linear incl. lm_head, the norms, LoRA factors. */
function decodeBytesPerToken(cfg: ModelConfig, lora: boolean): number {
  let n = cfg.hiddenSize * (2 * cfg.numLayers + 1);
  for (let l = 0; l < cfg.numLayers; l++)
    for (const m of layerLinears(l)) {
      const [o, i] = linearShape(cfg, m);
      n += o * i + (lora ? RANK * (o + i) : 0);
    }
  n += cfg.vocabSize * cfg.hiddenSize;
  return 4 * n;
}

/** Copy bandwidth of a 1 GiB buffer (bytes copied per second), median of 5 after one warm-up. */
function copyBandwidth(): { gbPerS: number; runs: number[] } {
  const n = 256 * 1024 * 1024;
  const src = new Float32Array(n).fill(1), dst = new Float32Array(n).fill(2);
  const runs: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t = performance.now();
    dst.set(src);
    const ms = performance.now() - t;
    if (i > 0) runs.push((n * 4) / ms / 1e6);
  }
  return { gbPerS: summarize(runs).median, runs };
}

async function child(modelDir: string, config: string, threads: number | undefined, repeats: number, maxNew: number): Promise<void> {
  const before = rssBytes();
  const base = await openWeightSource(modelDir);
  const cfg = base.config;
  const source = config === "dynamic" ? new AdapterWeightSource(base, generatedAdapter(cfg)) : base;
  const lm = await CausalLM.load(source, { threads, prepack, maxContext: Math.min(cfg.maxPositionEmbeddings, 512) });
  const tokenizer = await TextTokenizer.load(source.tokenizerDir);
  await source.close();
  const r = await benchLoaded({ lm, tokenizer, source: source.description }, config, { prompt: PROMPT, maxNewTokens: maxNew, repeats, warmup: 1, threads }, before);
  await lm.release();
  // measured after the model is released, so its buffers do not count in this child's peak RSS
  const copy = copyBandwidth();
  process.stdout.write(JSON.stringify({ ...r, decodeBytesPerToken: decodeBytesPerToken(cfg, config === "dynamic"), copyGBps: copy.gbPerS }) + "\n");
}

/** All three configurations in one process, decode runs alternating base/dynamic/merged: paired ratios
 * that drift on a shared machine cannot fake. */
async function interleaved(baseDir: string, mergedDir: string, threads: number | undefined, rounds: number, maxNew: number, control: boolean): Promise<void> {
  const load = async (dir: string, dynamic: boolean) => {
    const base = await openWeightSource(dir);
    const src = dynamic ? new AdapterWeightSource(base, generatedAdapter(base.config)) : base;
    try {
      return await CausalLM.load(src, { threads, prepack, maxContext: Math.min(base.config.maxPositionEmbeddings, 512) });
    } finally {
      await src.close();
    }
  };
  const lms: Record<string, CausalLM> = { base: await load(baseDir, false), dynamic: await load(baseDir, true), merged: await load(mergedDir, false) };
  // --control: a second session of the base model; its ratio to base is the noise floor of the comparison
  if (control) lms.baseAgain = await load(baseDir, false);
  const tokenizer = await TextTokenizer.load(baseDir);
  const prompt = tokenizer.encode(PROMPT);
  const tps: Record<string, number[]> = Object.fromEntries(Object.keys(lms).map((k) => [k, []]));
  const lat: Record<string, number[]> = Object.fromEntries(Object.keys(lms).map((k) => [k, []]));
  const order = Object.entries(lms);
  for (let round = -1; round < rounds; round++)
    // the order rotates every round, so no configuration always runs right after another one
    for (const [config, lm] of order.map((_, i) => order[(i + Math.max(round, 0)) % order.length])) {
      const r = await generate(lm, prompt, { maxNewTokens: maxNew, stopIds: [] });
      if (round >= 0) {
        tps[config].push((r.tokenMs.length * 1000) / r.tokenMs.reduce((a, b) => a + b, 0));
        lat[config].push(...r.tokenMs);
      }
    }
  const ratio = (a: number[], b: number[]) => summarize(a.map((x, i) => x / b[i]));
  process.stdout.write(JSON.stringify({
    rounds, decodeTokPerS: Object.fromEntries(Object.entries(tps).map(([k, v]) => [k, summarize(v)])),
    mergedOverBase: ratio(tps.merged, tps.base), dynamicOverBase: ratio(tps.dynamic, tps.base),
    // the fast tail of per-token latency is the least disturbed by other processes on a shared machine
    p10LatencyMs: Object.fromEntries(Object.entries(lat).map(([k, v]) => [k, percentile(v, 10)])),
    p10SpeedMergedOverBase: percentile(lat.base, 10) / percentile(lat.merged, 10),
    p10SpeedDynamicOverBase: percentile(lat.base, 10) / percentile(lat.dynamic, 10),
    ...(control ? { baseAgainOverBase: ratio(tps.baseAgain, tps.base), p10SpeedBaseAgainOverBase: percentile(lat.base, 10) / percentile(lat.baseAgain, 10) } : {}),
  }) + "\n");
  for (const lm of Object.values(lms)) await lm.release();
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { threads: { type: "string" }, repeats: { type: "string" }, "skip-7b": { type: "boolean" }, dir: { type: "string" }, rounds: { type: "string" }, child: { type: "string", multiple: true }, "skip-stories": { type: "boolean" }, prepare: { type: "boolean" }, "paired-rounds": { type: "string" }, control: { type: "boolean" }, "no-prepack": { type: "boolean" } } });
  const threads = values.threads ? Number(values.threads) : undefined;
  prepack = !values["no-prepack"];
  const repeats = values.repeats ? Number(values.repeats) : 3;
  const rounds = (name: string) => (values.rounds ? Number(values.rounds) : name === "stories260K" ? 5 : 2);
  if (values.child) {
    const [modelDir, config, maxNew, mergedDir] = values.child;
    if (config === "interleaved") return interleaved(modelDir, mergedDir, threads, Number(values.rounds ?? 6), Number(maxNew), !!values.control);
    return child(modelDir, config, threads, repeats, Number(maxNew));
  }
  const work = values.dir ?? mkdtempSync(join(tmpdir(), "loralab-bench-"));
  const script = fileURLToPath(import.meta.url);
  const run = (modelDir: string, config: string, maxNew: number, extra: string[] = []) => {
    const args = ["--import", "tsx", script, "--child", modelDir, "--child", config, "--child", String(maxNew), "--repeats", String(repeats), ...(threads ? ["--threads", String(threads)] : []), ...(prepack ? [] : ["--no-prepack"]), ...extra];
    return JSON.parse(execFileSync(process.execPath, args, { encoding: "utf8", maxBuffer: 1 << 26, stdio: ["ignore", "pipe", "inherit"] }).trim().split("\n").pop()!);
  };
  try {
    const models: [string, string, number][] = values["skip-stories"] ? [] : [["stories260K", join(SHARED, "stories260K-hf"), 64]];
    if (!values["skip-7b"]) {
      process.stderr.write("writing the Llama-2-7B-shaped 2-layer fp32 model...\n");
      if (!existsSync(join(work, "llama7b-shaped-2l", "model.safetensors"))) await writeLlama7bShaped(join(work, "llama7b-shaped-2l"), 2);
      models.push(["llama2-7b-shaped-2-layers-fp32", join(work, "llama7b-shaped-2l"), 16]);
    }
    const bandwidthBefore = copyBandwidth();
    const report: Record<string, unknown> = {};
    for (const [name, dir, maxNew] of models) {
      const cfg = await loadConfig(dir);
      process.stderr.write(`${name}: writing the merged copy...\n`);
      const mergedDir = join(work, `${name}-merged`);
      if (!existsSync(join(mergedDir, "model.safetensors"))) await writeMerged(dir, generatedAdapter(cfg), mergedDir);
      if (values.prepare) continue;
      // rounds interleave the configurations so drift on a shared machine hits all of them alike
      const runs: Record<string, ReturnType<typeof run>[]> = { base: [], dynamic: [], merged: [] };
      for (let round = 0; round < rounds(name); round++)
        for (const [config, d] of [["base", dir], ["dynamic", dir], ["merged", mergedDir]] as const) {
          process.stderr.write(`${name}: ${config} (round ${round + 1})...\n`);
          runs[config].push(run(d, config, maxNew));
        }
      const rows = Object.fromEntries(Object.entries(runs).map(([config, rs]) => [config, {
        ...rs[0],
        ttftMs: summarize(rs.map((r) => r.ttftMs.median)),
        decodeTokPerS: summarize(rs.map((r) => r.decodeTokPerS.median)),
        peakRssBytes: Math.max(...rs.map((r) => r.peakRssBytes)),
        memoryBytes: Math.max(...rs.map((r) => r.memoryBytes)),
        loadMs: summarize(rs.map((r) => r.loadMs)).median,
        copyGBps: summarize(rs.map((r) => r.copyGBps)).median,
        perRound: rs.map((r) => ({ ttftMs: r.ttftMs, decodeTokPerS: r.decodeTokPerS, latencyMs: r.latencyMs, peakRssBytes: r.peakRssBytes, loadMs: r.loadMs })),
      }]));
      process.stderr.write(`${name}: interleaved speed comparison...\n`);
      const paired = run(dir, "interleaved", maxNew, ["--child", mergedDir, "--rounds", values["paired-rounds"] ?? String(name === "stories260K" ? 20 : 6), ...(values.control ? ["--control"] : [])]);
      if (!values.dir) rmSync(mergedDir, { recursive: true, force: true });
      report[name] = { rows, paired, maxNewTokens: maxNew };
    }
    if (values.prepare) return;
    const bandwidthAfter = copyBandwidth();
    // the bound uses the copy bandwidth measured in each configuration's own processes (median)
    const all = Object.values(report).flatMap((e) => Object.values((e as { rows: Record<string, { copyGBps: number }> }).rows).map((r) => r.copyGBps));
    const bw = summarize(all).median;
    const summary: Record<string, unknown> = {};
    for (const [name, entry] of Object.entries(report) as [string, { paired: { p10LatencyMs: Record<string, number> }; rows: Record<string, { decodeTokPerS: { median: number }; ttftMs: { median: number }; peakRssBytes: number; memoryBytes: number; modelBytes: number; loadMs: number; decodeBytesPerToken: number }> }][]) {
      const out: Record<string, unknown> = {};
      for (const [config, r] of Object.entries(entry.rows)) {
        const bound = (bw * 1e9) / r.decodeBytesPerToken;
        const p10TokPerS = 1000 / entry.paired.p10LatencyMs[config];
        out[config] = {
          ttftMs: r.ttftMs.median, decodeTokPerS: r.decodeTokPerS.median, peakRssBytes: r.peakRssBytes, memoryBytes: r.memoryBytes,
          modelBytes: r.modelBytes, loadMs: r.loadMs, decodeBytesPerToken: r.decodeBytesPerToken, boundTokPerS: bound, achievedOverBound: r.decodeTokPerS.median / bound,
          // the speed of the fastest tenth of the decode steps (the least disturbed by other processes on a
          // shared machine; from the interleaved child) against the same bound
          p10TokPerS, p10OverBound: p10TokPerS / bound,
        };
      }
      out.mergedOverBase = entry.rows.merged.decodeTokPerS.median / entry.rows.base.decodeTokPerS.median;
      out.dynamicOverBase = entry.rows.dynamic.decodeTokPerS.median / entry.rows.base.decodeTokPerS.median;
      // the robust comparison: same process, alternating runs, median of paired ratios
      out.paired = entry.paired;
      summary[name] = out;
    }
    process.stdout.write(JSON.stringify({ date: new Date().toISOString(), threads: threads ?? null, prepack, repeats, copyBandwidthGBps: { parentBefore: bandwidthBefore.gbPerS, parentAfter: bandwidthAfter.gbPerS, perConfigChildren: all, used: bw }, summary, details: report }, null, 2) + "\n");
  } finally {
    if (!values.dir) rmSync(work, { recursive: true, force: true });
  }
}

await main();
