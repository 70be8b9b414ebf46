import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ModelDir } from "../lib/io/model-dir.js";
import { DecoderLayerRunner } from "../lib/model/layer-runner.js";
import { MapWeightSource } from "../lib/model/weights.js";
import { data } from "./helpers/paths.js";
import { randomModel, referenceForward } from "./model-reference.js";

const golden = JSON.parse(readFileSync(data("stories260K-golden/golden.json"), "utf8"));

describe("DecoderLayerRunner (layer-wise calibration)", () => {
  it("layer by layer reproduces the stories260K golden logits (sharded copy)", async () => {
    const model = await ModelDir.open(data("stories260K-hf/sharded"));
    const r = await DecoderLayerRunner.create(model, { threads: 1 });
    const ids = golden.prompt_logits.ids as number[];
    let h = r.embed(ids);
    for (let l = 0; l < r.config.numLayers; l++) {
      const a = await r.run(l, h, ids.length);
      assert.equal(a.attnIn.length, ids.length * 64);
      assert.equal(a.oIn.length, ids.length * 64);
      assert.equal(a.downIn.length, ids.length * 172);
      h = a.out;
    }
    const logits = await r.finalNormAndLogits(h, ids.length);
    const last = logits.subarray((ids.length - 1) * 512);
    golden.prompt_logits.last_position_logits.forEach((v: number, i: number) => assert.ok(Math.abs(last[i] - v) < 1e-4 * Math.max(1, Math.abs(v)), `logit ${i}`));
    await r.release();
    await model.close();
  });

  for (const fused of [true, false])
    it(`activations, replacement weights and batching vs the float64 reference (${fused ? "fused" : "plain"} ops, GQA, bias)`, async () => {
      const raw = { model_type: "qwen2", hidden_size: 64, intermediate_size: 40, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 40, max_position_embeddings: 32, rms_norm_eps: 1e-6, hidden_act: "silu", tie_word_embeddings: true };
      const { cfg, f64, tensors } = randomModel(raw, 21);
      const r = await DecoderLayerRunner.create(new MapWeightSource(cfg, tensors), { threads: 1, fused });
      const ids = [3, 9, 27, 1, 14, 33, 8];
      // replacing layer 1's up_proj with W/2 must equal a reference model whose up_proj is W/2
      const up = "model.layers.1.mlp.up_proj.weight";
      const half = Float32Array.from(tensors.get(up)!.data as Float32Array, (x) => x / 2);
      const f64b = new Map(f64);
      f64b.set(up, Float64Array.from(half));
      const ref = referenceForward(cfg, f64, ids), refHalf = referenceForward(cfg, f64b, ids);
      for (const [replace, expected] of [[undefined, ref], [new Map([["mlp.up_proj", half]]), refHalf]] as const) {
        let h = r.embed(ids);
        h = (await r.run(0, h, ids.length)).out;
        const a = await r.run(1, h, ids.length, replace);
        // attnIn of layer 1 = RMSNorm(h) with the layer's input_layernorm weight, computed here in float64
        const w = tensors.get("model.layers.1.input_layernorm.weight")!.data as Float32Array;
        for (let t = 0; t < ids.length; t++) {
          let ss = 0;
          for (let i = 0; i < 64; i++) ss += h[t * 64 + i] ** 2;
          const inv = 1 / Math.sqrt(ss / 64 + 1e-6);
          for (let i = 0; i < 64; i++) assert.ok(Math.abs(a.attnIn[t * 64 + i] - h[t * 64 + i] * inv * w[i]) < 1e-4);
        }
        const logits = await r.finalNormAndLogits(a.out);
        for (let t = 0; t < ids.length; t++)
          for (let j = 0; j < 40; j++) assert.ok(Math.abs(logits[t * 40 + j] - expected[t][j]) < 1e-4 * (1 + Math.abs(expected[t][j])), `t ${t} j ${j}`);
      }
      assert.ok(Math.abs(ref[6][5] - refHalf[6][5]) > 1e-3, "the replacement matters");
      // two sequences back to back: each is its own causal sequence at positions 0..seqLen-1
      const ids2 = [5, 6, 7, 8, 9, 10, 11];
      const both = new Float32Array(2 * 7 * 64);
      both.set(r.embed(ids));
      both.set(r.embed(ids2), 7 * 64);
      const batch = await r.run(0, both, 7);
      const single = await r.run(0, r.embed(ids2), 7);
      for (let i = 0; i < single.out.length; i++) assert.ok(Math.abs(batch.out[7 * 64 + i] - single.out[i]) < 1e-5);
      // the layer's parts alone (GPTQ's captures, AWQ's searches): activation() equals run()'s; mlp() is down_proj of run()'s
      // downIn, computed here in float64 — both with a replaced weight
      const q0 = "model.layers.0.self_attn.q_proj.weight", up0 = "model.layers.0.mlp.up_proj.weight";
      const rep = new Map([["self_attn.q_proj", Float32Array.from(tensors.get(q0)!.data as Float32Array, (x) => -x)], ["mlp.up_proj", Float32Array.from(tensors.get(up0)!.data as Float32Array, (x) => 2 * x)]]);
      const whole = await r.run(0, both, 7, rep);
      for (const name of ["attnIn", "oIn", "mlpIn", "downIn", "out"] as const) {
        const one = await r.activation(name, 0, both, 7, rep);
        assert.equal(one.length, whole[name].length, name);
        for (let i = 0; i < one.length; i++) assert.ok(Math.abs(one[i] - whole[name][i]) < 1e-5, `${name}[${i}]`);
      }
      const y = await r.mlp(0, whole.mlpIn, rep);
      const wd = tensors.get("model.layers.0.mlp.down_proj.weight")!.data as Float32Array;
      for (let t = 0; t < 14; t++) for (let n = 0; n < 64; n++) {
        let v = 0;
        for (let k = 0; k < 40; k++) v += whole.downIn[t * 40 + k] * wd[n * 40 + k];
        assert.ok(Math.abs(y[t * 64 + n] - v) < 1e-5 * (1 + Math.abs(v)), `mlp (${t}, ${n}): ${y[t * 64 + n]} vs ${v}`);
      }
      await assert.rejects(r.run(0, both, 7, new Map([["mlp.up_proj", new Float32Array(3)]])), /needs 40×64 values/);
      await assert.rejects(r.run(0, both, 7, new Map([["mlp.nope", new Float32Array(3)]])), /not a linear/);
      await r.release();
    });
});
