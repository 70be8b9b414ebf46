import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { generateGpt2Model, generateLlamaModel, generateLoraAdapter } from "../lib/fixtures/index.js";
import { ModelDir } from "../lib/io/model-dir.js";
import { loadAdapter } from "../lib/lora/adapter.js";
import { merge } from "../lib/lora/merge.js";
import { data, tempDir } from "./helpers/paths.js";
import { onTinyTmpfs } from "./helpers/tmpfs.js";

/** Independent float64 reference of SPEC §3: W + Σ w·s·(BA) (transposed for Conv1D/embedding), DoRA rows. */
async function reference(baseDir: string, adapters: { path: string; weight: number }[], name: string, src = name): Promise<Float64Array> {
  const base = await ModelDir.open(baseDir);
  const t = await base.read(src); await base.close();
  const [rows, cols] = t.shape;
  const w0 = Float64Array.from(t.toF32());
  const w = Float64Array.from(w0);
  for (const { path, weight } of adapters) {
    const a = await loadAdapter(path);
    const rep = a.replacements.get(name);
    if (rep) w.set(rep.toF32());
    const tt = a.trainableTokens.get(name);
    if (tt) tt.indices.forEach((idx, i) => w.set(tt.rows.toF32().subarray(i * cols, (i + 1) * cols), idx * cols));
    const m = a.modules.get(name);
    if (!m) continue;
    const A = m.A.toF32(), B = m.B.toF32(), r = m.r, s = m.scaling * weight;
    const tr = m.kind === "embedding" || m.fanInFanOut;
    const delta = new Float64Array(rows * cols);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += tr ? B[j * r + k] * A[k * rows + i] : B[i * r + k] * A[k * cols + j];
      delta[i * cols + j] = s * acc;
    }
    if (m.magnitude) {
      const mag = m.magnitude.toF32();
      assert.ok(!tr);
      for (let i = 0; i < rows; i++) {
        let ss = 0; for (let j = 0; j < cols; j++) ss += (w0[i * cols + j] + delta[i * cols + j]) ** 2;
        for (let j = 0; j < cols; j++) w[i * cols + j] = (mag[i] / Math.sqrt(ss)) * (w[i * cols + j] + delta[i * cols + j]);
      }
    } else for (let i = 0; i < w.length; i++) w[i] += delta[i];
  }
  return w;
}

async function compareAll(baseDir: string, adapters: { path: string; weight: number }[], out: string, tol = 2e-6) {
  const merged = await ModelDir.open(out);
  const base = await ModelDir.open(baseDir);
  const tiedBase = !base.has("lm_head.weight");
  let checked = 0;
  try {
    for (const name of merged.names()) {
      const got = (await merged.read(name)).toF32();
      const src = tiedBase && name === "lm_head.weight" ? base.lmHeadName() : name;
      const want = await reference(baseDir, adapters, name, src);
      let maxErr = 0, scale = 0;
      for (let i = 0; i < got.length; i++) { maxErr = Math.max(maxErr, Math.abs(got[i] - want[i])); scale = Math.max(scale, Math.abs(want[i])); }
      assert.ok(maxErr <= tol * Math.max(1, scale), `${name}: max error ${maxErr}`);
      checked++;
    }
  } finally { await merged.close(); await base.close(); }
  return checked;
}

describe("merge", function () {
  this.timeout(60_000);
  const tmp = tempDir();
  after(() => tmp.cleanup());

  for (const base of ["stories260K-hf", "stories260K-hf/sharded"])
    for (const ad of ["stories260K-lora-shakespeare", "stories260K-lora-rslora", "stories260K-dora"])
      it(`real adapter ${ad} into ${base}: every tensor matches float64`, async () => {
        const out = join(tmp.path, `${base.replace("/", "_")}-${ad}`);
        const adapters = [{ path: data(ad), weight: 1 }];
        const report = await merge({ base: data(base), adapters, out, dtype: "f32" });
        assert.ok(report.modules.length > 0 && report.modules.every((m) => m.relDelta > 0));
        assert.ok(await compareAll(data(base), adapters, out) > 0);
      });

  it("multi-adapter exact sum, embedding LoRA, trainable tokens, modules_to_save, tied untie", async () => {
    const b = join(tmp.path, "tb"), a1 = join(tmp.path, "a1"), a2 = join(tmp.path, "a2"), out = join(tmp.path, "tout");
    await generateLlamaModel(b, { hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 4, numKvHeads: 2, vocabSize: 50, dtype: "F32", seed: 1, tieWordEmbeddings: true });
    await generateLoraAdapter(a1, b, { r: 4, alpha: 8, targets: ["q_proj", "down_proj"], seed: 2, embedding: true });
    await generateLoraAdapter(a2, b, { r: 2, alpha: 4, targets: ["q_proj"], seed: 3, useRslora: true, trainableTokenIndices: [1, 7] });
    const adapters = [{ path: a1, weight: 0.7 }, { path: a2, weight: -0.3 }];
    const report = await merge({ base: b, adapters, out, dtype: "auto" });
    assert.equal(report.untied, true);
    assert.equal(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).tie_word_embeddings, false);
    assert.ok(await compareAll(b, adapters, out) >= 10);
  });

  it("tensors over a kernel region (128 MB) merge in row chunks: 600,000-token embedding and lm_head match float64", async function () {
    this.timeout(120_000);
    const b = join(tmp.path, "big"), a = join(tmp.path, "biga"), out = join(tmp.path, "bigout");
    // 600,000 × 64 float32 = 154 MB per tensor: a 524,288-row chunk, then 75,712 rows
    await generateLlamaModel(b, { hiddenSize: 64, intermediateSize: 128, numLayers: 1, numHeads: 4, numKvHeads: 2, vocabSize: 600_000, dtype: "F32", seed: 4 });
    await generateLoraAdapter(a, b, { r: 4, alpha: 8, targets: ["lm_head", "q_proj"], seed: 5, embedding: true });
    const adapters = [{ path: a, weight: 1 }];
    const report = await merge({ base: b, adapters, out });
    assert.deepEqual(report.modules.map((m) => m.tensor).filter((t) => !t.includes("layers")).sort(), ["lm_head.weight", "model.embed_tokens.weight"]);
    assert.ok(await compareAll(b, adapters, out) >= 3);
    // DoRA on the chunked lm_head: each chunk's rows get their norms, then their scaled merge
    const d = join(tmp.path, "bigdora"), outD = join(tmp.path, "bigdoraout");
    await generateLoraAdapter(d, b, { r: 4, alpha: 8, targets: ["lm_head", "q_proj"], seed: 6, useDora: true });
    await merge({ base: b, adapters: [{ path: d, weight: 1 }], out: outD, dtype: "f32" });
    assert.ok(await compareAll(b, [{ path: d, weight: 1 }], outD) >= 3);
    await rm(outD, { recursive: true });
    // an abort while a chunked tensor is under way stops it at the next chunk: no output left
    const ctl = new AbortController(), out2 = join(tmp.path, "bigout2");
    await assert.rejects(merge({ base: b, adapters, out: out2, signal: ctl.signal, onProgress: (p) => { if (p.label === "lm_head.weight") ctl.abort(); } }),
      (e: Error) => e.name === "AbortError");
    assert.equal(existsSync(out2), false);
    await rm(b, { recursive: true }); await rm(out, { recursive: true });
  });

  it("lora_bias and modules_to_save (untied qwen2 with q/k/v biases)", async () => {
    const b = join(tmp.path, "q"), a = join(tmp.path, "qa"), out = join(tmp.path, "qout");
    await generateLlamaModel(b, { hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 4, numKvHeads: 2, vocabSize: 50, dtype: "F32", seed: 8, modelType: "qwen2" });
    await generateLoraAdapter(a, b, { r: 4, alpha: 8, targets: ["q_proj", "v_proj"], seed: 9, loraBias: true, modulesToSave: ["lm_head"] });
    const rep = await merge({ base: b, adapters: [{ path: a, weight: 0.5 }], out });
    assert.deepEqual(rep.replaced, ["lm_head.weight"]);
    const ad = await loadAdapter(a), base = await ModelDir.open(b), m = await ModelDir.open(out);
    try {
      const mod = ad.modules.get("model.layers.0.self_attn.q_proj.weight")!;
      const b0 = (await base.read("model.layers.0.self_attn.q_proj.bias")).toF32(), lb = mod.bias!.toF32();
      const got = (await m.read("model.layers.0.self_attn.q_proj.bias")).toF32();
      for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - (b0[i] + 0.5 * mod.scaling * lb[i])) < 1e-6);
      assert.deepEqual(await m.readBytes("lm_head.weight"), ad.replacements.get("lm_head.weight")!.bytes());
      assert.deepEqual(await m.readBytes("model.layers.0.mlp.up_proj.weight"), await base.readBytes("model.layers.0.mlp.up_proj.weight"));
    } finally { await base.close(); await m.close(); }
  });

  it("GPT-2 Conv1D (fan_in_fan_out) and bf16 output rounding", async () => {
    const b = join(tmp.path, "g"), a = join(tmp.path, "ga"), out = join(tmp.path, "gout");
    await generateGpt2Model(b, { hiddenSize: 32, numLayers: 1, numHeads: 2, vocabSize: 40, dtype: "F32", seed: 5 });
    await generateLoraAdapter(a, b, { r: 4, alpha: 16, targets: ["c_attn", "c_fc"], seed: 6 });
    await merge({ base: b, adapters: [{ path: a, weight: 1 }], out });
    assert.ok(await compareAll(b, [{ path: a, weight: 1 }], out) > 0);
    const out16 = join(tmp.path, "gout16");
    const rep = await merge({ base: b, adapters: [{ path: a, weight: 1 }], out: out16, dtype: "bf16" });
    const m = await ModelDir.open(out16);
    assert.equal(m.entry("transformer.h.0.attn.c_attn.weight").dtype, "BF16");
    await m.close();
    assert.ok(rep.modules.every((x) => x.roundingError > 0 && x.roundingError < 2 ** -8));
  });

  it("bad input: truncated and lying safetensors name the file; no output", async () => {
    const { copyFileSync, mkdirSync, truncateSync, statSync, openSync, writeSync, closeSync } = await import("node:fs");
    for (const kind of ["truncated", "lying"]) {
      const b = join(tmp.path, kind);
      mkdirSync(b);
      for (const f of readdirSync(data("stories260K-hf"))) if (f.endsWith(".json") || f.endsWith(".safetensors")) copyFileSync(data("stories260K-hf", f), join(b, f));
      const f = join(b, "model.safetensors");
      if (kind === "truncated") truncateSync(f, statSync(f).size - 100);
      else { // rewrite the first data_offsets end digit inside the header so offsets no longer tile the data
        const buf = readFileSync(f); const n = Number(buf.readBigUInt64LE(0)); const h = buf.subarray(8, 8 + n).toString("utf8");
        const i = h.indexOf("data_offsets\":[0,") + 17; const fd = openSync(f, "r+"); writeSync(fd, Buffer.from(h[i] === "9" ? "8" : "9"), 0, 1, 8 + i); closeSync(fd);
      }
      const out = join(tmp.path, kind + "-out");
      await assert.rejects(merge({ base: b, adapters: [{ path: data("stories260K-lora-shakespeare") }], out }), (e: Error) => e.message.includes("model.safetensors"));
      assert.equal(existsSync(out), false);
    }
  });

  it("full disk (a real 256 KiB tmpfs): clear error, nothing left on it", async function () {
    await onTinyTmpfs(this, tmp.path, "tiny", "256k", async (mnt) => {
      await assert.rejects(merge({ base: data("stories260K-hf"), adapters: [{ path: data("stories260K-lora-shakespeare") }], out: join(mnt, "out") }),
        (e: Error) => /ENOSPC|space/i.test(e.message) && e.message.includes(join(mnt, "out")));
      assert.deepEqual(readdirSync(mnt), []);
    });
  });

  it("bad input: shape mismatch, missing module, NaN — no output left behind", async () => {
    const b = join(tmp.path, "tb"), other = join(tmp.path, "other"), oa = join(tmp.path, "oa");
    await generateLlamaModel(other, { hiddenSize: 48, intermediateSize: 64, numLayers: 1, numHeads: 4, numKvHeads: 2, vocabSize: 50, dtype: "F32", seed: 1 });
    await generateLoraAdapter(oa, other, { r: 2, alpha: 2, targets: ["q_proj"], seed: 1 });
    const out = join(tmp.path, "bad");
    await assert.rejects(merge({ base: b, adapters: [{ path: oa }], out }), /q_proj.*another model/);
    await assert.rejects(merge({ base: b, adapters: [{ path: data("lora-gpt2-fmi") }], out }), /c_attn.*has no tensor/);
    await assert.rejects(merge({ base: b, adapters: [{ path: join(tmp.path, "a1"), weight: Infinity }], out }), /non-finite/);
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(tmp.path).filter((n) => n.startsWith(".bad")), []);
  });
});
