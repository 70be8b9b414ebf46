import { LoralabError } from "../errors.js";
import { histogram, tensorStats, type Histogram } from "../tensor/stats.js";
import { formatNumber, slug, textTable } from "./format.js";
import { Plot } from "./plot.js";
import { asSpec, seriesColor, specHeader } from "./spec.js";

/** Values of one tensor (or any set of numbers) under a legend name, e.g. "base", "merged", "dequantized". */
export interface ValueSeries {
  name: string;
  values: ArrayLike<number>;
}

/** One bin of a plotted histogram, as it appears in the spec's `bins` dataset. */
export interface BinRow {
  series: string;
  start: number;
  end: number;
  count: number;
}

export interface HistogramOptions {
  title?: string;
  /** Plot (file) name; default derived from the title. */
  name?: string;
  /** Number of equal-width bins over the shared range (default 80). */
  bins?: number;
  /** Bin range shared by all series (default: the range of all finite values). */
  range?: [number, number];
  /** Logarithmic count axis (bins with count 0 are left out: log scales cannot show them). */
  logCount?: boolean;
  xTitle?: string;
}

/** The range [min, max] of the finite values of all arrays ([Infinity, -Infinity] when there are none). */
export function finiteRange(arrays: Iterable<ArrayLike<number>>): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (const values of arrays)
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  return [lo, hi];
}

/** Bins every series over one shared range (so the bars line up) into plot rows. */
export function binSeries(series: ValueSeries[], bins = 80, range?: [number, number]): BinRow[] {
  const r = range ?? finiteRange(series.map((s) => s.values));
  const rows: BinRow[] = [];
  for (const s of series) rows.push(...histogramRows(s.name, histogram(s.values, bins, Number.isFinite(r[0]) ? r : undefined)));
  return rows;
}

/** The rows of an already computed histogram (lib/tensor/stats `histogram`). */
export function histogramRows(series: string, h: Histogram): BinRow[] {
  const rows: BinRow[] = [];
  for (let b = 0; b < h.counts.length; b++) rows.push({ series, start: h.edges[b], end: h.edges[b + 1], count: h.counts[b] });
  return rows;
}

function statsText(series: ValueSeries[]): string {
  const rows = series.map(({ name, values }) => {
    const s = tensorStats(values);
    return [name, String(s.count), formatNumber(s.mean), formatNumber(s.std), formatNumber(s.min), formatNumber(s.max), String(s.nonFinite)];
  });
  return textTable(["series", "n", "mean", "std", "min", "max", "non-finite"], rows);
}

/** Overlaid histograms of one or more value sets, e.g. a weight before and after merging and after
 * quantization. Values are binned here; the spec holds only the bins. */
export function weightHistogram(input: ValueSeries | ValueSeries[], opts: HistogramOptions = {}): Plot {
  const series = Array.isArray(input) ? input : [input];
  if (series.length === 0) throw new LoralabError("weightHistogram: no series to plot");
  const names = series.map((s) => s.name);
  if (new Set(names).size !== names.length) throw new LoralabError(`weightHistogram: series names must be distinct (got ${names.join(", ")})`);
  const title = opts.title ?? `Weight distribution (${names.join(" vs ")})`;
  let rows = binSeries(series, opts.bins ?? 80, opts.range);
  if (opts.logCount) rows = rows.filter((r) => r.count > 0);
  const overlaid = series.length > 1;
  const spec = asSpec({
    ...specHeader(title, `Histogram of ${names.join(", ")}${opts.logCount ? " (log count)" : ""}`, { bins: rows }),
    data: { name: "bins" },
    width: 480,
    height: 240,
    mark: { type: "bar", opacity: overlaid ? 0.5 : 0.9, binSpacing: 0 },
    encoding: {
      x: { field: "start", type: "quantitative", bin: { binned: true }, title: opts.xTitle ?? "value" },
      x2: { field: "end" },
      y: { field: "count", type: "quantitative", stack: null, title: opts.logCount ? "count (log)" : "count", ...(opts.logCount ? { scale: { type: "log", domainMin: 0.5 } } /* so bins of count 1 show */ : {}) },
      ...(overlaid ? { color: seriesColor("series", "series", names) } : {}),
      tooltip: [{ field: "series" }, { field: "start", format: ".4g" }, { field: "end", format: ".4g" }, { field: "count" }],
    },
  });
  return new Plot(opts.name ?? slug(title), spec, `${title}\n${statsText(series)}`);
}

/** Distribution of a LoRA delta ΔW = s·B·A (pass its values, e.g. merged − base of one module). */
export function loraDeltaHistogram(delta: ArrayLike<number>, opts: HistogramOptions & { module?: string } = {}): Plot {
  const title = opts.title ?? `LoRA delta distribution${opts.module ? ` — ${opts.module}` : ""}`;
  return weightHistogram({ name: "ΔW", values: delta }, { xTitle: "ΔW = s·B·A", ...opts, title });
}

/** Distribution of the quantization error W − dequant(quant(W)); several series compare methods or bits. */
export function quantErrorHistogram(errors: ValueSeries | ValueSeries[], opts: HistogramOptions & { module?: string } = {}): Plot {
  const title = opts.title ?? `Quantization error distribution${opts.module ? ` — ${opts.module}` : ""}`;
  return weightHistogram(errors, { xTitle: "W − dequant(quant(W))", ...opts, title });
}
