/** The quantization report's notebook display and plots: the per-module table and the relative weight
 * error (and GPTQ/AWQ loss) per module. Imported lazily, so quantizing never loads the plotting libraries. */
import { escapeHtml, htmlTable, type Plot, type QuantErrorRow, quantErrorBars, trustedHtml } from "../plot/index.js";
import { type ResultBundle, resultBundle } from "../plot/result.js";
import { type QuantReport, fmtBytes } from "./report.js";

/** One row per quantized module; the loss only when every module has one (RTN has none). */
export function quantErrorRows(report: QuantReport): QuantErrorRow[] {
  const withLoss = report.modules.length > 0 && report.modules.every((m) => m.loss !== null && Number.isFinite(m.loss));
  return report.modules.map((m) => ({ module: m.module, relError: m.relError, ...(withLoss ? { loss: m.loss! } : {}) }));
}

/** ‖W − Ŵ‖/‖W‖ (and the method's loss) per module; a layer × kind heatmap above 64 modules. */
export function quantPlots(report: QuantReport): Plot[] {
  if (report.modules.length === 0) return [];
  return [quantErrorBars(quantErrorRows(report), { method: report.method.toUpperCase(), name: "quant-error", title: `${report.method.toUpperCase()} ${report.bits}-bit g${report.groupSize}: quantization error per module` })];
}

export function quantReportBundle(report: QuantReport): Promise<ResultBundle> {
  const exp = (digits: number) => (v: unknown) => (v === null || v === undefined ? "" : (v as number).toExponential(digits));
  const table = htmlTable(
    report.modules.map((m) => ({ ...m, shape: m.shape.join("×") })),
    {
      caption: `${report.method} ${report.bits}-bit g${report.groupSize}${report.sym ? " sym" : " asym"} → ${report.format}: ${fmtBytes(report.bytesBefore)} → ${fmtBytes(report.bytesAfter)} in ${report.seconds.toFixed(2)} s`,
      columns: [
        { key: "module" },
        { key: "shape", align: "right" },
        { key: "bits" },
        { key: "groupSize", label: "group" },
        { key: "relError", label: "‖W−Ŵ‖/‖W‖", format: exp(3) },
        { key: "loss", format: exp(3), align: "right" },
        { key: "seconds", label: "s", format: (v) => (v as number).toFixed(3) },
      ],
    },
  );
  const notes = report.skipped.length
    ? [trustedHtml(`<p>kept in full precision:</p><ul>${report.skipped.map((s) => `<li>${escapeHtml(s.module)} (${s.shape.join("×")}): ${escapeHtml(s.reason)}</li>`).join("")}</ul>`, report.skipped.map((s) => `${s.module}: ${s.reason}`).join("\n"))]
    : [];
  const plots = quantPlots(report);
  const text = [report.summary(), ...plots.map((p) => p.text)].join("\n\n");
  return resultBundle({ table, notes, plots, text, name: "quantization" });
}
