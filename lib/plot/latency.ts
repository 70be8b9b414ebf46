import { LoralabError } from "../errors.js";
import { formatBytes, formatNumber, slug, textTable } from "./format.js";
import { Plot } from "./plot.js";
import { asSpec, chartTitle, specHeader } from "./spec.js";

/** What the benchmark measured for one configuration (base, base + dynamic LoRA, merged, merged + 4-bit).
 * Every measure is optional: a chart uses the configurations that have its measure. */
export interface ConfigMeasures {
  config: string;
  /** Prompt → first new token (prefill + first step), median. */
  ttftMs?: number;
  /** Decode throughput excluding the first token, median. */
  decodeTokensPerSec?: number;
  /** Latency of each decode step in generation order (one run, or the median over runs per step). */
  perTokenMs?: ArrayLike<number>;
  /** The generated token `perTokenMs[0]` belongs to (default 1; 2 when the series starts after the
   * first token, whose latency is the TTFT). */
  perTokenStart?: number;
  /** Percentiles of the per-token latency over all runs; when given, the text reports them instead of
   * the plotted series' own. */
  perTokenPercentilesMs?: { p50: number; p90: number; p99: number };
  /** Process RSS high-water mark. */
  peakRssBytes?: number;
  /** RSS growth while this configuration ran (several configurations in one process: only indicative). */
  rssGrowthBytes?: number;
  /** Bytes of the model's weights. */
  modelBytes?: number;
  /** GPU memory in use at the peak, where a GPU is used. */
  gpuMemoryBytes?: number;
}

const MIB = 1024 * 1024;
const MEMORY_COLORS: Record<string, string> = { "peak RSS": "#4c78a8", "RSS growth": "#72b7b2", "model weights": "#9ecae9", "GPU memory": "#f58518" };

function configColor(configs: string[]) {
  return { field: "config", type: "nominal" as const, title: "configuration", scale: { domain: configs }, legend: null };
}

/** A bar per configuration with the value written on it. */
function barPanel(dataset: string, field: string, title: string, configs: string[], format: string) {
  return {
    data: { name: dataset },
    title,
    width: { step: 56 },
    height: 200,
    encoding: {
      x: { field: "config", type: "nominal", title: null, sort: configs, axis: { labelAngle: -30 } },
      y: { field, type: "quantitative", title },
      color: configColor(configs),
      tooltip: [{ field: "config", title: "configuration" }, { field, title, format }],
    },
    layer: [{ mark: "bar" }, { mark: { type: "text", dy: -6, fontSize: 10 }, encoding: { text: { field, format }, color: { value: "#333" } } }],
  };
}

interface Panel {
  dataset: string;
  rows: object[];
  panel: object;
  text: string;
}

function measured(configs: ConfigMeasures[], key: keyof ConfigMeasures): ConfigMeasures[] {
  return configs.filter((c) => c[key] !== undefined);
}

function checkConfigs(kind: string, configs: ConfigMeasures[]): string[] {
  const names = configs.map((c) => c.config);
  if (new Set(names).size !== names.length) throw new LoralabError(`${kind}: configuration names must be distinct (got ${names.join(", ")})`);
  for (const c of configs)
    for (const key of ["ttftMs", "decodeTokensPerSec", "peakRssBytes", "rssGrowthBytes", "modelBytes", "gpuMemoryBytes"] as const)
      if (c[key] !== undefined && !(Number.isFinite(c[key]) && c[key]! >= 0)) throw new LoralabError(`${kind}: configuration ${c.config} has an invalid ${key} (${c[key]})`);
  for (const c of configs) {
    if (c.perTokenStart !== undefined && !(Number.isInteger(c.perTokenStart) && c.perTokenStart >= 1)) throw new LoralabError(`${kind}: configuration ${c.config} has an invalid perTokenStart (${c.perTokenStart})`);
    const bad = c.perTokenMs ? Array.prototype.findIndex.call(c.perTokenMs, (v: number) => !(Number.isFinite(v) && v >= 0)) : -1;
    if (bad >= 0) throw new LoralabError(`${kind}: configuration ${c.config} has an invalid latency for token ${bad + 1} (${c.perTokenMs![bad]})`);
  }
  return names;
}

function ttftPanel(configs: ConfigMeasures[], order: string[]): Panel {
  const rows = measured(configs, "ttftMs").map((c) => ({ config: c.config, ttftMs: c.ttftMs! }));
  const text = textTable(["configuration", "TTFT (ms)"], rows.map((r) => [r.config, formatNumber(r.ttftMs)]));
  return { dataset: "ttft", rows, panel: barPanel("ttft", "ttftMs", "TTFT (ms)", order, ".3~f"), text };
}

function decodePanel(configs: ConfigMeasures[], order: string[]): Panel {
  const rows = measured(configs, "decodeTokensPerSec").map((c) => ({ config: c.config, tokensPerSec: c.decodeTokensPerSec! }));
  const text = textTable(["configuration", "decode tokens/s"], rows.map((r) => [r.config, formatNumber(r.tokensPerSec)]));
  return { dataset: "decode", rows, panel: barPanel("decode", "tokensPerSec", "decode tokens/s", order, ".4~r"), text };
}

function memoryPanel(configs: ConfigMeasures[], order: string[]): Panel {
  const kinds = [
    ["peakRssBytes", "peak RSS"],
    ["rssGrowthBytes", "RSS growth"],
    ["modelBytes", "model weights"],
    ["gpuMemoryBytes", "GPU memory"],
  ] as const;
  const rows = configs.flatMap((c) => kinds.filter(([k]) => c[k] !== undefined).map(([k, label]) => ({ config: c.config, memory: label, mib: c[k]! / MIB })));
  const present = kinds.map(([, label]) => label).filter((label) => rows.some((r) => r.memory === label));
  const panel = {
    data: { name: "memory" },
    title: "memory (MiB)",
    width: { step: 24 }, // per bar: with xOffset the step sizes the offset band
    height: 200,
    mark: "bar",
    encoding: {
      x: { field: "config", type: "nominal", title: null, sort: order, axis: { labelAngle: -30 } },
      xOffset: { field: "memory", type: "nominal", sort: present },
      y: { field: "mib", type: "quantitative", title: "MiB" },
      color: { field: "memory", type: "nominal", title: "memory", scale: { domain: present, range: present.map((label) => MEMORY_COLORS[label]) } },
      tooltip: [{ field: "config", title: "configuration" }, { field: "memory" }, { field: "mib", title: "MiB", format: ".4~r" }],
    },
  };
  const text = textTable(
    ["configuration", ...present],
    configs.filter((c) => kinds.some(([k]) => c[k] !== undefined)).map((c) => [c.config, ...kinds.filter(([, l]) => present.includes(l)).map(([k]) => (c[k] === undefined ? "" : formatBytes(c[k]!)))]),
  );
  return { dataset: "memory", rows, panel, text };
}

function tokensPanel(configs: ConfigMeasures[], order: string[]): Panel {
  const rows: { config: string; token: number; ms: number }[] = [];
  const lines: string[][] = [];
  for (const c of measured(configs, "perTokenMs")) {
    const ms = Array.from(c.perTokenMs!);
    const start = c.perTokenStart ?? 1;
    ms.forEach((v, i) => rows.push({ config: c.config, token: start + i, ms: v }));
    const sorted = [...ms].sort((a, b) => a - b);
    const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
    const p = c.perTokenPercentilesMs ?? { p50: q(0.5), p90: q(0.9), p99: q(0.99) };
    lines.push([c.config, String(ms.length), formatNumber(p.p50), formatNumber(p.p90), formatNumber(p.p99)]);
  }
  const panel = {
    data: { name: "tokens" },
    title: "per-token latency over the generation",
    width: 480,
    height: 200,
    mark: { type: "line", strokeWidth: 1.5 },
    encoding: {
      x: { field: "token", type: "quantitative", title: "generated token", axis: { tickMinStep: 1, format: "d" } },
      y: { field: "ms", type: "quantitative", title: "latency (ms)" },
      color: { field: "config", type: "nominal", title: "configuration", scale: { domain: order } },
      tooltip: [{ field: "config", title: "configuration" }, { field: "token" }, { field: "ms", format: ".3~f" }],
    },
  };
  return { dataset: "tokens", rows, panel, text: textTable(["configuration", "tokens", "p50 ms", "p90 ms", "p99 ms"], lines) };
}

function single(kind: string, title: string, p: Panel, configs: ConfigMeasures[], name?: string): Plot {
  if (p.rows.length === 0) throw new LoralabError(`${kind}: no configuration has this measure (configurations: ${configs.map((c) => c.config).join(", ") || "none"})`);
  const spec = asSpec({ ...specHeader(title, `${title} of ${configs.map((c) => c.config).join(", ")}`, { [p.dataset]: p.rows }), ...p.panel, title: chartTitle(title) });
  return new Plot(name ?? slug(title), spec, `${title}\n${p.text}`);
}

export function ttftBars(configs: ConfigMeasures[], opts: { title?: string; name?: string } = {}): Plot {
  const order = checkConfigs("ttftBars", configs);
  return single("ttftBars", opts.title ?? "Time to first token (ms)", ttftPanel(configs, order), configs, opts.name);
}

export function decodeThroughputBars(configs: ConfigMeasures[], opts: { title?: string; name?: string } = {}): Plot {
  const order = checkConfigs("decodeThroughputBars", configs);
  return single("decodeThroughputBars", opts.title ?? "Decode throughput (tokens/s)", decodePanel(configs, order), configs, opts.name);
}

export function memoryBars(configs: ConfigMeasures[], opts: { title?: string; name?: string } = {}): Plot {
  const order = checkConfigs("memoryBars", configs);
  return single("memoryBars", opts.title ?? "Memory (MiB)", memoryPanel(configs, order), configs, opts.name);
}

export function perTokenLatencyChart(configs: ConfigMeasures[], opts: { title?: string; name?: string } = {}): Plot {
  const order = checkConfigs("perTokenLatencyChart", configs);
  return single("perTokenLatencyChart", opts.title ?? "Per-token latency (ms)", tokensPanel(configs, order), configs, opts.name);
}

/** TTFT, decode throughput and memory bars side by side above the per-token latency lines, for the
 * configurations that have each measure. */
export function latencyDashboard(configs: ConfigMeasures[], opts: { title?: string; name?: string } = {}): Plot {
  const order = checkConfigs("latencyDashboard", configs);
  const title = opts.title ?? "Latency and memory by configuration";
  const top = [ttftPanel(configs, order), decodePanel(configs, order), memoryPanel(configs, order)].filter((p) => p.rows.length > 0);
  const tokens = tokensPanel(configs, order);
  const all = tokens.rows.length > 0 ? [...top, tokens] : top;
  if (all.length === 0) throw new LoralabError(`latencyDashboard: the configurations carry no measures (${order.join(", ") || "none"})`);
  const datasets = Object.fromEntries(all.map((p) => [p.dataset, p.rows]));
  const rowsOfCharts = [...(top.length ? [{ hconcat: top.map((p) => p.panel), resolve: { scale: { color: "independent" } } }] : []), ...(tokens.rows.length ? [tokens.panel] : [])];
  const spec = asSpec({
    ...specHeader(title, `TTFT, decode throughput, memory and per-token latency of ${order.join(", ")}`, datasets),
    vconcat: rowsOfCharts,
    resolve: { scale: { color: "independent" } },
  });
  return new Plot(opts.name ?? slug(title), spec, [title, ...all.map((p) => p.text)].join("\n\n"));
}
