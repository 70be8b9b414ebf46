import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv, type ValidateFunction } from "ajv";
import { benchmark } from "../lib/bench/benchmark.js";
import { compare, compareRows } from "../lib/bench/compare.js";
import { perplexity } from "../lib/bench/perplexity.js";
import { percentile } from "../lib/bench/stats.js";
import { LoralabError } from "../lib/errors.js";
import { generateLlamaModel, generateLoraAdapter, seededText, writeCharTokenizer } from "../lib/fixtures/index.js";
import { ModelDir } from "../lib/io/model-dir.js";
import { merge, type MergeReport } from "../lib/lora/merge.js";
import { loadModel } from "../lib/model/load.js";
import { concatPlots, groupSizeSweepChart, latencyDashboard, lazyDisplay, perplexityBars, pngRasterizer, type ResultBundle, VEGALITE_MIME } from "../lib/plot/index.js";
import { quantizeModel } from "../lib/quant/pipeline.js";
import { QuantReport } from "../lib/quant/report.js";
import { REPO_ROOT, tempDir } from "./helpers/paths.js";

// ---------- helpers (independent of lib/plot) ----------

const DISPLAY = Symbol.for("Jupyter.display");
const display = (r: object) => (r as Record<symbol, () => ResultBundle | Promise<ResultBundle>>)[DISPLAY]();

const unescapeXml = (s: string) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&");
const chartTitles = (svg: string) => [...svg.matchAll(/aria-label="Title text '([^']*)'/g)].map((m) => unescapeXml(m[1]));

/** aria-labels of the drawn marks of one type (`<g class="mark-rect role-mark …">` groups). */
function markLabels(svg: string, type: "rect" | "line" | "rule"): string[] {
  const labels: string[] = [];
  for (const m of svg.matchAll(new RegExp(`<g class="mark-${type} role-mark[^"]*"[^>]*>(.*?)</g>`, "gs")))
    for (const el of m[1].matchAll(/<(?:path|line)\b[^>]*role="graphics-symbol"[^>]*>/g)) labels.push(unescapeXml(/aria-label="([^"]*)"/.exec(el[0])?.[1] ?? ""));
  return labels;
}

/** The text of every <td> of the first table in the HTML, row by row. */
function tableCells(html: string): string[][] {
  const table = /<table[\s\S]*?<\/table>/.exec(html)?.[0] ?? "";
  return [...table.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((r) => [...r[1].matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((c) => unescapeXml(c[1]))).filter((r) => r.length > 0);
}

let validate: ValidateFunction;
function assertBundle(b: ResultBundle, titles: string[]): string {
  assert.ok(validate(b[VEGALITE_MIME]), `Vega-Lite 5: ${JSON.stringify(validate.errors?.slice(0, 3))}`);
  const svg = b["image/svg+xml"]!;
  assert.ok(svg.startsWith("<svg"));
  const got = chartTitles(svg);
  for (const t of titles) assert.ok(got.includes(t), `SVG title '${t}' in ${JSON.stringify(got)}`);
  // the HTML carries the table and the same plots inline
  assert.match(b["text/html"], /^<div class="loralab-result">[\s\S]*<table class="loralab-table">[\s\S]*<\/table>[\s\S]*<svg/);
  assert.ok(!b["text/plain"].includes("<"), "text/plain has no markup");
  return svg;
}

// ---------- fixtures: a tiny generated Llama, a LoRA adapter, seeded text ----------

const tmp = tempDir("loralab-display-");
const base = join(tmp.path, "base"), adapter = join(tmp.path, "adapter"), merged = join(tmp.path, "merged"), textFile = join(tmp.path, "text.txt");
const TEXT = seededText(4, 600);

async function fixtures(): Promise<void> {
  await generateLlamaModel(base, { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 64, dtype: "F32", seed: 1, maxPositionEmbeddings: 256 });
  await writeCharTokenizer(base, 64);
  await generateLoraAdapter(adapter, base, { r: 4, alpha: 8, targets: ["q_proj", "v_proj", "down_proj"], seed: 2 });
  writeFileSync(textFile, TEXT);
}

describe("result displays (tables + plots) and --plot DIR", function () {
  this.timeout(120_000);
  let report: MergeReport;

  before(async function () {
    validate = new Ajv({ allErrors: true, strict: false, validateFormats: false }).compile(JSON.parse(readFileSync(join(REPO_ROOT, "node_modules/vega-lite/build/vega-lite-schema.json"), "utf8")));
    await fixtures();
    report = await merge({ base, adapters: [{ path: adapter }], out: merged });
  });
  after(() => tmp.cleanup());

  describe("building blocks", function () {
    it("lazyDisplay: a Promise first, the same bundle synchronously after; failures are not cached", async function () {
      const owner = {};
      let builds = 0;
      const build = async () => ({ "text/plain": `n${++builds}`, "text/html": "<b>x</b>" });
      const first = lazyDisplay(owner, build);
      assert.ok(first instanceof Promise);
      const bundle = await first;
      assert.equal(lazyDisplay(owner, build), bundle);
      assert.equal(builds, 1);
      const failing = {};
      await assert.rejects(Promise.resolve(lazyDisplay(failing, async () => { throw new LoralabError("boom"); })), /boom/);
      assert.equal((await lazyDisplay(failing, build))["text/plain"], "n2");
    });

    it("concatPlots stacks specs with renamed datasets (valid Vega-Lite 5) and refuses interactive plots", async function () {
      const a = latencyDashboard([{ config: "x", ttftMs: 3, perTokenMs: [1, 2] }]);
      const b = perplexityBars([{ label: "x", ppl: 5 }, { label: "y", ppl: 6 }], { baseline: "x" });
      const c = concatPlots([a, b], { name: "both" });
      assert.ok(validate(c.spec), JSON.stringify(validate.errors?.slice(0, 3)));
      const ds = (c.spec as { datasets: Record<string, unknown[]> }).datasets;
      assert.deepEqual(Object.keys(ds).sort(), ["p1_tokens", "p1_ttft", "p2_baseline", "p2_ppl"]);
      assert.deepEqual(ds.p2_ppl.map((r) => (r as { ppl: number }).ppl), [5, 6]);
      assert.ok(!JSON.stringify(c.spec).includes('"name":"ttft"'), "every data reference renamed");
      const svg = await c.svg();
      assert.deepEqual(markLabels(svg, "rect").length, 1 + 2); // one TTFT bar, two perplexity bars
      assert.equal(concatPlots([a]), a);
      const sweep = groupSizeSweepChart([{ method: "RTN", bits: 4, groupSize: 32, ppl: 6, sizeBytes: 1e6 }, { method: "RTN", bits: 4, groupSize: 64, ppl: 6.1, sizeBytes: 0.9e6 }]);
      assert.throws(() => concatPlots([a, sweep]), /parameters/);
    });
  });

  describe("display bundles", function () {
    it("merge report: module table and ‖ΔW‖/‖W‖ bars equal to an independent float64 computation", async function () {
      const b = await display(report);
      const svg = assertBundle(b, ["Relative weight change of the merge (‖ΔW‖ / ‖W‖)"]);
      assert.equal(display(report), b, "synchronous once built");
      // 2 layers × (q_proj, v_proj, down_proj)
      assert.equal(report.modules.length, 6);
      const bars = markLabels(svg, "rect");
      assert.equal(bars.length, 6);
      const cells = tableCells(b["text/html"]);
      assert.equal(cells.length, 6);
      const [bm, mm] = [await ModelDir.open(base), await ModelDir.open(merged)];
      try {
        for (const m of report.modules) {
          const w = (await bm.read(m.tensor)).toF32(), v = (await mm.read(m.tensor)).toF32();
          let dd = 0, ww = 0;
          for (let i = 0; i < w.length; i++) { dd += (v[i] - w[i]) ** 2; ww += w[i] ** 2; }
          const rel = Math.sqrt(dd / ww);
          assert.ok(rel > 1e-4 && Math.abs(m.relDelta / rel - 1) < 1e-6, `${m.tensor}: ${m.relDelta} vs ${rel}`);
          const row = cells.find((c) => c[0] === m.tensor);
          assert.ok(row, `table row ${m.tensor}`);
          assert.equal(row[3], m.relDelta.toExponential(3));
          const label = m.tensor.replace(/^model\./, "").replace(/\.weight$/, "");
          const bar = bars.find((l) => l.includes(`module: ${label};`));
          assert.ok(bar, `bar of ${label}`);
          const shown = Number(/‖ΔW‖ \/ ‖W‖: ([0-9.e-]+)/.exec(bar)![1]);
          assert.ok(Math.abs(shown / rel - 1) < 1e-6, `${label}: bar ${shown} vs ${rel}`);
        }
      } finally {
        await bm.close();
        await mm.close();
      }
      assert.match(b["text/plain"], /model\.layers\.0\.self_attn\.q_proj\.weight/);
    });

    it("quantization report: module table and error bars; with GPTQ losses a second panel", async function () {
      const q = await quantizeModel({ model: merged, out: join(tmp.path, "rtn"), method: "rtn", bits: 4, groupSize: 32, format: "gptq" });
      const b = await display(q);
      const svg = assertBundle(b, ["RTN 4-bit g32: quantization error per module"]);
      assert.equal(markLabels(svg, "rect").length, q.modules.length);
      const cells = tableCells(b["text/html"]);
      for (const m of q.modules) assert.ok(cells.some((c) => c[0] === m.module && c[4] === m.relError.toExponential(3)), m.module);
      assert.match(b["text/plain"], /rtn 4-bit g32 sym → gptq/);
      // a GPTQ-style report: relative error and loss side by side, one bar per module in each
      const modules = [0, 1].flatMap((l) => ["q_proj", "k_proj"].map((k, i) => ({ module: `model.layers.${l}.self_attn.${k}`, shape: [64, 64] as [number, number], bits: 4, groupSize: 32, relError: 0.01 * (1 + l + i), loss: 2.5 * (1 + l) + i, seconds: 0.1 })));
      const g = new QuantReport({ model: "m", out: "o", method: "gptq", format: "gptq", bits: 4, groupSize: 32, sym: true, descAct: false, damp: 0.01, hessian: "int", calibration: null, modules, skipped: [{ module: "lm_head", shape: [64, 64], reason: "not a decoder linear" }], bytesBefore: 1e6, bytesAfter: 3e5, seconds: 1 });
      const gb = await display(g);
      const gsvg = assertBundle(gb, []);
      assert.equal(markLabels(gsvg, "rect").length, 2 * modules.length);
      const losses = markLabels(gsvg, "rect").filter((l) => /GPTQ loss: /.test(l)).map((l) => Number(/GPTQ loss: ([0-9.e-]+)/.exec(l)![1])).sort((x, y) => x - y);
      assert.deepEqual(losses, modules.map((m) => m.loss).sort((x, y) => x - y));
      assert.match(gb["text/html"], /kept in full precision:[\s\S]*lm_head \(64×64\): not a decoder linear/);
    });

    it("compare: the seed's table, the latency dashboard (per-token lines of every configuration) and perplexity bars", async function () {
      const r = await compare({ base, adapter, merged, prompt: "the king and the queen", text: TEXT, maxNewTokens: 6, repeats: 2, warmup: 0, ctx: 100, maxTokens: 300, threads: 1 });
      const b = await display(r);
      const svg = assertBundle(b, ["Latency and memory by configuration", "TTFT (ms)", "decode tokens/s", "memory (MiB)", "per-token latency over the generation", "Perplexity (lower is better)"]);
      const configs = ["base", "base + dynamic LoRA", "merged"];
      // the table: config | memory | TTFT | tok/s | perplexity, cell for cell as the CLI prints it
      assert.match(b["text/html"], /<th[^>]*>config<\/th><th[^>]*>memory<\/th><th[^>]*>TTFT<\/th><th[^>]*>tok\/s<\/th><th[^>]*>perplexity<\/th>/);
      assert.deepEqual(tableCells(b["text/html"]), compareRows(r));
      assert.deepEqual(compareRows(r).map((c) => c[0]), configs);
      for (const row of r.rows) assert.ok(b["text/html"].includes(`${row.bench.ttftMs.median.toFixed(1)} ms`) && b["text/html"].includes(row.perplexity!.ppl.toFixed(4)));
      // one per-token latency line per configuration, starting at new token 2 (token 1's latency is the TTFT)
      const lines = markLabels(svg, "line");
      assert.equal(lines.length, 3);
      for (const c of configs) assert.ok(lines.some((l) => l.includes(`configuration: ${c};`) && l.startsWith("generated token: 2;")), c);
      // TTFT and decode bars carry each configuration's median
      const rects = markLabels(svg, "rect");
      for (const row of r.rows) {
        const ttft = rects.find((l) => l.startsWith(`config: ${row.config}; TTFT (ms): `))!;
        assert.ok(Math.abs(Number(/TTFT \(ms\): ([0-9.e-]+)/.exec(ttft)![1]) - row.bench.ttftMs.median) < 1e-6 * row.bench.ttftMs.median + 1e-9);
        const ppl = rects.find((l) => l.startsWith(`label: ${row.config}; perplexity: `))!;
        assert.ok(Math.abs(Number(/perplexity: ([0-9.e-]+)/.exec(ppl)![1]) / row.perplexity!.ppl - 1) < 1e-9);
        assert.equal(row.bench.perTokenMs.length, 5);
      }
      // the perplexity baseline is the merged model
      assert.match(markLabels(svg, "rule").join(), new RegExp(`baseline: ${r.rows[2].perplexity!.ppl.toPrecision(6).slice(0, 6)}`));
      assert.equal(b["text/plain"].split("\n")[0].replace(/\s+/g, " ").trim(), "config memory TTFT tok/s perplexity");
      // JSON: the new series is there, the symbol-keyed display is not
      const json = JSON.parse(JSON.stringify(r));
      assert.equal(json.rows[0].bench.perTokenMs.length, 5);
      assert.equal(json.rows[0].perplexity.windowTokens, undefined);
    });

    it("bench: per-token series (one run: the run's own step latencies) and the dashboard", async function () {
      const r = await benchmark({ model: merged }, { prompt: "the king", maxNewTokens: 9, repeats: 1, warmup: 1, threads: 1 });
      // with one run the series is that run's decode steps: their count, throughput and median agree with the summaries
      assert.equal(r.perTokenMs.length, 8);
      const sum = r.perTokenMs.reduce((a, x) => a + x, 0);
      assert.ok(Math.abs((8 * 1000) / sum / r.decodeTokPerS.median - 1) < 1e-3 + 8e-3 / sum, `${(8 * 1000) / sum} vs ${r.decodeTokPerS.median}`);
      assert.ok(Math.abs(percentile(r.perTokenMs, 50) - r.latencyMs.p50) <= 1e-3);
      const b = await display(r);
      const svg = assertBundle(b, ["Latency and memory: model", "per-token latency over the generation"]);
      assert.equal(markLabels(svg, "line").length, 1);
      const cells = tableCells(b["text/html"]);
      assert.deepEqual(cells.find((c) => c[0] === "latency ms p50 / p90 / p99")?.[1], `${r.latencyMs.p50.toFixed(2)} / ${r.latencyMs.p90.toFixed(2)} / ${r.latencyMs.p99.toFixed(2)}`);
      assert.match(b["text/plain"], /decode tok\/s/);
    });

    it("perplexity: summary table and one bar per window, the rule at the overall perplexity", async function () {
      const { lm, tokenizer } = await loadModel({ model: merged }, { threads: 1 });
      try {
        const r = await perplexity(lm, tokenizer.encode(TEXT, { bos: false }), { ctx: 100, maxTokens: 400, bos: tokenizer.bosId });
        // BOS before every window, non-overlapping: each window scores ctx − 1 tokens
        assert.deepEqual(r.windowTokens, [99, 99, 99, 99]);
        const b = await display(r);
        const svg = assertBundle(b, ["Perplexity per window"]);
        const bars = markLabels(svg, "rect");
        assert.equal(bars.length, 4);
        bars.forEach((l, w) => {
          const shown = Number(/perplexity: ([0-9.e-]+)/.exec(l)![1]);
          assert.ok(Math.abs(shown / Math.exp(r.windowNll[w] / 99) - 1) < 1e-9, `window ${w + 1}`);
        });
        const overall = Number(/ppl: ([0-9.e-]+)/.exec(markLabels(svg, "rule")[0])?.[1] ?? NaN);
        assert.ok(Math.abs(overall / r.ppl - 1) < 1e-9, `${overall} vs ${r.ppl}`);
        assert.deepEqual(tableCells(b["text/html"])[0], ["perplexity", `${r.ppl.toFixed(4)} ± ${r.pplStderr.toFixed(4)}`]);
        assert.match(b["text/plain"], /^perplexity \d+\.\d{4} ± /);
      } finally {
        await lm.release();
      }
    });
  });

  describe("CLI --plot DIR", function () {
    it("merge, quantize, bench, compare and ppl save their plots (SVG, PNG, Vega-Lite) and document the option", function () {
      const plots = join(tmp.path, "plots");
      const m2 = join(tmp.path, "cli-merged"), q = join(tmp.path, "cli-q");
      const commands = [
        ["merge", "--base", base, "--adapter", adapter, "--out", m2, "--quiet", "--plot", join(plots, "merge")],
        ["quantize", "--model", m2, "--method", "rtn", "--bits", "4", "--group-size", "32", "--format", "gptq", "--out", q, "--quiet", "--plot", join(plots, "quantize")],
        ["bench", "--model", q, "--prompt", "the king", "--max-new-tokens", "4", "--repeats", "1", "--warmup", "0", "--json", "--plot", join(plots, "bench")],
        ["compare", "--base", base, "--merged", m2, "--quantized", q, "--prompt", "the king", "--text", textFile, "--max-new-tokens", "4", "--repeats", "1", "--warmup", "0", "--ctx", "100", "--max-tokens", "200", "--plot", join(plots, "compare")],
        ["ppl", "--model", m2, "--text", textFile, "--ctx", "100", "--max-tokens", "300", "--plot", join(plots, "ppl")],
        ["merge", "--help"],
      ];
      // one process for all commands: one tsx start-up
      const runner = `const { main } = await import(${JSON.stringify(join(REPO_ROOT, "lib/cli/main.ts"))}); const codes = []; for (const c of JSON.parse(process.argv[1])) codes.push(await main(c)); process.stdout.write("\\nCODES " + JSON.stringify(codes) + "\\n");`;
      const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", runner, JSON.stringify(commands)], { encoding: "utf8", cwd: REPO_ROOT, timeout: 100_000 });
      assert.deepEqual(JSON.parse(/CODES (.*)/.exec(r.stdout)?.[1] ?? "null"), [0, 0, 0, 0, 0, 0], r.stderr);
      const png = pngRasterizer() !== null;
      const expected: Record<string, [string, string][]> = {
        merge: [["merge-delta", "Relative weight change of the merge (‖ΔW‖ / ‖W‖)"]],
        quantize: [["quant-error", "RTN 4-bit g32: quantization error per module"]],
        bench: [["bench-latency", "Latency and memory: model"]],
        compare: [["compare-latency", "Latency and memory by configuration"], ["compare-perplexity", "Perplexity (lower is better)"]],
        ppl: [["perplexity-windows", "Perplexity per window"]],
      };
      for (const [dir, files] of Object.entries(expected)) {
        const names = files.flatMap(([n]) => [`${n}.svg`, `${n}.vl.json`, ...(png ? [`${n}.png`] : [])]);
        assert.deepEqual(readdirSync(join(plots, dir)).sort(), names.sort(), dir);
        for (const [n, title] of files) {
          assert.ok(chartTitles(readFileSync(join(plots, dir, `${n}.svg`), "utf8")).includes(title), `${dir}/${n}.svg: ${title}`);
          assert.ok(validate(JSON.parse(readFileSync(join(plots, dir, `${n}.vl.json`), "utf8"))), `${dir}/${n}.vl.json`);
          if (png) assert.deepEqual([...readFileSync(join(plots, dir, `${n}.png`)).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
        }
      }
      assert.match(r.stderr, /plots: .*merge-delta\.svg/);
      // bench --json keeps its fields and adds the per-token series
      const bench = JSON.parse(r.stdout.split("\n").find((l) => l.startsWith('{"label"'))!);
      for (const k of ["ttftMs", "decodeTokPerS", "latencyMs", "peakRssBytes", "memoryBytes", "modelBytes"]) assert.ok(k in bench, k);
      assert.equal(bench.perTokenMs.length, 3);
      assert.match(r.stdout, /--plot DIR +also save the result's plots into DIR/);
      assert.ok(existsSync(m2) && existsSync(q));
    });

    it("--plot on an impossible path fails before the work, naming the option", function () {
      const file = join(tmp.path, "a-file");
      writeFileSync(file, "x");
      const runner = `const { main } = await import(${JSON.stringify(join(REPO_ROOT, "lib/cli/main.ts"))}); process.exitCode = await main(process.argv.slice(1));`;
      const out = join(tmp.path, "never");
      const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", runner, "merge", "--base", base, "--adapter", adapter, "--out", out, "--quiet", "--plot", join(file, "sub")], { encoding: "utf8", cwd: REPO_ROOT });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /--plot .*a-file\/sub: cannot create the directory/);
      assert.equal(existsSync(out), false);
    });
  });
});
