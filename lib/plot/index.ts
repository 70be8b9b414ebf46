/** Plots of loralab results: Vega-Lite 5 specs, rendered server-side to SVG by vega, shown in notebooks as
 * MIME bundles, saved as files, and gathered into self-contained HTML reports. Inputs are plain data
 * types defined here, so any result (merge, quantization, benchmark) maps onto them. */
export { Plot, renderAll, savePlots, JUPYTER_DISPLAY, VEGALITE_MIME, VEGALITE_SCHEMA_URL, type MimeBundle, type PlotFormat, type SaveOptions } from "./plot.js";
export { renderSvg, svgToPng, pngRasterizer } from "./render.js";
export { weightHistogram, loraDeltaHistogram, quantErrorHistogram, binSeries, histogramRows, type ValueSeries, type BinRow, type HistogramOptions } from "./histogram.js";
export { mergeDeltaBars, quantErrorBars, parseModuleName, type MergeDeltaRow, type QuantErrorRow, type ModuleChartOptions } from "./module-bars.js";
export { ttftBars, decodeThroughputBars, memoryBars, perTokenLatencyChart, latencyDashboard, type ConfigMeasures } from "./latency.js";
export { perplexityBars, windowPerplexityChart, type PerplexityRow, type PerplexityBarsOptions, type PerplexityWindow } from "./perplexity.js";
export { groupSizeSweepChart, paretoFront, groupLabel, GROUP_SIZE_PARAM, type SweepPoint, type SweepChartOptions } from "./sweep.js";
export { escapeHtml, htmlTable, trustedHtml, HtmlFragment, type TableColumn, type TableOptions } from "./html.js";
export { reportHtml, writeReport, composeHtml, type ReportContent, type ReportSection, type ReportOptions, type WriteReportOptions } from "./report.js";
export { formatNumber, formatBytes, textTable } from "./format.js";
export { concatPlots, resultBundle, type ResultBundle, type ResultDisplay } from "./result.js";
export { lazyDisplay } from "./display-cache.js";
