import assert from "node:assert/strict";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { installedKernel, KERNEL_TESTS, pythonHas, runPython, type KernelEnv } from "./kernel/harness.js";
import { tmpdir } from "node:os";
import { data, SHARED_DATA } from "./helpers/paths.js";

/**
 * Executes every workflow notebook headless (nbclient + the loralab kernel) on the real data: stories260K,
 * the Shakespeare adapter, held-out tinyshakespeare (last 10 %) for perplexity, the first 90 % for
 * calibration. LORALAB_WRITE_NOTEBOOKS=1 copies the executed notebooks back into notebooks/ (refreshes the
 * committed outputs).
 */
type Output = { output_type: string; data?: Record<string, unknown>; ename?: string; evalue?: string; traceback?: string[] };
type Cell = { cell_type: string; source: string | string[]; outputs?: Output[] };
const NOTEBOOKS = ["01-merge", "02-quantize", "03-benchmark"];
const REPO = join(KERNEL_TESTS, "../..");

describe("workflow notebooks executed by nbclient on stories260K", function () {
  this.timeout(600_000);
  let k: KernelEnv;
  const executed = new Map<string, Cell[]>();

  before(async () => {
    assert.ok(pythonHas(["nbclient", "nbformat"]), "python3-nbclient is not installed (.ci/run installs it)");
    k = installedKernel();
    const text = readFileSync(data("tinyshakespeare/tinyshakespeare.txt"), "utf8");
    const cut = Math.floor(text.length * 0.9);
    writeFileSync(join(k.root, "eval.txt"), text.slice(cut));
    writeFileSync(join(k.root, "calib.txt"), text.slice(0, cut));
    Object.assign(k.env, {
      LORALAB_MODEL: data("stories260K-hf"),
      LORALAB_ADAPTER: data("stories260K-lora-shakespeare"),
      LORALAB_TEXT: join(k.root, "eval.txt"),
      LORALAB_CALIB: join(k.root, "calib.txt"),
    });
  });
  after(() => k?.cleanup());

  for (const name of NOTEBOOKS) {
    it(`${name} runs top to bottom without errors`, async () => {
      const src = join(REPO, "notebooks", `${name}.ipynb`), out = join(k.root, `${name}.ipynb`);
      const r = await runPython(["run_notebook.py", src, out], { env: { ...k.env, LORALAB_CELL_TIMEOUT: "300" }, cwd: KERNEL_TESTS, timeoutMs: 590_000 });
      assert.equal(r.code, 0, r.output);
      const cells: Cell[] = JSON.parse(readFileSync(out, "utf8")).cells;
      const errors = cells.flatMap((c) => c.outputs ?? []).filter((o) => o.output_type === "error");
      assert.deepEqual(errors.map((e) => `${e.ename}: ${e.evalue}`), []);
      executed.set(name, cells);
      if (process.env.LORALAB_WRITE_NOTEBOOKS === "1") copyFileSync(out, src);
    });
  }

  const mimes = (name: string) => {
    const cells = executed.get(name);
    assert.ok(cells, `${name} did not run`);
    return cells.filter((c) => c.cell_type === "code").map((c) => new Set((c.outputs ?? []).flatMap((o) => Object.keys(o.data ?? {}))));
  };
  const plots = (name: string) => mimes(name).filter((m) => m.has("application/vnd.vegalite.v5+json") && m.has("image/svg+xml")).length;
  const tables = (name: string) => mimes(name).filter((m) => m.has("text/html")).length;

  it("imports loralab by name and keeps machine paths out of the outputs", () => {
    for (const name of NOTEBOOKS) {
      const cells = executed.get(name);
      assert.ok(cells, `${name} did not run`);
      const code = cells.filter((c) => c.cell_type === "code").map((c) => [c.source].flat().join("")).join("\n");
      assert.match(code, /from "loralab"/, name);
      assert.doesNotMatch(code, /dist\//, `${name} imports the built files by path`);
      const outputs = JSON.stringify(cells.map((c) => c.outputs ?? []));
      for (const path of [REPO, SHARED_DATA, tmpdir()]) assert.ok(!outputs.includes(path), `${name}: an output contains ${path}`);
    }
  });
  it("01-merge shows tables and the ‖ΔW‖/‖W‖ bars + histograms (Vega-Lite + SVG)", () => {
    assert.ok(tables("01-merge") >= 2, "HTML tables");
    assert.ok(plots("01-merge") >= 2, "plots");
  });
  it("02-quantize shows the method table, perplexity bars, the sweep (table + bound chart) and the live layer histogram", () => {
    assert.ok(tables("02-quantize") >= 2);
    assert.ok(plots("02-quantize") >= 3);
    const sweepOut = executed.get("02-quantize")!.flatMap((c) => c.outputs ?? []).find((o) => JSON.stringify(o.data?.["application/vnd.vegalite.v5+json"] ?? "").includes('"group_size"'));
    assert.ok(sweepOut, "a spec with the group_size parameter");
    assert.match(String(sweepOut!.data!["text/html"]), /<table[\s\S]*<svg/);
    // the chart on its own (no text/html): JupyterLab renders the interactive Vega-Lite spec
    assert.ok(executed.get("02-quantize")!.flatMap((c) => c.outputs ?? []).some((o) => !o.data?.["text/html"] && JSON.stringify(o.data?.["application/vnd.vegalite.v5+json"] ?? "").includes('"group_size"')), "the interactive chart alone");
    assert.ok(mimes("02-quantize").some((m) => m.has("application/vnd.jupyter.widget-view+json")), "the group-size slider");
  });
  it("03-benchmark shows the seed's table for the four configurations, latency and perplexity plots", () => {
    assert.ok(tables("03-benchmark") >= 2);
    assert.ok(plots("03-benchmark") >= 2);
    const html = executed.get("03-benchmark")!.flatMap((c) => c.outputs ?? []).map((o) => String(o.data?.["text/html"] ?? "")).join("\n");
    for (const config of ["base", "base + dynamic LoRA", "merged", "merged + quantized"]) assert.ok(html.includes(config), config);
    // compare's own display: the latency dashboard with the per-token panel, and the perplexity bars
    const specs = executed.get("03-benchmark")!.flatMap((c) => c.outputs ?? []).map((o) => JSON.stringify(o.data?.["application/vnd.vegalite.v5+json"] ?? "")).join("\n");
    for (const title of ["TTFT (ms)", "decode tokens/s", "per-token latency over the generation", "perplexity"]) assert.ok(specs.includes(title), title);
  });
});

describe("workflow notebooks offline (no LORALAB_* set: generated fixtures)", function () {
  this.timeout(600_000);
  let k: KernelEnv;
  before(() => {
    k = installedKernel();
    for (const v of ["LORALAB_MODEL", "LORALAB_ADAPTER", "LORALAB_TEXT", "LORALAB_CALIB"]) delete k.env[v];
  });
  after(() => k?.cleanup());

  for (const name of NOTEBOOKS) {
    it(`${name} runs top to bottom on the generated model`, async () => {
      const out = join(k.root, `${name}.ipynb`);
      const r = await runPython(["run_notebook.py", join(REPO, "notebooks", `${name}.ipynb`), out], { env: { ...k.env, LORALAB_CELL_TIMEOUT: "300" }, cwd: KERNEL_TESTS, timeoutMs: 590_000 });
      assert.equal(r.code, 0, r.output);
      const cells: Cell[] = JSON.parse(readFileSync(out, "utf8")).cells;
      const outputs = cells.flatMap((c) => c.outputs ?? []);
      assert.deepEqual(outputs.filter((o) => o.output_type === "error").map((e) => `${e.ename}: ${e.evalue}`), []);
      assert.match(JSON.stringify(outputs), /generated fixtures/);
      assert.ok(outputs.some((o) => o.data?.["image/svg+xml"]), "plots");
    });
  }
});

describe("sweep on generated fixtures", function () {
  this.timeout(120_000);
  it("skips group sizes the model cannot hold, caches per combination, and orders the errors by bits", async () => {
    const { notebookInputs } = await import("../lib/workflow/inputs.js");
    const { sweep } = await import("../lib/workflow/sweep.js");
    const inputs = await notebookInputs({});
    const cache = new Map();
    const events: number[] = [];
    const r = await sweep(inputs.model, { method: "rtn", bits: [8, 3], groupSizes: [32, 48, -1], text: inputs.text, cache, onProgress: (e) => events.push(e.done) });
    assert.deepEqual(r.skipped.map((s) => s.groupSize), [48]);
    assert.match(r.skipped[0].reason, /in_features 64, not a multiple of 48/);
    assert.deepEqual(r.points.map((p) => [p.bits, p.groupSize]), [[8, 32], [8, -1], [3, 32], [3, -1]]);
    assert.deepEqual(events, [1, 2, 3, 4]);
    // 8-bit RTN barely moves perplexity; 3-bit moves the weights far more than 8-bit
    for (const p of r.points.filter((p) => p.bits === 8)) assert.ok(Math.abs(p.ppl / r.basePpl - 1) < 0.01, `8-bit ppl ${p.ppl} vs float ${r.basePpl}`);
    assert.ok(r.points[2].relError > 10 * r.points[0].relError);
    // error values are W − Ŵ: their RMS over all linears is of the order of relError·RMS(W) (0.02-std fixture weights)
    const e = r.points[3].error as Float32Array;
    const rms = Math.sqrt(e.reduce((s, x) => s + x * x, 0) / e.length);
    assert.ok(rms > 0.1 * 0.02 * r.points[3].relError && rms < 10 * 0.02 * r.points[3].relError, `rms ${rms}`);
    const again = await sweep(inputs.model, { method: "rtn", bits: [8, 3], groupSizes: [32, -1], text: inputs.text, cache });
    assert.ok(again.points.every((p, i) => p === r.points[i]), "second sweep served from the cache");
    const bundle = await (r as any)[Symbol.for("Jupyter.display")]();
    assert.ok(bundle["application/vnd.vegalite.v5+json"].params.some((p: { name: string }) => p.name === "group_size") && bundle["image/svg+xml"].includes("<svg"));
    // every frontend that prefers text/html (JupyterLab, classic) sees the table, the skipped size and the chart
    assert.match(bundle["text/html"], /<table[\s\S]*Skipped group size 48[\s\S]*<svg/);
    // the chart alone carries no text/html, so JupyterLab renders its Vega-Lite spec (the interactive select)
    const chart = await r.chart.bundle();
    assert.ok(chart["application/vnd.vegalite.v5+json"] && !("text/html" in chart));
  });
});
