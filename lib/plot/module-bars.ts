import { LoralabError } from "../errors.js";
import { formatNumber, slug, textTable } from "./format.js";
import { Plot } from "./plot.js";
import { asSpec, chartTitle, distinct, specHeader } from "./spec.js";

/** ‖ΔW‖_F / ‖W‖_F of one module after a merge. */
export interface MergeDeltaRow {
  module: string;
  relDelta: number;
}

/** Quantization error of one module: ‖W − Ŵ‖_F / ‖W‖_F and, for GPTQ/AWQ, the method's own loss. */
export interface QuantErrorRow {
  module: string;
  relError: number;
  loss?: number;
}

export interface ModuleChartOptions {
  title?: string;
  name?: string;
  /** "bars": one bar per module; "heatmap": layer × module kind. Default: heatmap above 64 modules when
   * every name has a layer index (`layers.N.`), bars otherwise. */
  layout?: "bars" | "heatmap";
  /** How many of the largest values the text/plain summary lists (default 10). */
  textTop?: number;
}

interface Measure {
  field: string;
  title: string;
}

/** `model.layers.3.self_attn.q_proj` → layer 3, kind `q_proj`, label `layers.3.self_attn.q_proj`. */
export function parseModuleName(module: string): { label: string; layer: number | null; kind: string } {
  const label = module.replace(/^(base_model\.model\.)?(model\.)?/, "");
  const layer = /(?:^|\.)(?:layers|h|blocks)\.(\d+)\./.exec(module);
  return { label, layer: layer ? Number(layer[1]) : null, kind: module.split(".").pop() ?? module };
}

function moduleChart(kind: string, rows: Record<string, unknown>[], measures: Measure[], title: string, opts: ModuleChartOptions): Plot {
  if (rows.length === 0) throw new LoralabError(`${kind}: no modules to plot`);
  const dup = rows.find((r, i) => rows.findIndex((o) => o.module === r.module) !== i);
  if (dup) throw new LoralabError(`${kind}: module ${dup.module} appears twice`);
  for (const r of rows)
    for (const m of measures)
      if (r[m.field] !== undefined && !Number.isFinite(r[m.field])) throw new LoralabError(`${kind}: module ${r.module} has a non-finite ${m.title} (${r[m.field]})`);
  const parsed = rows.map((r) => ({ ...r, ...parseModuleName(String(r.module)) }));
  const layered = parsed.every((r) => r.layer !== null);
  const layout = opts.layout ?? (layered && rows.length > 64 ? "heatmap" : "bars");
  if (layout === "heatmap" && !layered) throw new LoralabError(`${kind}: the heatmap layout needs a layer index in every module name (e.g. model.layers.0.mlp.up_proj)`);
  const kinds = distinct(parsed.map((r) => r.kind));
  const labels = parsed.map((r) => r.label);
  const panels = measures.map((m, i) => {
    const tooltip = [{ field: "module" }, { field: m.field, title: m.title, format: ".4g" }];
    if (layout === "heatmap")
      return {
        ...(measures.length > 1 ? { title: m.title } : {}),
        mark: "rect",
        width: { step: 40 },
        height: { step: 12 },
        encoding: {
          x: { field: "kind", type: "nominal", title: "module", sort: kinds, axis: { labelAngle: -40 } },
          y: { field: "layer", type: "ordinal", title: "layer" },
          color: { field: m.field, type: "quantitative", title: m.title, scale: { scheme: "viridis" } },
          tooltip,
        },
      };
    return {
      ...(measures.length > 1 ? { title: m.title } : {}),
      mark: "bar",
      width: 300,
      height: { step: 14 },
      encoding: {
        y: { field: "label", type: "nominal", title: i === 0 ? "module" : null, sort: labels, axis: i > 0 ? { labels: false, ticks: false } : { labelLimit: 320 } },
        x: { field: m.field, type: "quantitative", title: m.title },
        color: { field: "kind", type: "nominal", title: "module kind", scale: { domain: kinds } },
        tooltip,
      },
    };
  });
  const header = specHeader(title, `${measures.map((m) => m.title).join(" and ")} per module`, { modules: parsed });
  const spec = asSpec(
    panels.length === 1
      ? { ...header, data: { name: "modules" }, ...panels[0], title: chartTitle(title) }
      : { ...header, data: { name: "modules" }, hconcat: panels, resolve: { scale: { color: layout === "heatmap" ? "independent" : "shared" } } },
  );
  const top = [...rows].sort((a, b) => Number(b[measures[0].field]) - Number(a[measures[0].field])).slice(0, opts.textTop ?? 10);
  const summary = measures.map((m) => {
    const vals = rows.map((r) => r[m.field]).filter((v): v is number => typeof v === "number");
    return `${m.title}: ${vals.length} modules, mean ${formatNumber(vals.reduce((a, b) => a + b, 0) / vals.length)}, max ${formatNumber(Math.max(...vals))}`;
  });
  const table = textTable(
    ["module", ...measures.map((m) => m.title)],
    top.map((r) => [String(r.module), ...measures.map((m) => (r[m.field] === undefined ? "" : formatNumber(r[m.field] as number)))]),
  );
  const text = `${title}\n${summary.join("\n")}\n${top.length < rows.length ? `largest ${top.length}:\n` : ""}${table}`;
  return new Plot(opts.name ?? slug(title), spec, text);
}

/** Per-module bars (or a layer × module heatmap) of ‖ΔW‖/‖W‖ after a merge. */
export function mergeDeltaBars(rows: MergeDeltaRow[], opts: ModuleChartOptions = {}): Plot {
  const title = opts.title ?? "Relative weight change of the merge (‖ΔW‖ / ‖W‖)";
  return moduleChart("mergeDeltaBars", rows.map((r) => ({ ...r })), [{ field: "relDelta", title: "‖ΔW‖ / ‖W‖" }], title, opts);
}

/** Per-module relative weight error of a quantization and, where given, the method's loss (GPTQ's
 * ‖(W − Ŵ)X‖² proxy, AWQ's output error), side by side. */
export function quantErrorBars(rows: QuantErrorRow[], opts: ModuleChartOptions & { method?: string } = {}): Plot {
  const method = opts.method ? `${opts.method} ` : "";
  const title = opts.title ?? `${method}quantization error per module`;
  const measures: Measure[] = [{ field: "relError", title: "‖W − Ŵ‖ / ‖W‖" }];
  const withLoss = rows.some((r) => r.loss !== undefined);
  if (withLoss) {
    if (rows.some((r) => r.loss === undefined)) throw new LoralabError(`quantErrorBars: some modules have a loss and some do not (e.g. ${rows.find((r) => r.loss === undefined)!.module})`);
    measures.push({ field: "loss", title: `${method}loss` });
  }
  return moduleChart("quantErrorBars", rows.map((r) => ({ ...r })), measures, title, opts);
}
