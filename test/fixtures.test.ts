import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { generateGpt2Model, generateLlamaModel, generateLoraAdapter, normals } from "../lib/fixtures/index.js";
import { ModelDir } from "../lib/io/model-dir.js";
import { SafetensorsFile } from "../lib/io/safetensors.js";
import { tensorStats } from "../lib/tensor/stats.js";
import { tempDir } from "./helpers/paths.js";

describe("fixtures", () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const llama = { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 256, dtype: "BF16" as const, seed: 7 };

  it("normals have mean 0 and std 1", () => {
    const s = tensorStats(normals(100_000, 1));
    assert.ok(Math.abs(s.mean) < 0.02 && Math.abs(s.std - 1) < 0.02, JSON.stringify(s));
  });

  it("Llama model: config, shapes, scales, determinism, sharding", async () => {
    const a = join(tmp.path, "a"), b = join(tmp.path, "b"), c = join(tmp.path, "c");
    await generateLlamaModel(a, llama);
    await generateLlamaModel(b, llama);
    await generateLlamaModel(c, { ...llama, maxShardBytes: 40_000 });
    assert.deepEqual(await readFile(join(a, "model.safetensors")), await readFile(join(b, "model.safetensors")));
    const m = await ModelDir.open(a), s = await ModelDir.open(c);
    try {
      assert.equal(m.config.modelType, "llama");
      assert.deepEqual(m.entry("model.layers.1.self_attn.k_proj.weight").shape, [32, 64]);
      assert.deepEqual(m.entry("lm_head.weight").shape, [256, 64]);
      const q = tensorStats((await m.read("model.layers.0.mlp.up_proj.weight")).toF32());
      assert.ok(Math.abs(q.std - 0.02) < 0.002, `std ${q.std}`);
      const n = tensorStats((await m.read("model.norm.weight")).toF32());
      assert.ok(Math.abs(n.mean - 1) < 0.01);
      assert.ok(s.files.length > 1);
      assert.deepEqual(s.names().sort(), m.names().sort());
      for (const name of m.names()) assert.deepEqual(await s.readBytes(name), await m.readBytes(name), name);
    } finally { await m.close(); await s.close(); }
  });

  it("LoRA adapter with PEFT keys and non-zero B; GPT-2 Conv1D shapes", async () => {
    const base = join(tmp.path, "a"), ad = join(tmp.path, "ad");
    await generateLoraAdapter(ad, base, { r: 4, alpha: 8, targets: ["q_proj", "v_proj"], seed: 1, useDora: true, embedding: true, modulesToSave: ["lm_head"], trainableTokenIndices: [3, 5] });
    const f = await SafetensorsFile.open(join(ad, "adapter_model.safetensors"));
    try {
      assert.deepEqual(f.entry("base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight").shape, [4, 64]);
      assert.deepEqual(f.entry("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight").shape, [32, 4]);
      assert.deepEqual(f.entry("base_model.model.model.embed_tokens.lora_embedding_A").shape, [4, 256]);
      assert.deepEqual(f.entry("base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta").shape, [2, 64]);
      assert.deepEqual(f.entry("base_model.model.lm_head.weight").shape, [256, 64]);
      assert.deepEqual(f.entry("base_model.model.model.layers.1.self_attn.q_proj.lora_magnitude_vector").shape, [64]);
      assert.ok(tensorStats((await f.read("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")).toF32()).absMax > 0);
    } finally { await f.close(); }
    const cfg = JSON.parse(await readFile(join(ad, "adapter_config.json"), "utf8"));
    assert.equal(cfg.r, 4); assert.equal(cfg.use_dora, true); assert.deepEqual(cfg.trainable_token_indices, { embed_tokens: [3, 5] });

    const g = join(tmp.path, "g"), ga = join(tmp.path, "ga");
    await generateGpt2Model(g, { hiddenSize: 32, numLayers: 1, numHeads: 2, vocabSize: 100, dtype: "F32", seed: 2 });
    await generateLoraAdapter(ga, g, { r: 2, alpha: 4, targets: ["c_attn"], seed: 3 });
    const gf = await SafetensorsFile.open(join(ga, "adapter_model.safetensors"));
    try {
      assert.deepEqual(gf.entry("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight").shape, [2, 32]);
      assert.deepEqual(gf.entry("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight").shape, [96, 2]);
    } finally { await gf.close(); }
    assert.equal(JSON.parse(await readFile(join(ga, "adapter_config.json"), "utf8")).fan_in_fan_out, true);
  });
});
