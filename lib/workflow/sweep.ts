import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { perplexity } from "../bench/perplexity.js";
import { LoralabError, throwIfAborted } from "../errors.js";
import { ModelDir } from "../io/model-dir.js";
import { loadModel } from "../model/load.js";
import { TextTokenizer } from "../model/tokenizer.js";
import { lazyDisplay } from "../plot/display-cache.js";
import { Plot, escapeHtml, groupSizeSweepChart, htmlTable, resultBundle, textTable, trustedHtml, type SweepPoint } from "../plot/index.js";
import type { Method } from "../quant/formats.js";
import { quantizeModel } from "../quant/pipeline.js";
import type { LongTaskOptions } from "../progress.js";

export interface SweepOptions extends LongTaskOptions {
  method: Method;
  bits?: number[];
  groupSizes: number[];
  /** evaluation text (perplexity) */
  text: string;
  /** calibration text for GPTQ/AWQ (a file path) */
  calib?: string;
  /** stream tokens scored at most (keeps a sweep short) */
  maxTokens?: number;
  calibSamples?: number;
  seqLen?: number;
  /** cache shared between calls: a second sweep over the same combinations re-runs nothing */
  cache?: Map<string, SweepPoint & { relError: number; seconds: number }>;
}

export interface SkippedGroupSize { groupSize: number; reason: string }

const LINEAR = /\.(self_attn|mlp)\.\w+_proj\.weight$/;

/** One combination's key in the cache. */
export const sweepKey = (model: string, method: string, bits: number, groupSize: number, text: string) => `${model}|${method}|${bits}|${groupSize}|${text.length}`;

/** Why a group size cannot be used on this model (some linear's in_features is not a multiple), or null. */
function groupMisfit(model: ModelDir, groupSize: number): string | null {
  if (groupSize === -1) return null;
  if (!(Number.isInteger(groupSize) && groupSize > 0)) return `group size ${groupSize} is not a positive integer (or -1 for per-channel)`;
  for (const name of model.names()) {
    if (!LINEAR.test(name)) continue;
    const K = model.entry(name).shape[1];
    if (K % groupSize !== 0) return `${name.replace(/\.weight$/, "")} has in_features ${K}, not a multiple of ${groupSize}`;
  }
  return null;
}

/** Bytes of the model as a packed artifact: b-bit codes plus an f16 scale and a b-bit zero per group, the rest as stored. */
function packedBytes(base: ModelDir, modules: { module: string; shape: [number, number]; groupSize: number }[], bits: number): number {
  let total = base.names().reduce((s, n) => s + base.entry(n).byteLength, 0);
  for (const m of modules) {
    const [N, K] = m.shape;
    const groups = m.groupSize > 0 ? Math.ceil(K / m.groupSize) : 1;
    total += Math.ceil((N * K * bits) / 8) + N * groups * (2 + bits / 8) - base.entry(`${m.module}.weight`).byteLength;
  }
  return Math.round(total);
}

export class SweepResult {
  constructor(
    readonly model: string,
    readonly method: string,
    readonly points: (SweepPoint & { relError: number; seconds: number })[],
    readonly skipped: SkippedGroupSize[],
    readonly basePpl: number,
    readonly chart: Plot,
  ) {}

  rows() {
    return this.points.map((p) => ({ method: p.method, bits: p.bits, group_size: p.groupSize, ppl: p.ppl, "Δppl vs float": p.ppl - this.basePpl, size_bytes: p.sizeBytes, rel_error: p.relError, seconds: p.seconds }));
  }

  private table(): string {
    const rows = this.rows();
    const header = Object.keys(rows[0] ?? {});
    return textTable(header, rows.map((r) => header.map((h) => { const v = (r as Record<string, number | string>)[h]; return typeof v === "number" ? String(Number(v.toPrecision(5))) : v; })));
  }

  toString(): string {
    const skipped = this.skipped.map((s) => `skipped group size ${s.groupSize}: ${s.reason}`).join("\n");
    // the model's folder name only: outputs (committed notebooks) carry no machine paths
    return `sweep ${this.method} on ${basename(this.model)} (float ppl ${this.basePpl.toFixed(4)})\n${this.table()}${skipped ? "\n" + skipped : ""}`;
  }

  /** The table, the skipped group sizes and the chart (inline SVG) in text/html, the chart's Vega-Lite spec
   * beside it. JupyterLab shows text/html first, so the interactive chart (its group-size select) appears
   * when `result.chart` is displayed on its own. */
  [Symbol.for("Jupyter.display")]() {
    const table = htmlTable(this.rows(), { caption: `${this.method} sweep, float perplexity ${this.basePpl.toFixed(4)}` });
    const notes = this.skipped.map((s) => trustedHtml(`<p>${escapeHtml(`Skipped group size ${s.groupSize}: ${s.reason}.`)}</p>`));
    return lazyDisplay(this, () => resultBundle({ table, notes, plots: [this.chart], text: this.toString(), name: "sweep" }));
  }
}

/**
 * Quantizes `model` with each bits × group size (dequantized float copies in a temp dir) and measures
 * perplexity on `text`; each point also carries W − Ŵ of all decoder linears for the linked histogram.
 */
export async function sweep(model: string, opts: SweepOptions): Promise<SweepResult> {
  const bits = opts.bits ?? [3, 4];
  const cache = opts.cache ?? new Map();
  const base = await ModelDir.open(model);
  try {
  const skipped: SkippedGroupSize[] = [];
  const groups: number[] = [];
  for (const g of opts.groupSizes) {
    const why = groupMisfit(base, g);
    if (why) skipped.push({ groupSize: g, reason: why });
    else groups.push(g);
  }
  if (groups.length === 0) throw new LoralabError(`${model}: none of the group sizes ${opts.groupSizes.join(", ")} fits (${skipped.map((s) => s.reason).join("; ")})`);
  const linears = base.names().filter((n) => LINEAR.test(n));
  const tok = await TextTokenizer.load(model);
  const stream = tok.encode(opts.text, { bos: false });
  const ppl = async (dir: string) => {
    const { lm } = await loadModel({ model: dir });
    try {
      return (await perplexity(lm, stream, { maxTokens: opts.maxTokens, bos: tok.bosId, signal: opts.signal })).ppl;
    } finally {
      await lm.release();
    }
  };
  const basePpl = await ppl(model);
  const combos = bits.flatMap((b) => groups.map((g) => [b, g] as const));
  const points: SweepResult["points"] = [];
  const tmp = await mkdtemp(join(tmpdir(), "loralab-sweep-"));
  try {
    for (const [i, [b, g]] of combos.entries()) {
      throwIfAborted(opts.signal);
      const key = sweepKey(model, opts.method, b, g, opts.text);
      let point = cache.get(key);
      if (!point) {
        const t0 = performance.now();
        const out = join(tmp, `${opts.method}-${b}-${g}`);
        const report = await quantizeModel({ model, out, method: opts.method, format: "dequantized", bits: b, groupSize: g, calib: opts.calib, calibSamples: opts.calibSamples ?? 16, seqLen: opts.seqLen ?? 128, signal: opts.signal });
        const deq = await ModelDir.open(out);
        const parts: Float32Array[] = [];
        try {
        for (const n of linears) {
          const w = (await base.read(n)).toF32(), wq = (await deq.read(n)).toF32();
          const e = new Float32Array(w.length);
          for (let j = 0; j < w.length; j++) e[j] = w[j] - wq[j];
          parts.push(e);
        }
        } finally {
          await deq.close();
        }
        const error = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
        parts.reduce((off, p) => (error.set(p, off), off + p.length), 0);
        const relError = Math.sqrt(report.modules.reduce((s, m) => s + m.relError ** 2, 0) / Math.max(1, report.modules.length));
        point = { method: opts.method, bits: b, groupSize: g, ppl: await ppl(out), sizeBytes: packedBytes(base, report.modules, b), error, relError, seconds: (performance.now() - t0) / 1000 };
        cache.set(key, point);
        await rm(out, { recursive: true, force: true });
      }
      points.push(point);
      opts.onProgress?.({ phase: "sweep", done: i + 1, total: combos.length, unit: "combinations", label: `${opts.method} ${b}-bit g${g}` });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const chart = await groupSizeSweepChart(points, { title: `${opts.method}: perplexity and size by group size` }).render();
  return new SweepResult(model, opts.method, points, skipped, basePpl, chart);
  } finally {
    await base.close();
  }
}
