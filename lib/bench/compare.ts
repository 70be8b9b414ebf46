import { LoralabError, throwIfAborted } from "../errors.js";
import type { LoadOptions } from "../model/causal-lm.js";
import { type ModelSpec, loadModel } from "../model/load.js";
import { type BenchResult, benchLoaded, rssBytes } from "./benchmark.js";
import { type PerplexityResult, perplexity } from "./perplexity.js";
import { formatBytes } from "../plot/format.js";
import { type HtmlFragment, htmlTable } from "../plot/html.js";
import { type Displayable, withDisplay } from "./stats.js";

export interface CompareOptions extends LoadOptions {
  base?: string;
  adapter?: string;
  merged?: string;
  quantized?: string;
  prompt: string;
  /** text for perplexity (optional) */
  text?: string;
  maxNewTokens?: number;
  repeats?: number;
  warmup?: number;
  ctx?: number;
  stride?: number;
  maxTokens?: number;
}

export interface CompareRow {
  config: string;
  bench: BenchResult;
  perplexity?: Omit<PerplexityResult, "windowNll" | "windowTokens">;
}

export interface CompareResult {
  prompt: string;
  settings: { maxNewTokens: number; repeats: number; warmup: number; device: string; threads: number | null; ctx?: number; stride?: number; maxTokens?: number };
  rows: CompareRow[];
}

/** The four configurations (each optional) measured one after another in this process, same settings. */
export async function compare(opts: CompareOptions): Promise<CompareResult & Displayable> {
  const configs: [string, ModelSpec][] = [];
  if (opts.base) configs.push(["base", { model: opts.base }]);
  if (opts.base && opts.adapter) configs.push(["base + dynamic LoRA", { model: opts.base, adapter: opts.adapter }]);
  if (opts.merged) configs.push(["merged", { model: opts.merged }]);
  if (opts.quantized) configs.push(["merged + quantized", { model: opts.quantized }]);
  if (opts.adapter && !opts.base) throw new LoralabError("--adapter needs --base");
  if (configs.length === 0) throw new LoralabError("nothing to compare: give --base and/or --merged / --quantized");
  if (opts.text !== undefined && opts.text.trim() === "") throw new LoralabError("the perplexity text is empty");
  const rows: CompareRow[] = [];
  for (const [config, spec] of configs) {
    throwIfAborted(opts.signal);
    const before = rssBytes();
    const loaded = await loadModel(spec, opts);
    try {
      const bench = await benchLoaded(loaded, config, opts, before);
      let ppl: PerplexityResult | undefined;
      if (opts.text !== undefined) {
        const stream = loaded.tokenizer.encode(opts.text, { bos: false });
        ppl = await perplexity(loaded.lm, stream, { ctx: opts.ctx, stride: opts.stride, maxTokens: opts.maxTokens, bos: loaded.tokenizer.bosId, signal: opts.signal, onProgress: opts.onProgress });
      }
      const { windowNll: _, windowTokens: __, ...pplSummary } = ppl ?? { windowNll: [], windowTokens: [] };
      rows.push({ config, bench, perplexity: ppl ? (pplSummary as CompareRow["perplexity"]) : undefined });
    } finally {
      await loaded.lm.release();
    }
  }
  const result: CompareResult = {
    prompt: opts.prompt,
    settings: { maxNewTokens: opts.maxNewTokens ?? 32, repeats: opts.repeats ?? 5, warmup: opts.warmup ?? 1, device: opts.device ?? "cpu", threads: opts.threads ?? null, ctx: rows[0]?.perplexity?.ctx, stride: rows[0]?.perplexity?.stride, maxTokens: opts.maxTokens },
    rows,
  };
  // the seed's table + latency dashboard + perplexity bars; the plotting code loads only when displayed
  return withDisplay(result, (r) => import("./display.js").then((m) => m.compareBundle(r)));
}

export const COMPARE_COLUMNS = ["config", "memory", "TTFT", "tok/s", "perplexity"];

/** The seed's table, as text cells in COMPARE_COLUMNS order. */
export function compareRows(r: CompareResult): string[][] {
  return r.rows.map((row) => [
    row.config,
    // weights as run; RSS growth in a shared process is only indicative (the allocator reuses freed pages,
    // and a GC while the model runs can make it negative: shown as none)
    `${formatBytes(row.bench.modelBytes)} (RSS +${formatBytes(Math.max(0, row.bench.memoryBytes))})`,
    `${row.bench.ttftMs.median.toFixed(1)} ms`,
    `${row.bench.decodeTokPerS.median.toFixed(1)}`,
    row.perplexity ? `${row.perplexity.ppl.toFixed(4)} ± ${row.perplexity.pplStderr.toFixed(4)}` : "–",
  ]);
}

/** The table as HTML and text (`caption` above it). */
export function compareTables(r: CompareResult, caption?: string): HtmlFragment {
  return htmlTable(compareRows(r).map((cells) => Object.fromEntries(COMPARE_COLUMNS.map((c, i) => [c, cells[i]]))), {
    caption, columns: COMPARE_COLUMNS.map((key, i) => ({ key, align: i === 0 ? "left" : "right" })),
  });
}
