import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { installedKernel, KERNEL_TESTS, pythonHas, runPython, type KernelEnv } from "./kernel/harness.js";

type Output = { output_type: string; name?: string; text?: string | string[]; data?: Record<string, unknown>; ename?: string; evalue?: string; traceback?: string[] };
const text = (t: unknown) => (Array.isArray(t) ? t.join("") : String(t));

/** test/kernel/smoke.ipynb executed headless by nbclient, as a user's notebook would be. */
describe("kernel: notebook executed by nbclient", function () {
  this.timeout(120_000);
  let k: KernelEnv;
  let cells: { source: string | string[]; outputs: Output[]; execution_count: number | null }[] = [];
  let metadata: Record<string, any> = {};

  before(async () => {
    assert.ok(pythonHas(["nbclient", "nbformat"]), "python3-nbclient is not installed (.ci/run installs it)");
    k = installedKernel();
    const out = join(k.root, "executed.ipynb");
    const r = await runPython(["run_notebook.py", join(KERNEL_TESTS, "smoke.ipynb"), out], { env: k.env, cwd: KERNEL_TESTS });
    assert.equal(r.code, 0, r.output);
    const nb = JSON.parse(readFileSync(out, "utf8"));
    cells = nb.cells;
    metadata = nb.metadata;
  });
  after(() => k?.cleanup());

  it("runs every cell in order", () => assert.deepEqual(cells.map((c) => c.execution_count), [1, 2, 3, 4, 5, 6, 7, 8]));
  it("streams stdout", () => assert.deepEqual(cells[0].outputs.map((o) => [o.output_type, o.name, text(o.text)]), [["stream", "stdout", "hello, notebook\n"]]));
  it("displays markdown", () => assert.equal(text(cells[1].outputs[0].data?.["text/markdown"]), "**bold** text"));
  it("uses a variable typed in an earlier cell", () => assert.equal(text(cells[2].outputs[0].data?.["text/plain"]), "10"));
  it("applies update_display_data to the displayed output", () => {
    assert.equal(cells[3].outputs.length, 1);
    assert.equal(text(cells[3].outputs[0].data?.["text/plain"]), "replaced");
  });
  it("shows a widget and saves its state in the notebook", () => {
    const view = cells[4].outputs[0].data?.["application/vnd.jupyter.widget-view+json"] as { model_id: string };
    const state = metadata.widgets["application/vnd.jupyter.widget-state+json"].state[view.model_id];
    assert.equal(state.model_name, "SelectionSliderModel");
    assert.deepEqual(state.state._options_labels, ["32", "64", "128"]);
    assert.equal(state.state.index, 1);
  });
  it("renders a Vega-Lite spec and returns the last value", () => {
    const spec = cells[5].outputs.find((o) => o.output_type === "display_data")?.data?.["application/vnd.vegalite.v5+json"] as { data: { values: { g: number; err: number }[] } };
    assert.deepEqual(spec.data.values.map((r) => r.err), [1 / 32, 1 / 64, 1 / 128]);
    assert.equal(text(cells[5].outputs.find((o) => o.output_type === "execute_result")?.data?.["text/plain"]), "3");
  });
  it("awaits a Promise display bundle, for display() and for the cell's value", () => {
    const svg = "<svg><rect width='4' height='4'/></svg>";
    assert.deepEqual(cells[6].outputs.map((o) => [o.output_type, text(o.data?.["image/svg+xml"])]), [["display_data", svg], ["execute_result", svg]]);
  });
  it("reports an error with the cell's line", () => {
    const err = cells[7].outputs[0];
    assert.equal(err.output_type, "error");
    assert.equal(err.evalue, "expected failure");
    assert.match(err.traceback!.join("\n"), /Cell In\[8\], line 1, column 7/);
  });
  it("records the kernel language in the notebook", () => assert.equal(metadata.language_info.name, "typescript"));
});
