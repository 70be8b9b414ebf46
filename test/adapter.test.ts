import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadAdapter, normalizeKey, resolvePattern } from "../lib/lora/adapter.js";
import { data, tempDir } from "./helpers/paths.js";

describe("loadAdapter", () => {
  it("normalizes PEFT keys (§2.3)", () => {
    assert.equal(normalizeKey("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"), "model.layers.0.self_attn.q_proj.lora_A.weight");
    assert.equal(normalizeKey("base_model.model.x.lora_A.weight"), "x.lora_A.weight");
    assert.equal(normalizeKey("m.embed_tokens.lora_embedding_B.default"), "m.embed_tokens.lora_embedding_B");
    assert.equal(normalizeKey("m.q.lora_magnitude_vector.default.weight"), "m.q.lora_magnitude_vector");
    assert.equal(normalizeKey("m.q.lora_magnitude_vector"), "m.q.lora_magnitude_vector");
  });

  it("resolves rank/alpha patterns with PEFT's anchored regex, first key wins (§2.4)", () => {
    const p = { "q_proj": 4, "layers\\.1\\..*": 8, "proj": 2 };
    assert.equal(resolvePattern(p, "model.layers.0.self_attn.q_proj"), 4);
    assert.equal(resolvePattern(p, "model.layers.1.self_attn.k_proj"), 8);
    assert.equal(resolvePattern(p, "model.layers.0.self_attn.k_proj"), undefined); // "proj" must match a whole dotted suffix
    assert.equal(resolvePattern(p, "model.layers.0.self_attn.proj"), 2);
  });

  it("reads the real GPT-2 adapter: every key, config fields, fan_in_fan_out", async () => {
    const a = await loadAdapter(data("lora-gpt2-fmi"));
    assert.equal(a.config.r, 8);
    assert.ok(a.modules.size > 0);
    for (const [target, m] of a.modules) {
      assert.match(target, /^transformer\.h\.\d+\.attn\.c_attn\.weight$/);
      assert.equal(m.r, 8); assert.equal(m.alpha, 32); assert.equal(m.scaling, 4); assert.equal(m.fanInFanOut, true);
      assert.equal(m.A.shape[0], 8); assert.equal(m.B.shape[1], 8);
    }
    assert.equal(a.replacements.size, 0);
  });

  it("reads DoRA and rsLoRA adapters", async () => {
    const d = await loadAdapter(data("stories260K-dora"));
    const m = d.modules.get("model.layers.0.self_attn.o_proj.weight")!;
    assert.deepEqual(m.magnitude?.shape, [64]);
    const rs = await loadAdapter(data("stories260K-lora-rslora"));
    for (const x of rs.modules.values()) assert.equal(x.scaling, x.alpha / Math.sqrt(x.r));
  });

  it("refuses pickle, layer_replication and PiSSA init with a reason", async () => {
    const tmp = tempDir();
    try {
      const mk = (name: string, cfg: object, file = "adapter_model.safetensors") => {
        const d = join(tmp.path, name); mkdirSync(d);
        writeFileSync(join(d, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 2, lora_alpha: 2, ...cfg }));
        writeFileSync(join(d, file), "x");
        return d;
      };
      await assert.rejects(loadAdapter(mk("bin", {}, "adapter_model.bin")), /pickle/);
      await assert.rejects(loadAdapter(mk("rep", { layer_replication: [[0, 1]] })), /layer_replication/);
      await assert.rejects(loadAdapter(mk("pissa", { init_lora_weights: "pissa" })), /plain LoRA/);
      await assert.rejects(loadAdapter(mk("tp", { target_parameters: ["experts"] })), /target_parameters/);
    } finally { tmp.cleanup(); }
  });
});
