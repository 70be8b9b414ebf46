/** The notebook display of a result object (merge, quantization, perplexity, bench, compare): its table and
 * its plots in one MIME bundle. */
import { LoralabError } from "../errors.js";
import type { ResultBundle } from "./display-cache.js";
import { slug } from "./format.js";
import type { HtmlFragment } from "./html.js";
import { Plot, VEGALITE_MIME } from "./plot.js";
import { composeHtml } from "./report.js";
import { asSpec, chartTitle } from "./spec.js";

export type { ResultBundle } from "./display-cache.js";

/** Replaces every `data: { name }` reference (views, lookups) with its renamed dataset. */
function renameData(node: unknown, rename: (name: string) => string): unknown {
  if (Array.isArray(node)) return node.map((n) => renameData(n, rename));
  if (node === null || typeof node !== "object") return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    const named = k === "data" && v !== null && typeof v === "object" && typeof (v as { name?: unknown }).name === "string";
    out[k] = named ? { ...(v as object), name: rename((v as { name: string }).name) } : renameData(v, rename);
  }
  return out;
}

/** Stacks plots into one Vega-Lite spec (a vconcat; each plot keeps its title, its datasets are renamed
 * `p1_…`, `p2_…` so they cannot clash), e.g. because one Jupyter output carries only one Vega-Lite spec.
 * One plot without a new title is returned as it is. Plots with parameters (the group-size sweep's
 * select) are refused: their bindings belong to a top-level spec of their own. */
export function concatPlots(plots: Plot[], opts: { name?: string; title?: string } = {}): Plot {
  if (plots.length === 0) throw new LoralabError("concatPlots: no plots");
  if (plots.length === 1 && opts.title === undefined && opts.name === undefined) return plots[0];
  const datasets: Record<string, unknown[]> = {};
  const views = plots.map((plot, i) => {
    const { $schema: _schema, config: _config, description: _description, datasets: own = {}, params, ...view } = plot.spec as unknown as Record<string, unknown>;
    if (params !== undefined) throw new LoralabError(`concatPlots: plot ${plot.name} has parameters (interactive controls); display it on its own`);
    const rename = (name: string) => `p${i + 1}_${name}`;
    for (const [name, rows] of Object.entries(own as Record<string, unknown[]>)) datasets[rename(name)] = rows;
    return renameData(view, rename);
  });
  const first = plots[0].spec as { config?: object };
  const spec = asSpec({
    $schema: (plots[0].spec as { $schema?: string }).$schema,
    ...(opts.title === undefined ? {} : { title: chartTitle(opts.title) }),
    description: plots.map((p) => p.title).join("; "),
    datasets,
    ...(first.config ? { config: first.config } : {}),
    vconcat: views,
    // each plot keeps its own colors and legends (configurations, module kinds, methods)
    resolve: { scale: { color: "independent" } },
  });
  const text = [...(opts.title === undefined ? [] : [opts.title]), ...plots.map((p) => p.text)].join("\n\n");
  return new Plot(opts.name ?? slug(opts.title ?? plots.map((p) => p.name).join("-")), spec, text);
}

export interface ResultDisplay {
  /** The result's table (from `htmlTable`). */
  table: HtmlFragment;
  /** Further HTML after the table (notes, skipped modules), before the plots. */
  notes?: HtmlFragment[];
  plots: Plot[];
  /** text/plain: what a terminal shows. */
  text: string;
  /** File-name-safe name of the stacked plot. */
  name?: string;
}

/** Renders the plots (stacked into one spec and one SVG) and builds the result's MIME bundle: text/html =
 * the table, the notes and the stacked SVG inline (no captions: the table gives the numbers). */
export async function resultBundle(r: ResultDisplay): Promise<ResultBundle> {
  if (r.plots.length === 0) return { "text/plain": r.text, "text/html": (await composeHtml([r.table, ...(r.notes ?? [])])).html };
  const chart = concatPlots(r.plots, r.plots.length > 1 ? { name: r.name } : {});
  const svg = await chart.svg();
  const html = (await composeHtml([r.table, ...(r.notes ?? []), chart], { captions: false })).html;
  return { "text/plain": r.text, "text/html": html, [VEGALITE_MIME]: chart.spec, "image/svg+xml": svg };
}
