import { comparePlots } from "../bench/display.js";
import { compareTables, type CompareResult } from "../bench/compare.js";
import { mergePlots } from "../lora/merge-display.js";
import type { MergeReport } from "../lora/merge.js";
import type { ReportSection } from "../plot/report.js";
import { quantPlots } from "../quant/report-display.js";
import type { QuantReport } from "../quant/report.js";

/** The report of a pipeline run: one section per step, each its table and the result's own plots. */
export function resultSections(r: { merge: MergeReport; quantize: QuantReport; compare: CompareResult }): ReportSection[] {
  const table = compareTables(r.compare);
  const s = r.compare.settings;
  return [
    {
      title: "Comparison",
      content: [`Prompt "${r.compare.prompt}", ${s.maxNewTokens} new tokens, median of ${s.repeats} runs on ${s.device}.`, table, ...comparePlots(r.compare)],
    },
    { title: "Merge", content: [r.merge.table(), ...mergePlots(r.merge)] },
    { title: "Quantization", content: [r.quantize.summary(), ...quantPlots(r.quantize)] },
  ];
}
