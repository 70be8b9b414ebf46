import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Ajv, type ValidateFunction } from "ajv";
import * as vega from "vega";
import * as vl from "vega-lite";
import { LoralabError } from "../lib/errors.js";
import { histogram } from "../lib/tensor/stats.js";
import {
  GROUP_SIZE_PARAM,
  composeHtml,
  JUPYTER_DISPLAY,
  Plot,
  VEGALITE_MIME,
  decodeThroughputBars,
  escapeHtml,
  groupSizeSweepChart,
  htmlTable,
  latencyDashboard,
  loraDeltaHistogram,
  memoryBars,
  mergeDeltaBars,
  paretoFront,
  perTokenLatencyChart,
  perplexityBars,
  pngRasterizer,
  quantErrorBars,
  quantErrorHistogram,
  renderSvg,
  reportHtml,
  ttftBars,
  weightHistogram,
  writeReport,
  type BinRow,
  type ConfigMeasures,
  type SweepPoint,
} from "../lib/plot/index.js";
import { ModelDir } from "../lib/io/model-dir.js";
import { SafetensorsFile } from "../lib/io/safetensors.js";
import { REPO_ROOT, data, tempDir } from "./helpers/paths.js";

// ---------- independent helpers ----------

/** Seeded normal-ish values (Box–Muller over a 32-bit xorshift), deterministic across runs. */
function gaussian(n: number, sigma: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return (s + 0.5) / 2 ** 32;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = sigma * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

/** Histogram by edge comparison in float64 (a different formulation from lib/tensor/stats). */
function referenceCounts(values: ArrayLike<number>, lo: number, hi: number, bins: number): { edges: number[]; counts: number[] } {
  const edges = Array.from({ length: bins + 1 }, (_, b) => lo + ((hi - lo) * b) / bins);
  const counts = new Array<number>(bins).fill(0);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    let b = 0;
    while (b < bins - 1 && v >= edges[b + 1]) b++;
    counts[b]++;
  }
  return { edges, counts };
}

/** The SVG elements of one mark type's containers (`<g class="mark-rect role-mark ...">`), by aria-label. */
function markLabels(svg: string, type: "rect" | "line" | "symbol" | "text" | "rule"): string[] {
  const labels: string[] = [];
  for (const m of svg.matchAll(new RegExp(`<g class="mark-${type} role-mark[^"]*"[^>]*>(.*?)</g>`, "gs")))
    for (const el of m[1].matchAll(/<(?:path|text|line)\b[^>]*role="graphics-symbol"[^>]*>/g)) labels.push(/aria-label="([^"]*)"/.exec(el[0])?.[1] ?? "");
  return labels;
}

const unescapeXml = (s: string) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&");

function axisTitles(svg: string): string[] {
  return [...svg.matchAll(/aria-label="[XY]-axis titled '([^']*)'/g)].map((m) => unescapeXml(m[1]));
}

function chartTitles(svg: string): string[] {
  return [...svg.matchAll(/aria-label="Title text '([^']*)'/g)].map((m) => unescapeXml(m[1]));
}

function dataset<T>(plot: Plot, name: string): T[] {
  const rows = (plot.spec as { datasets?: Record<string, T[]> }).datasets?.[name];
  assert.ok(rows, `dataset ${name} in ${plot.name}`);
  return rows;
}

function assertSelfContained(svg: string): void {
  assert.ok(svg.startsWith("<svg"), "an SVG document");
  const urls = [...svg.matchAll(/https?:\/\/[^\s"')]+/g)].map((m) => m[0]).filter((u) => !u.startsWith("http://www.w3.org/"));
  assert.deepEqual(urls, [], "no external URLs");
  assert.ok(!/<image\b|@import|@font-face|<script/i.test(svg), "no images, font imports or scripts");
}

let validate: ValidateFunction;
function assertValidSpec(plot: Plot): void {
  const ok = validate(plot.spec);
  assert.ok(ok, `${plot.name}: ${JSON.stringify(validate.errors?.slice(0, 3))}`);
}

// ---------- fixtures ----------

const CONFIGS: ConfigMeasures[] = [
  { config: "base", ttftMs: 12.5, decodeTokensPerSec: 410, peakRssBytes: 180 * 2 ** 20, modelBytes: 2 ** 20, perTokenMs: [2.4, 2.5, 2.45, 2.6, 2.5] },
  { config: "base + dynamic LoRA", ttftMs: 15.25, decodeTokensPerSec: 350, peakRssBytes: 185 * 2 ** 20, modelBytes: 1.1 * 2 ** 20, perTokenMs: [2.9, 2.8, 2.85, 2.95, 3.0] },
  { config: "merged", ttftMs: 12.25, decodeTokensPerSec: 415, peakRssBytes: 180 * 2 ** 20, modelBytes: 2 ** 20, perTokenMs: [2.4, 2.45, 2.4, 2.5, 2.45] },
  { config: "merged + 4-bit", ttftMs: 14, decodeTokensPerSec: 380, peakRssBytes: 150 * 2 ** 20, modelBytes: 0.3 * 2 ** 20, perTokenMs: [2.6, 2.65, 2.7, 2.6, 2.7] },
];

const KINDS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
function modules(layers: number) {
  const rows: { module: string; relDelta: number; relError: number; loss: number }[] = [];
  for (let l = 0; l < layers; l++)
    KINDS.forEach((k, i) => rows.push({ module: `model.layers.${l}.${i < 4 ? "self_attn" : "mlp"}.${k}`, relDelta: 0.01 * (1 + l) + 0.001 * i, relError: 0.05 + 0.002 * i, loss: 1 + l + i / 10 }));
  return rows;
}

const GROUPS = [32, 64, 128, -1];
function sweepPoints(withErrors = true): SweepPoint[] {
  const points: SweepPoint[] = [];
  let seed = 11;
  for (const method of ["GPTQ", "RTN"])
    for (const bits of [3, 4])
      for (const g of GROUPS) {
        const q = (bits === 3 ? 2 : 1) * (method === "RTN" ? 1.3 : 1) * (g > 0 ? Math.log2(g) / 7 : 1.4);
        points.push({
          method, bits, groupSize: g,
          ppl: 5.5 + q * (bits === 3 ? 1 : 0.3),
          sizeBytes: (bits / 8 + (g > 0 ? 2 / g : 0)) * 1e8,
          ...(withErrors ? { error: gaussian(2000, 0.01 * q, seed++) } : {}),
        });
      }
  return points;
}

// ---------- tests ----------

describe("plots (lib/plot)", function () {
  before(function () {
    const schema = JSON.parse(readFileSync(join(REPO_ROOT, "node_modules/vega-lite/build/vega-lite-schema.json"), "utf8"));
    validate = new Ajv({ allErrors: true, strict: false, validateFormats: false }).compile(schema);
  });

  describe("Vega-Lite 5 schema", function () {
    it("the validator rejects an invalid spec (negative control)", function () {
      assert.equal(validate({ mark: "bar", encoding: { x: { field: "a", type: "nominalish" } } }), false);
      assert.equal(validate({ mark: "bar", encoding: { x: { field: "a", type: "nominal" } }, data: { values: [] } }), true);
    });

    it("every plot's spec validates", function () {
      const w = gaussian(5000, 0.02, 1);
      const plots = [
        weightHistogram({ name: "base", values: w }),
        weightHistogram([{ name: "base", values: w }, { name: "merged", values: w.map((v) => v * 1.01) }], { logCount: true }),
        loraDeltaHistogram(gaussian(1000, 1e-3, 2), { module: "q_proj" }),
        quantErrorHistogram([{ name: "RTN", values: gaussian(1000, 1e-3, 3) }, { name: "GPTQ", values: gaussian(1000, 8e-4, 4) }]),
        mergeDeltaBars(modules(2)),
        mergeDeltaBars(modules(12)),
        quantErrorBars(modules(2), { method: "GPTQ" }),
        quantErrorBars(modules(12).map(({ module, relError }) => ({ module, relError })), { layout: "heatmap" }),
        ttftBars(CONFIGS), decodeThroughputBars(CONFIGS), memoryBars(CONFIGS), perTokenLatencyChart(CONFIGS), latencyDashboard(CONFIGS),
        perplexityBars([{ label: "merged", ppl: 6.2 }, { label: "GPTQ 4-bit", ppl: 6.3, method: "GPTQ", bits: 4 }], { baseline: "merged" }),
        perplexityBars([{ label: "a", ppl: 6.2 }, { label: "b", ppl: 6.3 }], { fromZero: false }),
        groupSizeSweepChart(sweepPoints()), groupSizeSweepChart(sweepPoints(false), { control: "radio" }),
      ];
      for (const p of plots) {
        assertValidSpec(p);
        assert.equal((p.spec as { $schema?: string }).$schema, "https://vega.github.io/schema/vega-lite/v5.json");
      }
    });
  });

  describe("histograms", function () {
    it("spec bins hold the counts of an independent float64 binning over the shared range", function () {
      const base = gaussian(20000, 0.02, 5);
      const merged = base.map((v, i) => v + (i % 7 === 0 ? 0.01 : -0.002));
      const plot = weightHistogram([{ name: "base", values: base }, { name: "merged", values: merged }], { bins: 40, title: "layers.0.q_proj" });
      const rows = dataset<BinRow>(plot, "bins");
      let lo = Infinity, hi = -Infinity;
      for (const a of [base, merged]) for (const v of a) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      for (const [name, values] of [["base", base], ["merged", merged]] as const) {
        const ref = referenceCounts(values, lo, hi, 40);
        const got = rows.filter((r) => r.series === name);
        assert.equal(got.length, 40);
        assert.deepEqual(got.map((r) => r.count), ref.counts, `${name} counts`);
        got.forEach((r, b) => {
          assert.ok(Math.abs(r.start - ref.edges[b]) < 1e-12 && Math.abs(r.end - ref.edges[b + 1]) < 1e-12, `${name} bin ${b} edges`);
        });
        assert.equal(got.reduce((s, r) => s + r.count, 0), values.length);
      }
    });

    it("renders one bar per bin and series, with titles and axis titles", async function () {
      const values = Float32Array.from({ length: 1000 }, (_, i) => (i % 10) + 0.5); // 100 values in each of 10 unit bins
      const plot = weightHistogram([{ name: "base", values }, { name: "dequantized", values: values.map((v) => v + 1) }], { bins: 11, title: "down_proj <layer 3>", xTitle: "weight" });
      const svg = await plot.svg();
      assertSelfContained(svg);
      const bars = markLabels(svg, "rect");
      assert.equal(bars.length, 22);
      assert.deepEqual(chartTitles(svg), ["down_proj <layer 3>"]);
      assert.ok(svg.includes("down_proj &lt;layer 3&gt;"), "title text escaped in the SVG");
      assert.deepEqual(axisTitles(svg).sort(), ["count", "weight"]);
      // shared range [0.5, 10.5] in 11 unit bins: base fills bins 0..9 with 100 each, dequantized bins 1..10
      const counts = dataset<BinRow>(plot, "bins").map((r) => r.count);
      assert.deepEqual(counts, [...Array(10).fill(100), 0, 0, ...Array(10).fill(100)]);
      assert.equal(bars.filter((l) => /count: 100\b/.test(l)).length, 20);
    });

    it("log-count histograms leave out empty bins and use a log axis", async function () {
      const values = new Float32Array([0, 0, 0, 1, 9, 9]); // bins of width 1 over [0, 9]: counts 3,1,0,...,0,2
      const plot = weightHistogram({ name: "w", values }, { bins: 9, logCount: true });
      assertValidSpec(plot);
      assert.deepEqual(dataset<BinRow>(plot, "bins").map((r) => [r.start, r.count]), [[0, 3], [1, 1], [8, 2]]);
      const svg = await plot.svg();
      assert.equal(markLabels(svg, "rect").length, 3);
      assert.ok(axisTitles(svg).includes("count (log)"));
      assert.match(svg, /Y-axis titled 'count \(log\)' for a log scale/);
    });

    it("the text summary gives each series' statistics", function () {
      const plot = weightHistogram([{ name: "a", values: [1, 2, 3, NaN] }, { name: "b", values: [-1, 1] }]);
      const lines = plot.text.split("\n");
      assert.match(lines.find((l) => l.startsWith("a "))!, /^a\s+3\s+2\s+0\.8165\s+1\s+3\s+1$/);
      assert.match(lines.find((l) => l.startsWith("b "))!, /^b\s+2\s+0\s+1\s+-1\s+1\s+0$/);
    });

    it("rejects duplicate series names with a LoralabError", function () {
      assert.throws(() => weightHistogram([{ name: "x", values: [1] }, { name: "x", values: [2] }]), (e) => e instanceof LoralabError && /distinct/.test(e.message));
    });
  });

  describe("real data: the Shakespeare adapter on stories260K", function () {
    const modelDir = data("stories260K-hf");
    const adapterFile = data("stories260K-lora-shakespeare", "adapter_model.safetensors");

    it("ΔW = (alpha/r)·B·A histogram and ‖ΔW‖/‖W‖ bars match float64 references", async function () {
      if (!existsSync(modelDir) || !existsSync(adapterFile)) this.skip();
      const config = JSON.parse(readFileSync(data("stories260K-lora-shakespeare", "adapter_config.json"), "utf8"));
      const scale = config.lora_alpha / config.r; // plain LoRA (use_rslora false)
      const model = await ModelDir.open(modelDir);
      const adapter = await SafetensorsFile.open(adapterFile);
      try {
        const rel: { module: string; relDelta: number }[] = [];
        let qDelta: Float64Array | undefined, qBase: Float32Array | undefined;
        for (const kind of ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]) {
          const module = `model.layers.0.${["q_proj", "k_proj", "v_proj", "o_proj"].includes(kind) ? "self_attn" : "mlp"}.${kind}`;
          const w = (await model.read(`${module}.weight`)).toF32();
          const a = await adapter.read(`base_model.model.${module}.lora_A.weight`);
          const b = await adapter.read(`base_model.model.${module}.lora_B.weight`);
          const [r, inF] = a.shape, outF = b.shape[0];
          const A = a.toF32(), B = b.toF32();
          const delta = new Float64Array(outF * inF);
          for (let o = 0; o < outF; o++)
            for (let i = 0; i < inF; i++) {
              let acc = 0;
              for (let k = 0; k < r; k++) acc += B[o * r + k] * A[k * inF + i];
              delta[o * inF + i] = scale * acc;
            }
          let dd = 0, ww = 0;
          for (let j = 0; j < delta.length; j++) { dd += delta[j] ** 2; ww += w[j] ** 2; }
          rel.push({ module, relDelta: Math.sqrt(dd / ww) });
          if (kind === "q_proj") { qDelta = delta; qBase = w; }
        }
        const hist = loraDeltaHistogram(qDelta!, { module: "model.layers.0.self_attn.q_proj", bins: 50 });
        assertValidSpec(hist);
        let lo = Infinity, hi = -Infinity;
        for (const v of qDelta!) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
        assert.ok(hi > lo, "the trained adapter changes q_proj");
        assert.deepEqual(dataset<BinRow>(hist, "bins").map((r) => r.count), referenceCounts(qDelta!, lo, hi, 50).counts);
        const svg = await hist.svg();
        assert.equal(markLabels(svg, "rect").length, 50);
        assert.ok(chartTitles(svg).includes("LoRA delta distribution — model.layers.0.self_attn.q_proj"));
        assert.ok(axisTitles(svg).includes("ΔW = s·B·A"));
        // base vs merged overlaid: the merged values are base + ΔW
        const merged = qBase!.map((v, j) => v + qDelta![j]);
        assertValidSpec(weightHistogram([{ name: "base", values: qBase! }, { name: "merged", values: merged }], { title: "q_proj layer 0" }));
        const bars = mergeDeltaBars(rel);
        const labels = markLabels(await bars.svg(), "rect");
        assert.equal(labels.length, 7);
        rel.forEach((r, i) => assert.ok(Math.abs(Number(/: ([^;]+);/.exec(labels[i])![1]) - r.relDelta) <= 1e-3 * r.relDelta, `${r.module}: ${labels[i]}`));
      } finally {
        await adapter.close();
        await model.close();
      }
    });
  });

  describe("per-module charts", function () {
    it("merge delta bars: one bar per module, in the given order, with its value", async function () {
      const rows = modules(2);
      const plot = mergeDeltaBars(rows);
      const svg = await plot.svg();
      const bars = markLabels(svg, "rect");
      assert.equal(bars.length, 14);
      rows.forEach((r, i) => {
        const m = /^‖ΔW‖ \/ ‖W‖: ([^;]+); module: ([^;]+);/.exec(bars[i]);
        assert.ok(m, bars[i]);
        assert.equal(m[2], r.module.replace(/^model\./, ""), `bar ${i}`);
        assert.ok(Math.abs(Number(m[1]) - r.relDelta) < 1e-6, `bar ${i} value ${m[1]} vs ${r.relDelta}`);
      });
      assert.ok(axisTitles(svg).includes("‖ΔW‖ / ‖W‖"));
      // the text lists the largest first
      const largest = [...rows].sort((a, b) => b.relDelta - a.relDelta)[0];
      assert.match(plot.text, new RegExp(`largest 10:\\n.*\\n.*\\n${largest.module.replace(/\./g, "\\.")}\\s+0\\.026`));
    });

    it("quantization error: relative error and GPTQ loss side by side", async function () {
      const plot = quantErrorBars(modules(1), { method: "GPTQ" });
      const svg = await plot.svg();
      assert.equal(markLabels(svg, "rect").length, 14); // 7 modules × 2 panels
      assert.deepEqual(chartTitles(svg).sort(), ["GPTQ loss", "GPTQ quantization error per module", "‖W − Ŵ‖ / ‖W‖"].sort());
    });

    it("switches to a layer × module heatmap for many modules", async function () {
      const rows = modules(12); // 84 modules
      const plot = mergeDeltaBars(rows);
      const svg = await plot.svg();
      const cells = markLabels(svg, "rect");
      assert.equal(cells.length, 84);
      assert.deepEqual(axisTitles(svg).sort(), ["layer", "module"]);
      assert.throws(() => mergeDeltaBars([{ module: "lm_head", relDelta: 1 }], { layout: "heatmap" }), LoralabError);
    });

    it("names the module at fault", function () {
      assert.throws(() => mergeDeltaBars([{ module: "model.layers.0.mlp.up_proj", relDelta: NaN }]), /model\.layers\.0\.mlp\.up_proj/);
      assert.throws(() => mergeDeltaBars([{ module: "a", relDelta: 1 }, { module: "a", relDelta: 2 }]), /module a appears twice/);
      assert.throws(() => quantErrorBars([{ module: "a", relError: 1, loss: 2 }, { module: "b", relError: 1 }]), /e\.g\. b/);
    });
  });

  describe("latency charts", function () {
    it("TTFT bars: one per configuration with its value", async function () {
      const svg = await ttftBars(CONFIGS).svg();
      const bars = markLabels(svg, "rect");
      assert.equal(bars.length, 4);
      CONFIGS.forEach((c, i) => assert.match(bars[i], new RegExp(`^config: ${c.config.replace(/\+/g, "\\+")}; TTFT \\(ms\\): ${c.ttftMs};`)));
      assert.deepEqual(markLabels(svg, "text").length, 4, "value labels");
      assert.ok(axisTitles(svg).includes("TTFT (ms)"));
    });

    it("the dashboard has TTFT, decode, memory and per-token panels", async function () {
      const plot = latencyDashboard(CONFIGS);
      const svg = await plot.svg();
      assertSelfContained(svg);
      // 4 TTFT + 4 decode + 4 × (peak RSS, model weights) memory bars
      assert.equal(markLabels(svg, "rect").length, 16);
      assert.equal(markLabels(svg, "line").length, 4, "one latency line per configuration");
      for (const t of ["TTFT (ms)", "decode tokens/s", "MiB", "generated token", "latency (ms)"]) assert.ok(axisTitles(svg).includes(t), t);
      for (const t of ["Latency and memory by configuration", "TTFT (ms)", "decode tokens/s", "memory (MiB)", "per-token latency over the generation"]) assert.ok(chartTitles(svg).includes(t), t);
      const memory = dataset<{ config: string; memory: string; mib: number }>(plot, "memory");
      assert.equal(memory.find((r) => r.config === "merged + 4-bit" && r.memory === "peak RSS")!.mib, 150);
    });

    it("per-token text gives nearest-rank percentiles", function () {
      const ms = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
      const plot = perTokenLatencyChart([{ config: "x", perTokenMs: ms }]);
      // p50 = 51st smallest (index floor(0.5·100)), p90 = 91, p99 = 100
      assert.match(plot.text, /x\s+100\s+51\s+91\s+100/);
    });

    it("omits configurations without a measure and rejects bad input", async function () {
      const plot = decodeThroughputBars([{ config: "a", decodeTokensPerSec: 10 }, { config: "b" }]);
      assert.equal(markLabels(await plot.svg(), "rect").length, 1);
      assert.throws(() => ttftBars([{ config: "a" }]), /no configuration has this measure/);
      assert.throws(() => ttftBars([{ config: "a", ttftMs: -1 }]), /configuration a has an invalid ttftMs/);
      assert.throws(() => ttftBars([{ config: "a", ttftMs: 1 }, { config: "a", ttftMs: 2 }]), /distinct/);
      assert.throws(() => perTokenLatencyChart([{ config: "a", perTokenMs: [1, NaN] }]), /configuration a has an invalid latency for token 2/);
    });
  });

  describe("perplexity", function () {
    it("bars with a baseline rule and changes against it", async function () {
      const rows = [{ label: "base", ppl: 8 }, { label: "merged", ppl: 6.25 }, { label: "merged + GPTQ 4-bit", ppl: 6.5, method: "GPTQ", bits: 4 }];
      const plot = perplexityBars(rows, { baseline: "merged" });
      const svg = await plot.svg();
      assert.equal(markLabels(svg, "rect").length, 3);
      assert.equal(markLabels(svg, "rule").length, 1);
      assert.ok(axisTitles(svg).includes("perplexity"));
      // 8 / 6.25 − 1 = 28%, 6.5 / 6.25 − 1 = 4%
      assert.match(plot.text, /base\s+8\s+\+28%/);
      assert.match(plot.text, /merged \+ GPTQ 4-bit\s+6\.5\s+\+4%/);
      assert.throws(() => perplexityBars(rows, { baseline: "nope" }), /baseline 'nope' is not one of the labels/);
      assert.throws(() => perplexityBars([{ label: "x", ppl: Infinity }]), /x has an invalid perplexity/);
    });
  });

  describe("group-size sweep", function () {
    it("Pareto front equals a brute-force dominance check", function () {
      const points = sweepPoints(false);
      const dominated = (p: SweepPoint) => points.some((q) => q !== p && q.sizeBytes <= p.sizeBytes && q.ppl <= p.ppl && (q.sizeBytes < p.sizeBytes || q.ppl < p.ppl));
      const expected = points.filter((p) => !dominated(p)).sort((a, b) => a.sizeBytes - b.sizeBytes);
      assert.deepEqual(paretoFront(points), expected);
      assert.ok(expected.length >= 2 && expected.length < points.length);
    });

    it("binds a select over the group sizes and shows only the selected group's histogram", async function () {
      const points = sweepPoints();
      const plot = groupSizeSweepChart(points, { bins: 30 });
      const params = (plot.spec as { params: { name: string; value: number; bind: { input: string; options: number[]; labels: string[] } }[] }).params;
      assert.equal(params[0].name, GROUP_SIZE_PARAM);
      assert.deepEqual(params[0].bind.options, [32, 64, 128, -1]);
      assert.deepEqual(params[0].bind.labels, ["32", "64", "128", "per-channel"]);
      assert.equal(params[0].value, -1, "starts at the largest group (per-channel)");
      // the compiled Vega spec carries the control as a bound signal (what vega-embed turns into a <select>)
      const signal = (vl.compile(plot.spec).spec.signals ?? []).find((s) => s.name === GROUP_SIZE_PARAM) as { value: number; bind: { input: string; options: number[] } };
      assert.equal(signal.value, -1);
      assert.equal(signal.bind.input, "select");
      assert.deepEqual(signal.bind.options, [32, 64, 128, -1]);
      // every group size's histogram is in the data: 16 points × 30 bins
      assert.equal(dataset(plot, "errors").length, 16 * 30);
      const svg = await plot.svg();
      assertSelfContained(svg);
      assert.equal(markLabels(svg, "rect").length, 4 * 30, "only the 4 series of the selected group size");
      assert.ok(chartTitles(svg).includes("quantization error at group size per-channel"));
      for (const t of ["group size", "perplexity", "model size (MiB)", "W − Ŵ", "count"]) assert.ok(axisTitles(svg).includes(t), t);
      // highlighted points: the 4 series at the selected group size, in both scatter panels, are drawn larger
      const points16 = markLabels(svg, "symbol");
      assert.equal(points16.length, 32);
    });

    it("moving the parameter switches the histogram without recompiling (as the notebook control does)", async function () {
      const points = sweepPoints();
      const plot = groupSizeSweepChart(points, { bins: 30 });
      const view = new vega.View(vega.parse(vl.compile(plot.spec).spec), { renderer: "none" });
      try {
        view.signal(GROUP_SIZE_PARAM, 64);
        const svg = await view.toSVG();
        assert.ok(svg.includes("quantization error at group size 64"));
        const bars = markLabels(svg, "rect");
        assert.equal(bars.length, 4 * 30);
        // the bars now carry the group-64 counts, computed here independently over the shared range
        const rows = dataset<{ series: string; groupSize: number; start: number; end: number; count: number }>(plot, "errors");
        const lo = rows[0].start, hi = rows[29].end;
        const p = points.find((q) => q.method === "RTN" && q.bits === 3 && q.groupSize === 64)!;
        const ref = referenceCounts(p.error as Float32Array, lo, hi, 30).counts;
        const shown = bars.filter((l) => l.includes("method / bits: RTN 3-bit")).map((l) => Number(/count: (\d+)/.exec(l)![1]));
        assert.deepEqual(shown, ref);
      } finally {
        view.finalize();
      }
    });

    it("accepts precomputed error histograms", async function () {
      const h = (values: number[]) => histogram(values, 4, [-1, 1]);
      const plot = groupSizeSweepChart([
        { method: "RTN", bits: 4, groupSize: 32, ppl: 6, sizeBytes: 2e6, error: h([-0.9, -0.9, 0.1, 0.9]) },
        { method: "RTN", bits: 4, groupSize: 128, ppl: 6.5, sizeBytes: 1e6, error: h([0.6, 0.6, 0.6]) },
      ]);
      assertValidSpec(plot);
      const rows = dataset<{ groupSize: number; start: number; count: number }>(plot, "errors");
      assert.deepEqual(rows.filter((r) => r.groupSize === 32).map((r) => r.count), [2, 0, 1, 1]);
      assert.deepEqual(rows.filter((r) => r.groupSize === 128).map((r) => r.count), [0, 0, 0, 3]);
      const svg = await plot.svg(); // initial: group 128
      assert.deepEqual(markLabels(svg, "rect").map((l) => Number(/count: (\d+)/.exec(l)![1])), [0, 0, 0, 3]);
      assert.deepEqual(paretoFront([{ sizeBytes: 2e6, ppl: 6 }, { sizeBytes: 1e6, ppl: 6.5 }]).map((p) => p.sizeBytes), [1e6, 2e6]);
    });

    it("rejects duplicates and an initial group size outside the sweep", function () {
      const points = sweepPoints(false);
      assert.throws(() => groupSizeSweepChart([...points, points[0]]), /GPTQ 3-bit\/32 appears twice/);
      assert.throws(() => groupSizeSweepChart(points, { initialGroupSize: 256 }), /initial group size 256 is not in the sweep/);
    });
  });

  describe("Plot object", function () {
    it("bundle, Jupyter display (Promise before render, sync after) and text", async function () {
      const plot = ttftBars(CONFIGS);
      const early = plot[JUPYTER_DISPLAY]();
      assert.ok(early instanceof Promise);
      const bundle = await early;
      assert.deepEqual(Object.keys(bundle).sort(), [VEGALITE_MIME, "image/svg+xml", "text/plain"].sort());
      assert.equal(bundle[VEGALITE_MIME], plot.spec);
      assert.ok(bundle["image/svg+xml"].startsWith("<svg"));
      assert.equal(bundle["text/plain"], plot.text);
      const rendered = await ttftBars(CONFIGS).render();
      const sync = rendered[JUPYTER_DISPLAY]();
      assert.ok(!(sync instanceof Promise));
      assert.equal((sync as { "text/plain": string })["text/plain"], rendered.text);
      assert.equal(String(rendered), rendered.text);
    });

    it("the renderer's compiled-spec cache never mixes up data", async function () {
      const a = await weightHistogram({ name: "w", values: [1, 2, 3, 4] }, { bins: 4, title: "same" }).svg();
      const b = await weightHistogram({ name: "w", values: [1, 1, 1, 4] }, { bins: 4, title: "same" }).svg();
      assert.deepEqual(markLabels(a, "rect").map((l) => /count: (\d+)/.exec(l)![1]), ["1", "1", "1", "1"]);
      assert.deepEqual(markLabels(b, "rect").map((l) => /count: (\d+)/.exec(l)![1]), ["3", "0", "0", "1"]);
      // same result as compiling from scratch
      const fresh = new vega.View(vega.parse(vl.compile(weightHistogram({ name: "w", values: [1, 1, 1, 4] }, { bins: 4, title: "same" }).spec).spec), { renderer: "none" });
      assert.equal(await fresh.toSVG(), b);
      fresh.finalize();
    });

    it("renders fast once compiled (timing printed)", async function () {
      const make = (seed: number) => weightHistogram([{ name: "base", values: gaussian(100_000, 0.02, seed) }, { name: "merged", values: gaussian(100_000, 0.021, seed + 1) }], { title: "timing" });
      const t0 = performance.now();
      await make(100).svg();
      const t1 = performance.now();
      await make(200).svg();
      const t2 = performance.now();
      const sweep = groupSizeSweepChart(sweepPoints());
      const t3 = performance.now();
      await renderSvg(sweep.spec);
      const t4 = performance.now();
      await renderSvg(sweep.spec);
      const t5 = performance.now();
      console.log(`      render: histogram 2×100k values first ${(t1 - t0).toFixed(0)} ms, same structure again ${(t2 - t1).toFixed(0)} ms; sweep first ${(t4 - t3).toFixed(0)} ms, again ${(t5 - t4).toFixed(0)} ms`);
      assert.ok(t2 - t1 < 2000 && t5 - t4 < 2000, "a cached render takes well under 2 s");
    });

    it("save writes SVG and spec JSON atomically; PNG only with rsvg-convert", async function () {
      const tmp = tempDir();
      try {
        const plot = memoryBars(CONFIGS);
        const written = await plot.save(join(tmp.path, "plots"));
        assert.deepEqual(written.map((p) => p.slice(tmp.path.length + 1)).sort(), ["plots/memory-mib.svg", "plots/memory-mib.vl.json"]);
        assert.equal(readFileSync(written[0], "utf8"), await plot.svg());
        assert.deepEqual(JSON.parse(readFileSync(written[1], "utf8")), plot.spec);
        assert.deepEqual(readdirSync(join(tmp.path, "plots")).sort(), ["memory-mib.svg", "memory-mib.vl.json"], "no temporaries left");
        if (!pngRasterizer()) {
          await assert.rejects(plot.save(tmp.path, "m", { formats: ["png"] }), /rsvg-convert/);
          return;
        }
        const [png] = await plot.save(tmp.path, "m", { formats: ["png"], pngScale: 2 });
        const bytes = readFileSync(png);
        assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
        const svgWidth = Number(/<svg[^>]*\bwidth="(\d+)"/.exec(await plot.svg())![1]);
        assert.equal(bytes.readUInt32BE(16), 2 * svgWidth, "PNG width = 2 × SVG width");
      } finally {
        tmp.cleanup();
      }
    });

    it("rejects names that are not file-name safe", function () {
      assert.throws(() => new Plot("../x", { mark: "bar", data: { values: [] } }, ""), LoralabError);
    });
  });

  describe("HTML tables and reports", function () {
    it("escapes every header, cell and caption", function () {
      assert.equal(escapeHtml(`<a href="x">'&'</a>`), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
      const t = htmlTable([{ "<name>": "<script>alert(1)</script>", ppl: 6.123456 }, { "<name>": "b&c", ppl: 7 }], { caption: "a < b" });
      assert.ok(!t.html.includes("<script>"));
      assert.ok(t.html.includes("&lt;script&gt;alert(1)&lt;/script&gt;"));
      assert.ok(t.html.includes("<th style=\"text-align:left\">&lt;name&gt;</th>"));
      assert.ok(t.html.includes("<td style=\"text-align:right\">6.123</td>"));
      assert.ok(t.html.includes("<caption>a &lt; b</caption>"));
      assert.equal((t.html.match(/<tr>/g) ?? []).length, 3);
      const bundle = t[JUPYTER_DISPLAY]();
      assert.equal(bundle["text/html"], t.html);
      assert.match(bundle["text/plain"], /b&c\s+7/);
    });

    it("columns choose order, labels and formats", function () {
      const t = htmlTable([{ a: 1, b: 0.5 }], { columns: [{ key: "b", label: "B %", format: (v) => `${(v as number) * 100}%` }, "a"] });
      assert.ok(t.html.includes("<th style=\"text-align:right\">B %</th><th style=\"text-align:right\">a</th>"));
      assert.ok(t.html.includes(">50%</td><td style=\"text-align:right\">1</td>"));
    });

    it("reportHtml is one self-contained page with the SVGs inline", async function () {
      const plots = [ttftBars(CONFIGS), perplexityBars([{ label: "m", ppl: 6 }])];
      const html = await reportHtml(
        [
          { title: "Latency <&>", content: ["TTFT of the four configurations.", plots[0]] },
          { title: "Quality", content: [htmlTable([{ config: "m", ppl: 6 }]), plots[1]] },
        ],
        { title: "loralab report", subtitle: "model: <dir>" },
      );
      assert.ok(html.startsWith("<!DOCTYPE html>"));
      assert.equal((html.match(/<svg /g) ?? []).length, 2);
      assert.ok(html.includes("<h2>Latency &lt;&amp;&gt;</h2>"));
      assert.ok(html.includes("model: &lt;dir&gt;"));
      assert.ok(!/<script|<link|\bsrc=/i.test(html));
      assertSelfContained(html.slice(html.indexOf("<svg")));
    });

    it("composeHtml puts tables, paragraphs and plots in one fragment for a notebook output", async function () {
      const table = htmlTable([{ config: "m", ppl: 6 }]);
      const plot = ttftBars(CONFIGS);
      const a = await composeHtml(["<ppl>", table, plot]);
      const b = await composeHtml([plot]);
      assert.ok(a.html.includes("<p>&lt;ppl&gt;</p>") && a.html.includes(table.html));
      assert.equal((a.html.match(/<svg /g) ?? []).length, 1);
      const figureIds = [a, b].map((f) => /<figure id="([^"]+)"/.exec(f.html)![1]);
      assert.notEqual(figureIds[0], figureIds[1], "ids stay distinct across fragments");
      assert.equal(a.text, ["<ppl>", table.text, plot.text].join("\n\n"));
      assert.equal(a[JUPYTER_DISPLAY]()["text/html"], a.html);
    });

    it("writeReport writes the page, each plot and extra files, atomically", async function () {
      const tmp = tempDir();
      try {
        const out = join(tmp.path, "report");
        const events: number[] = [];
        const sections = [{ title: "Latency", content: [ttftBars(CONFIGS), ttftBars(CONFIGS), memoryBars(CONFIGS)] }];
        const written = await writeReport(out, sections, { title: "r", files: { "results.json": "{}" }, onProgress: (e) => events.push(e.done) });
        assert.deepEqual(written.sort(), ["plots/memory-mib.svg", "plots/memory-mib.vl.json", "plots/time-to-first-token-ms.svg", "plots/time-to-first-token-ms.vl.json", "plots/time-to-first-token-ms-2.svg", "plots/time-to-first-token-ms-2.vl.json", "report.html", "results.json"].sort());
        assert.deepEqual(events, [1, 2, 3]);
        assert.equal((readFileSync(join(out, "report.html"), "utf8").match(/<svg /g) ?? []).length, 3);
        assert.deepEqual(readdirSync(tmp.path), ["report"], "no temporary directory left");
        // a non-empty output is not overwritten unless asked; a failing write leaves nothing behind
        await assert.rejects(writeReport(out, sections, { title: "r" }), LoralabError);
        await assert.rejects(writeReport(join(tmp.path, "bad"), sections, { title: "r", files: { "../x": "" } }), /plain file name/);
        const controller = new AbortController();
        controller.abort();
        await assert.rejects(writeReport(join(tmp.path, "aborted"), sections, { title: "r", signal: controller.signal }), { name: "AbortError" });
        assert.ok(!existsSync(join(tmp.path, "aborted")) && readdirSync(tmp.path).length === 1);
        await writeReport(out, [{ title: "x", content: ["only text"] }], { title: "r", overwrite: true });
        assert.deepEqual(readdirSync(out), ["report.html"]);
      } finally {
        tmp.cleanup();
      }
    });
  });
});
