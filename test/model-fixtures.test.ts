import assert from "node:assert/strict";
import { CausalLM } from "../lib/model/causal-lm.js";
import { type LinearWeights, MapWeightSource, type WeightSource } from "../lib/model/weights.js";
import { Tensor } from "../lib/tensor/tensor.js";
import { type RefLora, randomModel, referenceForward } from "./model-reference.js";

const base = { hidden_act: "silu", rms_norm_eps: 1e-5, max_position_embeddings: 64, num_hidden_layers: 2 };
const CONFIGS: Record<string, Record<string, unknown>> = {
  "Mistral-style (GQA 4:1, untied head, theta 1e6)": { ...base, model_type: "mistral", architectures: ["MistralForCausalLM"], hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 1, intermediate_size: 48, vocab_size: 50, rope_theta: 1e6, tie_word_embeddings: false },
  "Qwen2-style (q/k/v bias, GQA 2:1, tied)": { ...base, model_type: "qwen2", architectures: ["Qwen2ForCausalLM"], hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 40, vocab_size: 40, rope_theta: 10000, tie_word_embeddings: true, rms_norm_eps: 1e-6 },
  "Llama-3 rope scaling (all three frequency bands)": { ...base, model_type: "llama", hidden_size: 32, num_attention_heads: 2, num_key_value_heads: 2, intermediate_size: 40, vocab_size: 30, rope_theta: 10000, tie_word_embeddings: false, rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 256 } },
  "explicit head_dim ≠ hidden/heads, linear rope scaling": { ...base, model_type: "llama", hidden_size: 24, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, intermediate_size: 36, vocab_size: 30, tie_word_embeddings: true, rope_scaling: { type: "linear", factor: 2 } },
};

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, rel = 1e-4): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++)
    assert.ok(Math.abs(actual[i] - expected[i]) <= rel * (1 + Math.abs(expected[i])), `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
}

const PROMPT = [3, 17, 5, 9, 22, 1, 0, 11, 28, 4, 13, 6];

for (const fused of [true, false])
describe(`engine vs float64 reference forward on generated configs (${fused ? "fused ORT ops" : "plain ONNX ops"})`, () => {
  for (const [label, raw] of Object.entries(CONFIGS)) {
    it(label, async () => {
      const { cfg, f64, tensors } = randomModel(raw, 7);
      const lm = await CausalLM.load(new MapWeightSource(cfg, tensors), { threads: 1, fused });
      const ref = referenceForward(cfg, f64, PROMPT);
      const V = cfg.vocabSize;
      const { logits } = await lm.forward([PROMPT], undefined, PROMPT.length);
      for (let t = 0; t < PROMPT.length; t++) close(logits.subarray(t * V, (t + 1) * V), ref[t], `pos ${t}`);
      // incremental decoding with the KV cache gives the same last logits
      let step = await lm.forward([PROMPT.slice(0, 5)]);
      for (let t = 5; t < PROMPT.length; t++) step = await lm.forward([[PROMPT[t]]], step.cache);
      close(step.logits, ref[PROMPT.length - 1], "kv-cache last");
      // batch 2 rows are independent
      const other = PROMPT.map((x) => (x * 7 + 3) % V);
      const b = await lm.forward([PROMPT, other], undefined, 1);
      close(b.logits.subarray(0, V), ref[PROMPT.length - 1], "batch row 0");
      close(b.logits.subarray(V), referenceForward(cfg, f64, other)[PROMPT.length - 1], "batch row 1");
      await lm.release();
    });
  }

  it("dynamic LoRA and DoRA branches (incl. on biased Qwen2 layers) match the reference", async () => {
    const { cfg, f64, tensors } = randomModel(CONFIGS["Qwen2-style (q/k/v bias, GQA 2:1, tied)"], 11);
    let s = 5;
    const rnd = () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s / 4294967296 - 0.5; };
    const loras = new Map<string, RefLora>();
    const lw = new Map<string, { A: Tensor; B: Tensor; m?: Tensor; scaling: number }>();
    const r = 3;
    for (const [module, out, inp, dora] of [["model.layers.0.self_attn.q_proj", 64, 64, false], ["model.layers.1.self_attn.v_proj", 32, 64, true], ["model.layers.0.mlp.down_proj", 64, 40, true], ["model.layers.1.mlp.up_proj", 40, 64, false]] as const) {
      const A = Float32Array.from({ length: r * inp }, rnd), B = Float32Array.from({ length: out * r }, rnd);
      const m = dora ? Float32Array.from({ length: out }, () => 1 + rnd()) : undefined;
      lw.set(module, { A: new Tensor("F32", [r, inp], A), B: new Tensor("F32", [out, r], B), m: m && new Tensor("F32", [out], m), scaling: 1.5 });
      loras.set(module, { A: Float64Array.from(A), B: Float64Array.from(B), r, scaling: 1.5, magnitude: m && Float64Array.from(m) });
    }
    const inner = new MapWeightSource(cfg, tensors);
    const src: WeightSource = Object.assign(Object.create(inner), {
      async linear(module: string): Promise<LinearWeights> {
        const b = await inner.linear(module);
        const l = lw.get(module);
        return l && b.kind === "dense" ? { kind: "lora", base: b, A: l.A, B: l.B, scaling: l.scaling, magnitude: l.m } : b;
      },
    });
    const lm = await CausalLM.load(src, { threads: 1, fused });
    const ref = referenceForward(cfg, f64, PROMPT, loras);
    const plain = referenceForward(cfg, f64, PROMPT);
    const { logits } = await lm.forward([PROMPT], undefined, PROMPT.length);
    for (let t = 0; t < PROMPT.length; t++) close(logits.subarray(t * cfg.vocabSize, (t + 1) * cfg.vocabSize), ref[t], `pos ${t}`);
    // and the adapter changed the output noticeably (the test could fail)
    assert.ok(Math.abs(ref[5][3] - plain[5][3]) > 1e-3);
    await lm.release();
  });
});
