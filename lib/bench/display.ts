/** Notebook displays and plots of benchmark, compare and perplexity results. Imported lazily by the
 * results' display methods (and by the CLI's --plot), so measuring never loads the plotting libraries. */
import { type ConfigMeasures, type Plot, type PerplexityRow, htmlTable, latencyDashboard, perplexityBars, windowPerplexityChart } from "../plot/index.js";
import { type ResultBundle, resultBundle } from "../plot/result.js";
import { type BenchResult, benchRows, formatBench } from "./benchmark.js";
import { type CompareResult, compareTables } from "./compare.js";
import type { PerplexityResult } from "./perplexity.js";

/** A benchmark's numbers as the latency plots take them. The process's peak RSS only with `peakRss`: in a
 * compare, several models ran in one process, so it is not one configuration's. */
export function benchMeasures(b: BenchResult, opts: { peakRss?: boolean } = {}): ConfigMeasures {
  return {
    config: b.label,
    ttftMs: b.ttftMs.median,
    decodeTokensPerSec: b.decodeTokPerS.median,
    // results saved before perTokenMs existed have no series
    ...(b.perTokenMs?.length ? { perTokenMs: b.perTokenMs, perTokenStart: 2, perTokenPercentilesMs: b.latencyMs } : {}),
    modelBytes: b.modelBytes,
    // RSS can shrink while a model runs (GC); a negative growth is shown as none
    rssGrowthBytes: Math.max(0, b.memoryBytes),
    ...(opts.peakRss ? { peakRssBytes: b.peakRssBytes } : {}),
  };
}

/** TTFT, decode tok/s and memory bars above the per-token latency over the generation. */
export function benchPlots(r: BenchResult): Plot[] {
  return [latencyDashboard([benchMeasures(r, { peakRss: true })], { title: `Latency and memory: ${r.label}`, name: "bench-latency" })];
}

export function benchBundle(r: BenchResult): Promise<ResultBundle> {
  const table = htmlTable(benchRows(r).map(([metric, value]) => ({ metric, value })), {
    caption: `${r.label}: ${r.repeats} runs of ${r.newTokens} new tokens after a ${r.promptTokens}-token prompt (${r.device}${r.threads ? `, ${r.threads} threads` : ""})`,
    columns: ["metric", { key: "value", align: "right" }],
  });
  return resultBundle({ table, plots: benchPlots(r), text: formatBench(r), name: "bench" });
}

/** The configuration perplexities are compared with: merged, else base + dynamic LoRA (the adapted model
 * the quantization should preserve); none when neither was measured. */
function pplBaseline(rows: PerplexityRow[]): string | undefined {
  return ["merged", "base + dynamic LoRA"].find((c) => rows.some((r) => r.label === c));
}

/** The latency dashboard of all configurations and, when perplexity was measured, its bars. */
export function comparePlots(r: CompareResult): Plot[] {
  const plots = [latencyDashboard(r.rows.map((row) => benchMeasures(row.bench)), { name: "compare-latency" })];
  const ppl: PerplexityRow[] = r.rows.filter((row) => row.perplexity).map((row) => ({ label: row.config, ppl: row.perplexity!.ppl }));
  if (ppl.length) plots.push(perplexityBars(ppl, { baseline: pplBaseline(ppl), name: "compare-perplexity" }));
  return plots;
}

export function compareBundle(r: CompareResult): Promise<ResultBundle> {
  const s = r.settings;
  const table = compareTables(r,
    `${s.repeats} runs of ${s.maxNewTokens} new tokens per configuration (${s.device}${s.threads ? `, ${s.threads} threads` : ""})${s.ctx ? `; perplexity in windows of ${s.ctx} tokens` : ""}`);
  return resultBundle({ table, plots: comparePlots(r), text: compareTables(r).text, name: "compare" });
}

/** Perplexity of each window with the overall figure as a rule. */
export function perplexityPlots(r: PerplexityResult): Plot[] {
  if (!r.windowNll?.length || r.windowTokens?.length !== r.windowNll.length) return [];
  return [windowPerplexityChart(r.windowNll.map((nllSum, i) => ({ nllSum, tokens: r.windowTokens[i], begin: i * r.stride })), { name: "perplexity-windows" })];
}

/** One line for the terminal, as `loralab ppl` prints it. */
export function formatPerplexity(r: PerplexityResult): string {
  return `perplexity ${r.ppl.toFixed(4)} ± ${r.pplStderr.toFixed(4)}  (mean NLL ${r.nll.toFixed(6)}, ${r.tokens} tokens scored in ${r.windows} windows; ${r.method})`;
}

export function perplexityBundle(r: PerplexityResult): Promise<ResultBundle> {
  const rows = [
    ["perplexity", `${r.ppl.toFixed(4)} ± ${r.pplStderr.toFixed(4)}`],
    ["mean NLL (nats)", r.nll.toFixed(6)],
    ["scored tokens", String(r.tokens)],
    ["windows", String(r.windows)],
    ["window / stride (tokens)", `${r.ctx} / ${r.stride}`],
    ["text tokens", String(r.streamTokens)],
    ["BOS before every window", r.bos ? "yes" : "no"],
  ];
  const table = htmlTable(rows.map(([metric, value]) => ({ metric, value })), { caption: r.method, columns: ["metric", { key: "value", align: "right" }] });
  return resultBundle({ table, plots: perplexityPlots(r), text: formatPerplexity(r), name: "perplexity" });
}
