import { compareTables, type CompareResult } from "../bench/compare.js";
import type { MergeReport } from "../lora/merge.js";
import { trustedHtml } from "../plot/html.js";
import { latencyDashboard } from "../plot/latency.js";
import { mergeDeltaBars, quantErrorBars } from "../plot/module-bars.js";
import { perplexityBars } from "../plot/perplexity.js";
import type { ReportSection } from "../plot/report.js";
import type { QuantReport } from "../quant/report.js";

/** The report of a pipeline run: one section per step, each a table and its plots. */
export function resultSections(r: { merge: MergeReport; quantize: QuantReport; compare: CompareResult }): ReportSection[] {
  const table = compareTables(r.compare);
  const q = r.quantize;
  const withPpl = r.compare.rows.filter((row) => row.perplexity);
  return [
    {
      title: "Comparison",
      content: [
        `Prompt "${r.compare.prompt}", ${r.compare.settings.maxNewTokens} new tokens, median of ${r.compare.settings.repeats} runs on ${r.compare.settings.device}.`,
        trustedHtml(table.html, table.text),
        latencyDashboard(r.compare.rows.map((row) => ({
          config: row.config, ttftMs: row.bench.ttftMs.median, decodeTokensPerSec: row.bench.decodeTokPerS.median,
          peakRssBytes: row.bench.peakRssBytes, modelBytes: row.bench.modelBytes,
        }))),
        ...(withPpl.length ? [perplexityBars(withPpl.map((row) => ({ label: row.config, ppl: row.perplexity!.ppl })), { baseline: withPpl[0].config })] : []),
      ],
    },
    {
      title: "Merge",
      content: [r.merge.table(), mergeDeltaBars(r.merge.modules.map((m) => ({ module: m.tensor.replace(/\.weight$/, ""), relDelta: m.relDelta })))],
    },
    {
      title: "Quantization",
      content: [q.summary(), ...(q.modules.length ? [quantErrorBars(q.modules.map((m) => ({ module: m.module, relError: m.relError, loss: m.loss ?? undefined })), { method: q.method })] : [])],
    },
  ];
}
