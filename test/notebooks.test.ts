import assert from "node:assert/strict";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { installedKernel, KERNEL_TESTS, pythonHas, runPython, type KernelEnv } from "./kernel/harness.js";
import { data } from "./helpers/paths.js";

/**
 * Executes every workflow notebook headless (nbclient + the loralab kernel) on the real data: stories260K,
 * the Shakespeare adapter, held-out tinyshakespeare (last 10 %) for perplexity, the first 90 % for
 * calibration. LORALAB_WRITE_NOTEBOOKS=1 copies the executed notebooks back into notebooks/ (refreshes the
 * committed outputs).
 */
type Output = { output_type: string; data?: Record<string, unknown>; ename?: string; evalue?: string; traceback?: string[] };
type Cell = { cell_type: string; outputs?: Output[] };
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

  it("01-merge shows tables and the ‖ΔW‖/‖W‖ bars + histograms (Vega-Lite + SVG)", () => {
    assert.ok(tables("01-merge") >= 2, "HTML tables");
    assert.ok(plots("01-merge") >= 2, "plots");
  });
  it("02-quantize shows the method table, perplexity bars, the sweep (table + bound chart) and the live layer histogram", () => {
    assert.ok(tables("02-quantize") >= 2);
    assert.ok(plots("02-quantize") >= 3);
    const sweepOut = executed.get("02-quantize")!.flatMap((c) => c.outputs ?? []).find((o) => JSON.stringify(o.data?.["application/vnd.vegalite.v5+json"] ?? "").includes('"group_size"'));
    assert.ok(sweepOut, "a spec with the group_size parameter");
    assert.match(String(sweepOut!.data!["text/html"]), /<table/);
    assert.ok(mimes("02-quantize").some((m) => m.has("application/vnd.jupyter.widget-view+json")), "the group-size slider");
  });
  it("03-benchmark shows the seed's table for the four configurations, latency and perplexity plots", () => {
    assert.ok(tables("03-benchmark") >= 2);
    assert.ok(plots("03-benchmark") >= 2);
    const html = executed.get("03-benchmark")!.flatMap((c) => c.outputs ?? []).map((o) => String(o.data?.["text/html"] ?? "")).join("\n");
    for (const config of ["base", "base + dynamic LoRA", "merged", "merged + quantized"]) assert.ok(html.includes(config), config);
  });
});
