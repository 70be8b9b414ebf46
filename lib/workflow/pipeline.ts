import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { compare, type CompareResult } from "../bench/compare.js";
import { throwIfAborted } from "../errors.js";
import { generateLlamaModel, generateLoraAdapter, seededText, writeCharTokenizer } from "../fixtures/index.js";
import { merge, type MergeReport } from "../lora/merge.js";
import type { ProgressCallback } from "../progress.js";
import type { Method } from "../quant/formats.js";
import { quantizeModel } from "../quant/pipeline.js";
import type { QuantReport } from "../quant/report.js";
import { resultSections } from "./report-sections.js";
import { writeReport } from "../plot/report.js";

/** The seed pipeline: merge → quantize → compare the four configurations → report. */
export interface PipelineOptions {
  /** base model; generated (a small seeded Llama with a character tokenizer) when absent */
  base?: string;
  /** PEFT adapter; generated when absent */
  adapter?: string;
  /** evaluation text (contents) for perplexity; seeded text when absent */
  text?: string;
  /** calibration text file; seeded text when absent */
  calib?: string;
  /** working folder: merged/, quantized/, report/ (and generated inputs) go here */
  out: string;
  method?: Method;
  bits?: number;
  groupSize?: number;
  calibSamples?: number;
  seqLen?: number;
  prompt?: string;
  maxNewTokens?: number;
  repeats?: number;
  /** perplexity window */
  ctx?: number;
  maxTokens?: number;
  threads?: number;
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
  /** called when a step starts (for the CLI's headings) */
  onStep?: (step: string) => void;
}

export interface PipelineResult {
  inputs: { base: string; adapter: string; generated: boolean };
  merge: MergeReport;
  quantize: QuantReport;
  compare: CompareResult;
  /** folder holding report.html, plots/ and results.json */
  report: string;
}

/** Runs the whole seed workflow and writes the report (HTML with the plots, SVGs and JSON) to `out/report`. */
export async function runPipeline(o: PipelineOptions): Promise<PipelineResult> {
  const out = resolve(o.out);
  await mkdir(out, { recursive: true });
  const step = (s: string) => { throwIfAborted(o.signal); o.onStep?.(s); };
  const task = { signal: o.signal, onProgress: o.onProgress };

  let base = o.base, adapter = o.adapter, calib = o.calib, text = o.text;
  const generated = !base;
  if (!base) {
    step("generate a model");
    base = join(out, "base");
    // K = 256 and 768: every linear fits group size 128 (and 32, 64)
    await generateLlamaModel(base, { hiddenSize: 256, intermediateSize: 768, numLayers: 4, numHeads: 8, numKvHeads: 4, vocabSize: 64, dtype: "F32", seed: 0, maxPositionEmbeddings: 512 });
    await writeCharTokenizer(base, 64);
  }
  if (!adapter) {
    step("generate an adapter");
    adapter = join(out, "adapter");
    await generateLoraAdapter(adapter, base, { r: 8, alpha: 16, targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], seed: 1 });
  }
  if (!calib) {
    calib = join(out, "calib.txt");
    await writeFile(calib, seededText(3, 6000));
  }
  text ??= seededText(4, 1500);

  step("merge");
  const merged = join(out, "merged");
  const mergeReport = await merge({ base, adapters: [{ path: adapter, weight: 1 }], out: merged, overwrite: true, ...task });

  const method = o.method ?? "gptq", bits = o.bits ?? 4, groupSize = o.groupSize ?? 128;
  step(`quantize (${method} ${bits}-bit g${groupSize})`);
  const quantized = join(out, "quantized");
  const quantReport = await quantizeModel({
    model: merged, out: quantized, method, format: method === "awq" ? "awq" : "gptq", bits, groupSize,
    calib: method === "rtn" ? undefined : calib, calibSamples: o.calibSamples ?? 32, seqLen: o.seqLen ?? 128,
    overwrite: true, threads: o.threads, ...task,
  });

  step("compare");
  const comparison = await compare({
    base, adapter, merged, quantized, prompt: o.prompt ?? "Once upon a time", text,
    maxNewTokens: o.maxNewTokens ?? 32, repeats: o.repeats ?? 3, ctx: o.ctx, maxTokens: o.maxTokens ?? 4096, threads: o.threads, ...task,
  });

  step("report");
  const report = join(out, "report");
  const results = { inputs: { base, adapter, generated }, merge: mergeReport, quantize: quantReport, compare: comparison };
  await writeReport(report, resultSections(results), {
    title: "loralab: merge, quantize, compare",
    subtitle: `${base} + ${adapter}`,
    overwrite: true,
    files: { "results.json": JSON.stringify(results, null, 2) + "\n" },
    signal: o.signal,
  });
  return { ...results, report };
}
