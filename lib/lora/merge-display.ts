/** The merge report's notebook display and plots: the per-tensor table and ‖ΔW‖/‖W‖ bars per module. Kept
 * out of merge.ts so that merging never loads the plotting libraries. */
import { escapeHtml, type MergeDeltaRow, htmlTable, trustedHtml, mergeDeltaBars, type Plot } from "../plot/index.js";
import { type ResultBundle, resultBundle } from "../plot/result.js";
import type { MergeReport } from "./merge.js";

/** One row per merged tensor; `.weight` is dropped so the bars are colored by module kind (q_proj, …). */
export function mergeDeltaRows(report: MergeReport): MergeDeltaRow[] {
  return report.modules.map((m) => ({ module: m.tensor.replace(/\.weight$/, ""), relDelta: m.relDelta }));
}

/** The plots of a merge: ‖ΔW‖/‖W‖ per module (a layer × kind heatmap above 64 modules). */
export function mergePlots(report: MergeReport): Plot[] {
  return report.modules.length ? [mergeDeltaBars(mergeDeltaRows(report), { name: "merge-delta" })] : [];
}

export function mergeReportBundle(report: MergeReport): Promise<ResultBundle> {
  const table = htmlTable(
    report.modules.map((m) => ({ ...m })),
    {
      caption: `merged into ${report.out} (${report.dtype}, ${(report.bytes / 1e9).toFixed(3)} GB in ${report.seconds.toFixed(2)} s)`,
      columns: [
        { key: "tensor" },
        { key: "rank" },
        { key: "scaling", format: (v) => (v as number).toPrecision(4) },
        { key: "relDelta", label: "‖ΔW‖/‖W‖", format: (v) => (v as number).toExponential(3) },
        { key: "maxAbsDelta", label: "max|ΔW|", format: (v) => (v as number).toExponential(3) },
        { key: "roundingError", label: "rounding error", format: (v) => (v as number).toExponential(2) },
      ],
    },
  );
  const extra = [...report.replaced.map((r) => `replaced: ${r}`), ...(report.untied ? ["tie_word_embeddings set to false (lm_head.weight written)"] : [])];
  const notes = extra.map((e) => trustedHtml(`<p>${escapeHtml(e)}</p>`, e));
  return resultBundle({ table, notes, plots: mergePlots(report), text: report.table() });
}
