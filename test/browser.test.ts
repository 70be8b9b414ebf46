import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, startNotebookServer } from "./helpers/notebook-server.js";
import { tempDir } from "./helpers/paths.js";

/** Debian's jupyter-notebook serves the committed, executed 03-benchmark notebook; headless Chromium opens it
 * and the plot SVGs must be in the page with a non-zero size. Screenshot: test-output/03-benchmark.png. */
const REPO = new URL("..", import.meta.url).pathname;
const NOTEBOOK = join(REPO, "notebooks/03-benchmark.ipynb");
// result displays carry text/html with the plots' SVGs inline (classic Notebook prefers text/html to
// image/svg+xml); plain plots show as .output_svg
const PLOTS = ".output_area .output_svg svg, .output_area .output_svg img, .output_area .output_html svg";

describe("real browser: jupyter-notebook + headless Chromium", function () {
  this.timeout(120_000);

  it("renders the executed 03-benchmark plots as SVGs with a size", async () => {
    const svgOutputs = JSON.parse(readFileSync(NOTEBOOK, "utf8")).cells.flatMap((c: { outputs?: { data?: Record<string, unknown> }[] }) => c.outputs ?? []).filter((o: { data?: Record<string, unknown> }) => o.data?.["image/svg+xml"]).length;
    assert.ok(svgOutputs >= 2, "the committed notebook carries executed plot outputs (refresh with LORALAB_WRITE_NOTEBOOKS=1)");
    const t = tempDir("loralab-browser-");
    const nbDir = join(t.path, "nb");
    mkdirSync(nbDir);
    copyFileSync(NOTEBOOK, join(nbDir, "03-benchmark.ipynb"));
    // the server gets temp Jupyter dirs: the loralab kernelspec (so no "kernel not found" dialog) and a
    // signature db in which the executed notebook is trusted (classic Notebook shows SVG only when trusted)
    const saved = { JUPYTER_PATH: process.env.JUPYTER_PATH, JUPYTER_DATA_DIR: process.env.JUPYTER_DATA_DIR };
    process.env.JUPYTER_PATH = join(t.path, "prefix/share/jupyter");
    process.env.JUPYTER_DATA_DIR = join(t.path, "data");
    const sh = (cmd: string, args: string[]) => {
      const r = spawnSync(cmd, args, { encoding: "utf8" });
      assert.equal(r.status, 0, `${cmd} ${args.join(" ")}: ${r.stderr}`);
    };
    sh(process.execPath, [join(REPO, "bin/loralab.js"), "kernel", "install", "--prefix", join(t.path, "prefix")]);
    sh("/usr/bin/python3", ["-c", "import sys, nbformat; from nbformat.sign import NotebookNotary; nb = nbformat.read(sys.argv[1], 4); NotebookNotary().sign(nb)", join(nbDir, "03-benchmark.ipynb")]);
    const restore = () => { for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v; };
    const server = await startNotebookServer(nbDir).finally(restore);
    const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 2400 } });
      await page.goto(server.url("notebooks/03-benchmark.ipynb"));
      mkdirSync(join(REPO, "test-output"), { recursive: true });
      try {
        await page.waitForSelector(PLOTS, { timeout: 60_000 });
      } catch (e) {
        await page.screenshot({ path: join(REPO, "test-output/03-benchmark-failed.png") });
        throw new Error(`no plot outputs in the page (screenshot test-output/03-benchmark-failed.png): ${(e as Error).message}\n${(await page.content()).slice(0, 2000)}`);
      }
      const sizes = await page.$$eval(PLOTS, (els) => els.map((e) => { const r = e.getBoundingClientRect(); return [r.width, r.height]; }));
      assert.ok(sizes.length >= svgOutputs, `${sizes.length} plot SVGs in the page, ${svgOutputs} in the notebook`);
      for (const [w, h] of sizes) assert.ok(w > 50 && h > 50, `plot size ${w}×${h}`);
      await page.screenshot({ path: join(REPO, "test-output/03-benchmark.png"), fullPage: true });
      assert.ok(existsSync(join(REPO, "test-output/03-benchmark.png")));
    } finally {
      await browser.close();
      await server.stop();
      t.cleanup();
    }
  });
});
