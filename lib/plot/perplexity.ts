import { LoralabError } from "../errors.js";
import { formatNumber, slug, textTable } from "./format.js";
import { Plot } from "./plot.js";
import { asSpec, distinct, specHeader } from "./spec.js";

/** One perplexity measurement: a configuration ("merged"), or a quantization ("GPTQ 4-bit g128"). */
export interface PerplexityRow {
  label: string;
  ppl: number;
  method?: string;
  bits?: number;
  groupSize?: number;
}

export interface PerplexityBarsOptions {
  title?: string;
  name?: string;
  /** The reference the others are compared with: a row's label, or a perplexity value. Drawn as a dashed
   * rule; the text lists each row's change against it. */
  baseline?: string | number;
  /** Start the axis at zero (default true). With false the axis spans the data, which shows small
   * differences but exaggerates them. */
  fromZero?: boolean;
}

/** Bars of perplexity per configuration / method / bits, in the given order, colored by method. */
export function perplexityBars(rows: PerplexityRow[], opts: PerplexityBarsOptions = {}): Plot {
  if (rows.length === 0) throw new LoralabError("perplexityBars: no perplexities to plot");
  const labels = rows.map((r) => r.label);
  if (new Set(labels).size !== labels.length) throw new LoralabError(`perplexityBars: labels must be distinct (got ${labels.join(", ")})`);
  const bad = rows.find((r) => !(Number.isFinite(r.ppl) && r.ppl > 0));
  if (bad) throw new LoralabError(`perplexityBars: ${bad.label} has an invalid perplexity (${bad.ppl})`);
  let baseline: number | undefined;
  if (typeof opts.baseline === "number") baseline = opts.baseline;
  else if (opts.baseline !== undefined) {
    baseline = rows.find((r) => r.label === opts.baseline)?.ppl;
    if (baseline === undefined) throw new LoralabError(`perplexityBars: baseline '${opts.baseline}' is not one of the labels (${labels.join(", ")})`);
  }
  const title = opts.title ?? "Perplexity (lower is better)";
  const colorField = rows.some((r) => r.method !== undefined) ? "method" : "label";
  const data = rows.map((r) => ({ ...r, method: r.method ?? "—", change: baseline === undefined ? null : r.ppl / baseline - 1 }));
  const bars = {
    data: { name: "ppl" },
    encoding: {
      x: { field: "label", type: "nominal", title: null, sort: labels, axis: { labelAngle: -30, labelLimit: 200 } },
      y: { field: "ppl", type: "quantitative", title: "perplexity", scale: { zero: opts.fromZero ?? true } },
      color: { field: colorField, type: "nominal", title: colorField, scale: { domain: distinct(data.map((r) => r[colorField])) } },
      tooltip: [{ field: "label" }, { field: "ppl", format: ".5~r" }, ...(baseline === undefined ? [] : [{ field: "change", title: "vs baseline", format: "+.2%" }])],
    },
    layer: [{ mark: "bar" }, { mark: { type: "text", dy: -6, fontSize: 10 }, encoding: { text: { field: "ppl", format: ".4~r" }, color: { value: "#333" } } }],
  };
  // the rule sits beside the bars' layer group so it does not inherit their x/color encodings
  const rule = { data: { name: "baseline" }, mark: { type: "rule", strokeDash: [4, 3], color: "#333" }, encoding: { y: { field: "baseline", type: "quantitative" } } };
  const spec = asSpec({
    ...specHeader(title, `Perplexity of ${labels.join(", ")}`, { ppl: data, ...(baseline === undefined ? {} : { baseline: [{ baseline }] }) }),
    width: { step: 48 },
    height: 240,
    layer: baseline === undefined ? [bars] : [bars, rule],
  });
  const header = ["label", "perplexity", ...(baseline === undefined ? [] : ["vs baseline"])];
  const text = textTable(header, data.map((r) => [r.label, formatNumber(r.ppl), ...(r.change === null ? [] : [`${r.change >= 0 ? "+" : ""}${formatNumber(100 * r.change, 3)}%`])]));
  return new Plot(opts.name ?? slug(title), spec, `${title}\n${text}`);
}

/** One perplexity window: the NLL sum (natural log) over the tokens it scored. */
export interface PerplexityWindow {
  nllSum: number;
  tokens: number;
  /** First stream token of the window (for the tooltip). */
  begin?: number;
}

/** Perplexity of each window (exp of its mean NLL) as bars, with the overall perplexity (exp of the mean
 * NLL over all scored tokens) as a dashed rule: shows whether a few windows dominate the figure. */
export function windowPerplexityChart(windows: PerplexityWindow[], opts: { title?: string; name?: string } = {}): Plot {
  if (windows.length === 0) throw new LoralabError("windowPerplexityChart: no windows");
  windows.forEach((w, i) => {
    if (!(Number.isInteger(w.tokens) && w.tokens > 0)) throw new LoralabError(`windowPerplexityChart: window ${i + 1} scored ${w.tokens} tokens`);
    if (!(Number.isFinite(w.nllSum) && w.nllSum >= 0)) throw new LoralabError(`windowPerplexityChart: window ${i + 1} has an invalid NLL sum (${w.nllSum})`);
  });
  const title = opts.title ?? "Perplexity per window";
  const total = windows.reduce((a, w) => a + w.tokens, 0);
  const overall = Math.exp(windows.reduce((a, w) => a + w.nllSum, 0) / total);
  const rows = windows.map((w, i) => ({ window: i + 1, begin: w.begin ?? null, tokens: w.tokens, ppl: Math.exp(w.nllSum / w.tokens) }));
  const spec = asSpec({
    ...specHeader(title, `Perplexity of ${windows.length} windows, ${total} scored tokens`, { windows: rows, overall: [{ ppl: overall }] }),
    width: Math.min(640, Math.max(200, 14 * windows.length)),
    height: 220,
    layer: [
      {
        data: { name: "windows" },
        mark: "bar",
        encoding: {
          x: { field: "window", type: "ordinal", title: "window", axis: { labelAngle: 0, labelOverlap: true } },
          y: { field: "ppl", type: "quantitative", title: "perplexity" },
          tooltip: [{ field: "window" }, { field: "begin", title: "first token" }, { field: "tokens", title: "scored tokens" }, { field: "ppl", format: ".5~r" }],
        },
      },
      { data: { name: "overall" }, mark: { type: "rule", strokeDash: [4, 3], color: "#333" }, encoding: { y: { field: "ppl", type: "quantitative" } } },
    ],
  });
  const ppls = rows.map((r) => r.ppl);
  const text = `${title}\n${textTable(["windows", "scored tokens", "perplexity", "min window", "max window"], [[String(windows.length), String(total), formatNumber(overall), formatNumber(Math.min(...ppls)), formatNumber(Math.max(...ppls))]])}`;
  return new Plot(opts.name ?? slug(title), spec, text);
}
