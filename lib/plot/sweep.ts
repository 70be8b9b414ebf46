import { LoralabError } from "../errors.js";
import { histogram, type Histogram } from "../tensor/stats.js";
import { formatBytes, formatNumber, slug, textTable } from "./format.js";
import { finiteRange } from "./histogram.js";
import { Plot } from "./plot.js";
import { asSpec, distinct, specHeader } from "./spec.js";

/** One quantized variant of a group-size sweep. */
export interface SweepPoint {
  method: string;
  bits: number;
  /** Columns per quantization group; 0 or less means one group per row (per-channel). */
  groupSize: number;
  ppl: number;
  /** Bytes of the quantized model (or of the quantized weights). */
  sizeBytes: number;
  /** Quantization error W − Ŵ of one chosen layer, as values or an already computed histogram, for the
   * linked histogram view. */
  error?: ArrayLike<number> | Histogram;
}

export interface SweepChartOptions {
  title?: string;
  name?: string;
  /** Bins of the error histograms (default 60); they share one range so group sizes compare directly. */
  bins?: number;
  /** The group size selected at first (default the largest group size of the sweep). */
  initialGroupSize?: number;
  /** The control bound to the group-size parameter: a drop-down (default) or radio buttons. */
  control?: "select" | "radio";
}

/** The Vega-Lite parameter the control sets; specs and expressions refer to it by this name. */
export const GROUP_SIZE_PARAM = "group_size";

const FRONT = "Pareto front";
const DOMINATED = "dominated";
const seriesName = (p: { method: string; bits: number }) => `${p.method} ${p.bits}-bit`;
export const groupLabel = (g: number) => (g > 0 ? String(g) : "per-channel");
/** Sort key: per-channel is one group as wide as a row, i.e. the largest group. */
const groupOrder = (g: number) => (g > 0 ? g : Infinity);

/** The points no other point beats on both size and perplexity (smaller and better), by ascending size. */
export function paretoFront<T extends { sizeBytes: number; ppl: number }>(points: T[]): T[] {
  const sorted = [...points].sort((a, b) => a.sizeBytes - b.sizeBytes || a.ppl - b.ppl);
  const front: T[] = [];
  for (const p of sorted) if (front.length === 0 || p.ppl < front[front.length - 1].ppl) front.push(p);
  return front;
}

function isHistogram(e: ArrayLike<number> | Histogram): e is Histogram {
  return (e as Histogram).edges instanceof Float64Array && (e as Histogram).counts instanceof Float64Array;
}

/** Error histogram rows for every point, raw values binned over one range shared by all points. */
function errorRows(points: SweepPoint[], bins: number) {
  const raw = points.flatMap((p) => (p.error && !isHistogram(p.error) ? [p.error] : []));
  let [lo, hi] = finiteRange(raw);
  for (const p of points)
    if (p.error && isHistogram(p.error)) { lo = Math.min(lo, p.error.edges[0]); hi = Math.max(hi, p.error.edges[p.error.edges.length - 1]); }
  const range: [number, number] | undefined = hi > lo ? [lo, hi] : undefined;
  const rows: { series: string; groupSize: number; start: number; end: number; count: number }[] = [];
  for (const p of points) {
    if (!p.error) continue;
    const h = isHistogram(p.error) ? p.error : histogram(p.error, bins, range);
    for (let b = 0; b < h.counts.length; b++) rows.push({ series: seriesName(p), groupSize: p.groupSize, start: h.edges[b], end: h.edges[b + 1], count: h.counts[b] });
  }
  return { rows, domain: range ?? (rows.length ? [rows[0].start, rows[rows.length - 1].end] : [0, 1]) };
}

/** Perplexity and model size against group size, one line per method × bits, with the size/quality Pareto
 * front, and (when points carry errors) the error histogram of the selected group size. A Vega-Lite
 * parameter bound to a select (or radio) control chooses the group size: in a notebook, changing it
 * highlights the points and switches the histogram without re-running anything, since every group size's
 * histogram is in the spec's data. */
export function groupSizeSweepChart(points: SweepPoint[], opts: SweepChartOptions = {}): Plot {
  if (points.length === 0) throw new LoralabError("groupSizeSweepChart: the sweep has no points");
  for (const p of points)
    if (!(Number.isFinite(p.ppl) && p.ppl > 0 && Number.isFinite(p.sizeBytes) && p.sizeBytes > 0))
      throw new LoralabError(`groupSizeSweepChart: ${seriesName(p)} group ${groupLabel(p.groupSize)} has an invalid perplexity (${p.ppl}) or size (${p.sizeBytes})`);
  const keys = points.map((p) => `${seriesName(p)}/${p.groupSize}`);
  const dup = keys.find((k, i) => keys.indexOf(k) !== i);
  if (dup) throw new LoralabError(`groupSizeSweepChart: ${dup} appears twice`);
  const title = opts.title ?? "Group-size sweep: perplexity and size";
  const groups = distinct(points.map((p) => p.groupSize)).sort((a, b) => groupOrder(a) - groupOrder(b));
  const initial = opts.initialGroupSize ?? groups[groups.length - 1];
  if (!groups.includes(initial)) throw new LoralabError(`groupSizeSweepChart: initial group size ${initial} is not in the sweep (${groups.map(groupLabel).join(", ")})`);
  const series = distinct(points.map(seriesName));
  const groupLabels = groups.map(groupLabel);
  const front = new Set(paretoFront(points));
  const rows = points.map((p) => ({ series: seriesName(p), method: p.method, bits: p.bits, groupSize: p.groupSize, group: groupLabel(p.groupSize), ppl: p.ppl, sizeMiB: p.sizeBytes / 2 ** 20, pareto: front.has(p) ? FRONT : DOMINATED }));
  const paretoRows = rows.filter((r) => r.pareto === FRONT).sort((a, b) => a.sizeMiB - b.sizeMiB);
  const errors = errorRows(points, opts.bins ?? 60);

  const selected = `datum.groupSize == ${GROUP_SIZE_PARAM}`;
  const color = { field: "series", type: "nominal", title: "method / bits", scale: { domain: series } };
  const highlight = {
    size: { condition: { test: selected, value: 160 }, value: 40 },
    stroke: { condition: { test: selected, value: "black" }, value: null },
  };
  const tooltip = [{ field: "series", title: "method / bits" }, { field: "group", title: "group size" }, { field: "ppl", format: ".5~r" }, { field: "sizeMiB", title: "MiB", format: ".4~r" }, { field: "pareto", title: "size / quality" }];
  const pplVsGroup = {
    title: "perplexity vs group size",
    data: { name: "points" },
    width: 260,
    height: 200,
    encoding: {
      x: { field: "group", type: "ordinal", title: "group size", sort: groupLabels, axis: { labelAngle: 0 } },
      y: { field: "ppl", type: "quantitative", title: "perplexity", scale: { zero: false } },
      color,
    },
    layer: [{ mark: "line" }, { mark: { type: "point", filled: true, opacity: 1 }, encoding: { ...highlight, tooltip } }],
  };
  const sizeVsPpl = {
    title: "size / quality (dashed: Pareto front)",
    width: 260,
    height: 200,
    layer: [
      {
        data: { name: "pareto" },
        mark: { type: "line", interpolate: "step-after", strokeDash: [4, 3], color: "#555" },
        encoding: { x: { field: "sizeMiB", type: "quantitative" }, y: { field: "ppl", type: "quantitative" } },
      },
      {
        data: { name: "points" },
        mark: { type: "point", filled: true, opacity: 1 },
        encoding: {
          x: { field: "sizeMiB", type: "quantitative", title: "model size (MiB)", scale: { zero: false } },
          y: { field: "ppl", type: "quantitative", title: "perplexity", scale: { zero: false } },
          color,
          shape: { field: "pareto", type: "nominal", title: "size / quality", scale: { domain: [FRONT, DOMINATED], range: ["diamond", "circle"] } },
          ...highlight,
          tooltip,
        },
      },
    ],
  };
  const histogramPanel = {
    title: { text: { expr: `'quantization error at group size ' + (${GROUP_SIZE_PARAM} > 0 ? ${GROUP_SIZE_PARAM} : 'per-channel')` } },
    data: { name: "errors" },
    transform: [{ filter: selected }],
    width: 560,
    height: 180,
    mark: { type: "bar", opacity: series.length > 1 ? 0.5 : 0.9, binSpacing: 0 },
    encoding: {
      x: { field: "start", type: "quantitative", bin: { binned: true }, title: "W − Ŵ", scale: { domain: errors.domain } },
      x2: { field: "end" },
      y: { field: "count", type: "quantitative", stack: null, title: "count" },
      color,
      tooltip: [{ field: "series", title: "method / bits" }, { field: "start", format: ".4g" }, { field: "end", format: ".4g" }, { field: "count" }],
    },
  };
  const spec = asSpec({
    ...specHeader(title, `Perplexity and size of ${series.join(", ")} at group sizes ${groupLabels.join(", ")}`, { points: rows, pareto: paretoRows, ...(errors.rows.length ? { errors: errors.rows } : {}) }),
    params: [{ name: GROUP_SIZE_PARAM, value: initial, bind: { input: opts.control ?? "select", options: groups, labels: groupLabels, name: "group size " } }],
    vconcat: [{ hconcat: [pplVsGroup, sizeVsPpl] }, ...(errors.rows.length ? [histogramPanel] : [])],
  });

  const table = textTable(
    ["method / bits", "group", "perplexity", "size", "Pareto"],
    rows.map((r, i) => [r.series, r.group, formatNumber(r.ppl), formatBytes(points[i].sizeBytes), r.pareto === FRONT ? "*" : ""]),
  );
  return new Plot(opts.name ?? slug(title), spec, `${title}\n${table}\n(* on the size/quality Pareto front)`);
}
