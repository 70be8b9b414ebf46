import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { cli } from "./helpers/cli.js";
import { tempDir } from "./helpers/paths.js";

interface Row { config: string; bench: { modelBytes: number }; perplexity: { ppl: number; tokens: number } }

describe("loralab demo (the main job) on generated inputs", function () {
  this.timeout(300_000);
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it("merges, quantizes (GPTQ 4-bit), compares the four configurations and writes the report", () => {
    const out = join(tmp.path, "demo");
    const r = cli("demo", "--out", out, "--calib-samples", "8", "--repeats", "1", "--max-new-tokens", "8", "--max-tokens", "1024", "--json", "--quiet");
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    const rows: Row[] = res.compare.rows;
    assert.deepEqual(rows.map((x) => x.config), ["base", "base + dynamic LoRA", "merged", "merged + quantized"]);
    const [base, dynamic, merged, quant] = rows.map((x) => x.perplexity.ppl);
    // the LoRA branch in the graph and the merged weights are the same function up to float32 rounding
    assert.ok(Math.abs(dynamic - merged) / merged < 1e-4, `dynamic ${dynamic} vs merged ${merged}`);
    assert.ok(Math.abs(base - merged) / merged > 1e-3, "the adapter changes the model");
    assert.ok(Math.abs(quant - merged) / merged < 0.05, `4-bit ${quant} vs merged ${merged}`);
    assert.ok(rows.every((x) => x.perplexity.tokens > 500));
    // 28 linears of 4-bit g128 (+ fp16 scales) instead of fp32; embeddings, lm_head and norms stay fp32
    assert.equal(res.quantize.method, "gptq");
    assert.equal(res.quantize.modules.length, 28);
    assert.ok(quant > 0 && rows[3].bench.modelBytes < rows[2].bench.modelBytes / 3);
    // the report: page with the seed's table and inline plots, SVG files, the same JSON
    const html = readFileSync(join(out, "report", "report.html"), "utf8");
    for (const c of ["base + dynamic LoRA", "merged + quantized", "<svg", "Latency and memory"]) assert.ok(html.includes(c), c);
    const svgs = readdirSync(join(out, "report", "plots")).filter((f) => f.endsWith(".svg"));
    assert.ok(svgs.length >= 4, svgs.join(", "));
    const saved = JSON.parse(readFileSync(join(out, "report", "results.json"), "utf8"));
    assert.deepEqual(saved.compare.rows.map((x: Row) => x.perplexity.ppl), [base, dynamic, merged, quant]);
    assert.ok(existsSync(join(out, "merged", "config.json")) && existsSync(join(out, "quantized", "quantize_config.json")));
  });

  it("refuses an own base model without an evaluation text, before any work", () => {
    const r = cli("demo", "--base", join(tmp.path, "nowhere"), "--out", join(tmp.path, "x"), "--quiet");
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--text FILE/);
    assert.equal(existsSync(join(tmp.path, "x")), false);
  });
});
