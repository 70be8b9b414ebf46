import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { REPO_ROOT, tempDir } from "./helpers/paths.js";

/**
 * The public entry points `loralab` and `loralab/kernel`, imported the way users import them: by package name,
 * which resolves through package.json "exports" (self-reference) to the built dist/. Run `npx tsc -p .` first.
 */
type Api = typeof import("loralab");

/** Independent safetensors reader for F32 tensors (8-byte LE header length, JSON header, raw data). */
function readF32(file: string, name: string): { shape: number[]; values: Float64Array } {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  const e = header[name];
  assert.ok(e, `${file} has no ${name}`);
  assert.equal(e.dtype, "F32");
  const [a, b] = e.data_offsets as [number, number];
  const bytes = buf.subarray(8 + n + a, 8 + n + b);
  const values = new Float64Array(bytes.length / 4);
  for (let i = 0; i < values.length; i++) values[i] = bytes.readFloatLE(i * 4);
  return { shape: e.shape, values };
}

describe("public API (import from \"loralab\")", function () {
  this.timeout(60_000);
  let api: Api;

  before(async function () {
    assert.ok(existsSync(join(REPO_ROOT, "dist/lib/index.js")), "dist/lib/index.js is missing: run `npx tsc -p tsconfig.json` first");
    api = await import("loralab");
  });

  it("resolves to the built dist through package.json exports", async () => {
    // a plain node process in the repo root, as a user would run it (tsx is not involved)
    const script = 'for (const s of ["loralab", "loralab/kernel"]) console.log(import.meta.resolve(s)); const m = await import("loralab"); console.log(typeof m.merge);';
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: REPO_ROOT, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), [pathToFileURL(join(REPO_ROOT, "dist/lib/index.js")).href, pathToFileURL(join(REPO_ROOT, "dist/kernel/display-api.js")).href, "function"]);
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8"));
    for (const entry of Object.values(pkg.exports as Record<string, string | Record<string, string>>))
      for (const file of typeof entry === "string" ? [entry] : Object.values(entry)) assert.ok(existsSync(join(REPO_ROOT, file)), file);
  });

  it("exposes the key functions and classes of every area", () => {
    const expected = [
      "SafetensorsFile", "saveTensors", "ModelDir", "loadConfig", "Tensor", "tensorStats", "loadAdapter", "merge", "MergeReport",
      "quantizeModel", "quantizeRtn", "quantizeRtnFast", "dequantize", "gptqQuantize", "prepareHessian", "QuantReport", "writeArtifact", "loadModel", "generate",
      "TextTokenizer", "createSession", "parseDevice", "perplexity", "benchmark", "compare", "Plot", "weightHistogram",
      "mergeDeltaBars", "latencyDashboard", "perplexityBars", "groupSizeSweepChart", "writeReport", "sweep", "notebookInputs",
      "generateLlamaModel", "generateLoraAdapter", "LoralabError", "runPipeline", "mergePlots", "quantPlots", "comparePlots",
    ];
    const a = api as unknown as Record<string, unknown>;
    assert.deepEqual(expected.filter((n) => typeof a[n] !== "function"), []);
    assert.equal(api.JUPYTER_DISPLAY, Symbol.for("Jupyter.display"));
  });

  it("loralab/kernel exports display, updateDisplay, clearOutput, input and widgets", async () => {
    const k = await import("loralab/kernel");
    for (const f of [k.display, k.display.html, k.display.vegalite, k.updateDisplay, k.clearOutput, k.input]) assert.equal(typeof f, "function");
    assert.equal(typeof k.widgets.IntSlider, "function");
  });

  it("merges a generated adapter: one tensor matches W + (α/r)·B·A in float64, and the report's ‖ΔW‖/‖W‖", async () => {
    const t = tempDir("loralab-api-");
    try {
      const model = join(t.path, "model"), adapter = join(t.path, "adapter"), out = join(t.path, "merged");
      await api.generateLlamaModel(model, { hiddenSize: 32, intermediateSize: 48, numLayers: 1, numHeads: 4, numKvHeads: 2, vocabSize: 40, dtype: "F32", seed: 7 });
      await api.generateLoraAdapter(adapter, model, { r: 4, alpha: 12, targets: ["q_proj", "down_proj"], seed: 8 });
      const report = await api.merge({ base: model, adapters: [{ path: adapter }], out });
      assert.ok(report instanceof api.MergeReport);

      const name = "model.layers.0.mlp.down_proj";
      const W = readF32(join(model, "model.safetensors"), `${name}.weight`);
      const A = readF32(join(adapter, "adapter_model.safetensors"), `base_model.model.${name}.lora_A.weight`);
      const B = readF32(join(adapter, "adapter_model.safetensors"), `base_model.model.${name}.lora_B.weight`);
      const merged = readF32(join(out, "model.safetensors"), `${name}.weight`);
      const [N, K] = W.shape, r = 4, s = 12 / 4;
      assert.deepEqual([N, K, A.shape[0], B.shape[1]], [32, 48, r, r]);
      let maxErr = 0, dd = 0, ww = 0;
      for (let i = 0; i < N; i++)
        for (let j = 0; j < K; j++) {
          let acc = 0;
          for (let k = 0; k < r; k++) acc += B.values[i * r + k] * A.values[k * K + j];
          const ref = W.values[i * K + j] + s * acc;
          maxErr = Math.max(maxErr, Math.abs(merged.values[i * K + j] - ref));
          dd += (s * acc) ** 2;
          ww += W.values[i * K + j] ** 2;
        }
      assert.ok(dd > 0, "the fixture adapter moves the weights");
      assert.ok(maxErr < 1e-6, `max |merged − reference| = ${maxErr}`);
      const row = report.modules.find((m) => m.tensor === `${name}.weight`);
      assert.ok(row, `report row for ${name}`);
      assert.ok(Math.abs(row.relDelta / Math.sqrt(dd / ww) - 1) < 1e-4, `relDelta ${row.relDelta} vs ${Math.sqrt(dd / ww)}`);
      // untouched tensors come through unchanged
      const norm = "model.layers.0.input_layernorm.weight";
      assert.deepEqual(readF32(join(out, "model.safetensors"), norm).values, readF32(join(model, "model.safetensors"), norm).values);
    } finally {
      t.cleanup();
    }
  });

  it("loads the merged fixture and scores text: merged perplexity = base + dynamic LoRA perplexity", async () => {
    const inputs = await api.notebookInputs({});
    const t = tempDir("loralab-api-");
    try {
      const out = join(t.path, "merged");
      await api.merge({ base: inputs.model, adapters: [{ path: inputs.adapter }], out });
      const ppl = async (spec: { model: string; adapter?: string }) => {
        const { lm, tokenizer } = await api.loadModel(spec);
        try {
          return (await api.perplexity(lm, tokenizer.encode(inputs.text.slice(0, 800), { bos: false }), { bos: tokenizer.bosId })).ppl;
        } finally {
          await lm.release();
        }
      };
      const dynamic = await ppl({ model: inputs.model, adapter: inputs.adapter });
      const merged = await ppl({ model: out });
      const base = await ppl({ model: inputs.model });
      assert.ok(Math.abs(merged / dynamic - 1) < 1e-4, `merged ${merged} vs dynamic ${dynamic}`);
      assert.notEqual(base.toFixed(4), merged.toFixed(4), "the adapter changes the model");
    } finally {
      t.cleanup();
      // notebookInputs' fixtures live in their own temp dir (beside the model)
      rmSync(join(inputs.model, ".."), { recursive: true, force: true });
    }
  });
});
