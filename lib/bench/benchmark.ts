import { readFileSync } from "node:fs";
import { LoralabError, throwIfAborted } from "../errors.js";
import type { LoadOptions } from "../model/causal-lm.js";
import { generate } from "../model/generate.js";
import { type LoadedModel, type ModelSpec, loadModel } from "../model/load.js";
import { formatBytes, textTable } from "../plot/format.js";
import { type Displayable, type Summary, percentile, summarize, withDisplay } from "./stats.js";

export interface BenchOptions extends LoadOptions {
  prompt: string;
  /** new tokens per run (generation never stops early, so runs compare) */
  maxNewTokens?: number;
  repeats?: number;
  warmup?: number;
}

export interface BenchResult {
  label: string;
  source: string;
  device: string;
  threads: number | null;
  /** graph build + session creation, ms */
  loadMs: number;
  /** weight bytes in the session (as run: float32 or packed n-bit, LoRA factors included) */
  modelBytes: number;
  promptTokens: number;
  newTokens: number;
  repeats: number;
  /** prompt → first new token (prefill + choosing it), ms */
  ttftMs: Summary;
  /** new tokens after the first / their time, per run */
  decodeTokPerS: Summary;
  /** per-token decode latency over all runs, ms */
  latencyMs: { p50: number; p90: number; p99: number };
  /** per-token latency over the generation: entry i is the decode step that produced new token i+2 (the
   * first token's latency is the TTFT), the median over the repeats, ms rounded to 1 µs */
  perTokenMs: number[];
  /** process RSS high-water mark at the end (includes everything loaded before) */
  peakRssBytes: number;
  /** RSS growth from before loading to the largest value seen while this model ran */
  memoryBytes: number;
}

export function rssBytes(): number {
  return process.memoryUsage.rss();
}

/** The process's RSS high-water mark: VmHWM on Linux (belongs to this process image; getrusage's maxRSS
 * carries the parent's peak across fork+exec), getrusage elsewhere. */
export function peakRss(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

/** Runs warm-up + repeats of greedy generation on a loaded model. */
export async function benchLoaded(loaded: LoadedModel, label: string, opts: BenchOptions, rssBefore = rssBytes()): Promise<BenchResult & Displayable> {
  const { lm, tokenizer } = loaded;
  const maxNew = opts.maxNewTokens ?? 32;
  const repeats = opts.repeats ?? 5, warmup = opts.warmup ?? 1;
  if (!(maxNew >= 2)) throw new LoralabError("--max-new-tokens must be at least 2 to measure decode speed");
  if (!(repeats >= 1)) throw new LoralabError("--repeats must be at least 1");
  const prompt = tokenizer.encode(opts.prompt);
  if (prompt.length === 0) throw new LoralabError("the prompt is empty");
  if (prompt.length + maxNew > lm.maxContext) throw new LoralabError(`the prompt (${prompt.length} tokens) plus ${maxNew} new tokens is longer than the model's context of ${lm.maxContext} tokens`);
  let maxRss = rssBytes();
  const ttft: number[] = [], tps: number[] = [], lat: number[] = [];
  const steps: number[][] = Array.from({ length: maxNew - 1 }, () => []);
  for (let i = 0; i < warmup + repeats; i++) {
    throwIfAborted(opts.signal);
    const r = await generate(lm, prompt, { maxNewTokens: maxNew, stopIds: [] });
    maxRss = Math.max(maxRss, rssBytes());
    opts.onProgress?.({ phase: `bench ${label}`, done: i + 1, total: warmup + repeats, unit: "runs" });
    if (i < warmup) continue;
    ttft.push(r.ttftMs);
    const decodeMs = r.tokenMs.reduce((a, b) => a + b, 0);
    tps.push((r.tokenMs.length * 1000) / decodeMs);
    lat.push(...r.tokenMs);
    r.tokenMs.forEach((ms, i) => steps[i]?.push(ms));
  }
  const s = summarize(lat);
  const result: BenchResult = {
    label, source: loaded.source, device: opts.device ?? "cpu", threads: opts.threads ?? null,
    loadMs: lm.loadMs, modelBytes: lm.modelBytes, promptTokens: prompt.length, newTokens: maxNew, repeats,
    ttftMs: summarize(ttft), decodeTokPerS: summarize(tps),
    latencyMs: { p50: s.median, p90: percentile(lat, 90), p99: percentile(lat, 99) },
    perTokenMs: steps.map((runs) => Math.round(percentile(runs, 50) * 1000) / 1000),
    peakRssBytes: peakRss(), memoryBytes: maxRss - rssBefore,
  };
  // table + latency dashboard; the plotting code loads only when the result is displayed
  return withDisplay(result, (r) => import("./display.js").then((m) => m.benchBundle(r)));
}

export function benchRows(r: BenchResult): string[][] {
  const spread = (x: Summary, d = 1) => `${x.median.toFixed(d)} (${x.min.toFixed(d)}–${x.max.toFixed(d)})`;
  return [
    ["model", r.source],
    ["load", `${r.loadMs.toFixed(0)} ms`],
    ["model bytes", formatBytes(r.modelBytes)],
    ["memory (RSS growth / peak)", `${formatBytes(r.memoryBytes)} / ${formatBytes(r.peakRssBytes)}`],
    ["prompt / new tokens", `${r.promptTokens} / ${r.newTokens}`],
    ["TTFT ms, median (min–max)", spread(r.ttftMs, 2)],
    ["decode tok/s, median (min–max)", spread(r.decodeTokPerS)],
    ["latency ms p50 / p90 / p99", `${r.latencyMs.p50.toFixed(2)} / ${r.latencyMs.p90.toFixed(2)} / ${r.latencyMs.p99.toFixed(2)}`],
  ];
}

export function formatBench(r: BenchResult): string {
  return textTable(["metric", "value"], benchRows(r));
}

/** Loads a model spec and benchmarks it. */
export async function benchmark(spec: ModelSpec, opts: BenchOptions, label = spec.adapter ? "base+dynamic LoRA" : "model"): Promise<BenchResult & Displayable> {
  const before = rssBytes();
  const loaded = await loadModel(spec, opts);
  try {
    return await benchLoaded(loaded, label, opts, before);
  } finally {
    await loaded.lm.release();
  }
}
