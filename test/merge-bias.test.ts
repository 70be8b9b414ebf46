import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateLlamaModel, generateLoraAdapter, normals } from "../lib/fixtures/index.js";
import { ModelDir } from "../lib/io/model-dir.js";
import { SafetensorsFile, saveTensors } from "../lib/io/safetensors.js";
import { merge } from "../lib/lora/merge.js";
import { Tensor } from "../lib/tensor/tensor.js";
import { tempDir } from "./helpers/paths.js";

/** PEFT `bias="all"` / `"lora_only"` (SPEC §2.2, §3.6): the adapter stores biases (`<module>.base_layer.bias`)
 * that overwrite the base's, while the LoRA delta still goes into the weight. */
describe("merge: adapter-stored biases (bias=\"all\")", function () {
  this.timeout(60_000);
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it("overwrites the base bias exactly and still merges the weight", async () => {
    const base = join(tmp.path, "base"), adapter = join(tmp.path, "adapter"), out = join(tmp.path, "out");
    await generateLlamaModel(base, { hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 4, numKvHeads: 2, vocabSize: 40, dtype: "F32", seed: 3, modelType: "qwen2" });
    await generateLoraAdapter(adapter, base, { r: 4, alpha: 8, targets: ["q_proj"], seed: 4 });
    // add the stored bias the way PEFT saves it with bias="all", and say so in the config
    const file = join(adapter, "adapter_model.safetensors");
    const st = await SafetensorsFile.open(file);
    const tensors: Record<string, Tensor> = {};
    for (const name of st.names()) tensors[name] = await st.read(name);
    await st.close();
    const stored = normals(32, 99, 0.5);
    tensors["base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias"] = new Tensor("F32", [32], stored);
    await saveTensors(file, tensors);
    const cfgPath = join(adapter, "adapter_config.json");
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, "utf8")), bias: "all" }));

    const report = await merge({ base, adapters: [{ path: adapter }], out });
    const m = await ModelDir.open(out), b = await ModelDir.open(base);
    try {
      assert.deepEqual(Array.from((await m.read("model.layers.0.self_attn.q_proj.bias")).toF32()), Array.from(stored));
      assert.notDeepEqual(Array.from((await b.read("model.layers.0.self_attn.q_proj.bias")).toF32()), Array.from(stored));
      // untouched biases stay byte-identical; the weight still got its LoRA delta
      assert.deepEqual(await m.readBytes("model.layers.0.self_attn.k_proj.bias"), await b.readBytes("model.layers.0.self_attn.k_proj.bias"));
      assert.ok(report.modules.some((r) => r.tensor === "model.layers.0.self_attn.q_proj.weight" && r.relDelta > 0));
      assert.ok(report.replaced.includes("model.layers.0.self_attn.q_proj.bias"), report.replaced.join(", "));
    } finally {
      await m.close(); await b.close();
    }
  });
});
