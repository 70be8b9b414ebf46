/**
 * ONNX graph of a Llama-family decoder (Llama, Mistral, Qwen2) built from a WeightSource.
 *
 * Activations between layers are 2-D [tokens, hidden] so every linear is one Gemm (transB=1 uses the
 * HF (out,in) weight as stored; ORT prepacks constant B) or one MatMulNBits. Attention reshapes to
 * [batch, heads, seq, head_dim]; GQA groups the query heads as [batch, kv_heads, rep, seq, head_dim] so
 * K/V are broadcast, never copied. The graph of the whole model has inputs `input_ids` [batch, seq],
 * `num_logits` [1] (how many last positions get logits) and `past_key_values.{i}.key|value`
 * [batch, kv_heads, past, head_dim]; outputs `logits` [batch, num_logits, vocab] and `present.{i}.key|value`.
 */
import type { GraphBuilder } from "../engine/onnx-builder.js";
import { LoralabError, throwIfAborted } from "../errors.js";
import type { ModelConfig } from "../io/hf-config.js";
import type { LongTaskOptions } from "../progress.js";
import type { Tensor } from "../tensor/tensor.js";
import { layerLinears, linearShape, ropeInvFreq } from "./architecture.js";
import type { TensorPlacer } from "./initializers.js";
import { type LinearWeights, linearDims } from "./weights.js";

/** What the emitters need: the graph, where tensors go, the config and how to get weights. */
export interface Emit {
  g: GraphBuilder;
  placer: TensorPlacer;
  cfg: ModelConfig;
  tensor(name: string): Promise<Tensor>;
  linear(module: string): Promise<LinearWeights>;
  /** use ORT's fused ops (SimplifiedLayerNormalization; com.microsoft.GroupQueryAttention with rotary when
   * head_dim % 16 == 0) instead of plain ONNX ops for RMSNorm, RoPE and attention */
  fused?: boolean;
}

function checkShape(t: Tensor, want: number[], name: string): void {
  if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i]))
    throw new LoralabError(`config/weight shape mismatch: tensor '${name}' has shape [${t.shape}], config.json implies [${want}]`);
}

/** y = x·Wᵀ (+ b) for x [tokens, in]; dense → Gemm, nbits → MatMulNBits, lora → base + s·B(Ax) (DoRA per SPEC §3.5). */
export function emitLinear(e: Emit, x: string, module: string, lw: LinearWeights): string {
  const [out, inp] = linearShape(e.cfg, module);
  const dims = linearDims(lw);
  if (dims.out !== out || dims.in !== inp)
    throw new LoralabError(`config/weight shape mismatch: ${module} has (out, in) = (${dims.out}, ${dims.in}), config.json implies (${out}, ${inp})`);
  const { g, placer } = e;
  const withBias = (y: string, bias: Tensor | undefined) => {
    if (!bias) return y;
    checkShape(bias, [out], `${module}.bias`);
    return g.op("Add", [y, placer.place(`${module}.bias`, bias)]);
  };
  const base = (b: LinearWeights, includeBias: boolean): string => {
    if (b.kind === "dense") {
      const W = placer.place(b.weightName, b.weight);
      const ins = [x, W];
      if (includeBias && b.bias) {
        checkShape(b.bias, [out], `${module}.bias`);
        ins.push(placer.place(`${module}.bias`, b.bias));
      }
      return g.op("Gemm", ins, { transB: 1 });
    }
    if (b.kind === "nbits") {
      // act-order checkpoints: K reordered into contiguous groups at load time, the input gathered to match
      const xin = b.inputPerm ? g.op("Gather", [x, placer.place(`${module}.input_perm_nbits`, b.inputPerm)], { axis: 1 }) : x;
      const ins = [xin, placer.place(`${module}.qweight_nbits`, b.packed), placer.place(`${module}.scales_nbits`, b.scales)];
      ins.push(b.zeroPoints ? placer.place(`${module}.zero_points_nbits`, b.zeroPoints) : "");
      ins.push(b.gIdx ? placer.place(`${module}.g_idx_nbits`, b.gIdx) : "");
      ins.push(includeBias && b.bias ? placer.place(`${module}.bias`, b.bias) : "");
      while (ins[ins.length - 1] === "") ins.pop();
      return g.op("MatMulNBits", ins, { K: b.K, N: b.N, bits: b.bits, block_size: b.blockSize, accuracy_level: b.accuracyLevel ?? 4 }, "com.microsoft");
    }
    throw new LoralabError(`${module}: nested LoRA branches are not supported`);
  };
  if (lw.kind !== "lora") return base(lw, true);

  const r = lw.A.shape[0];
  checkShape(lw.A, [r, inp], `${module}.lora_A.weight`);
  checkShape(lw.B, [out, r], `${module}.lora_B.weight`);
  const A = placer.place(`${module}.lora_A.weight`, lw.A);
  const B = placer.place(`${module}.lora_B.weight`, lw.B);
  const ax = g.op("Gemm", [x, A], { transB: 1 });
  const loraBias = () => lw.loraBias ? e.g.constF32(lw.loraBias.toF32().map((v) => v * lw.scaling), [out], "lora_bias") : undefined;
  if (!lw.magnitude) {
    // base(x) + s·B(Ax): the add rides on Gemm's C input
    let y = g.op("Gemm", [ax, B, base(lw.base, true)], { transB: 1, alpha: { float: lw.scaling }, beta: { float: 1 } });
    const lb = loraBias();
    if (lb) y = g.op("Add", [y, lb]);
    return y;
  }
  // DoRA: y = (m/n)·(xWᵀ + s·B(Ax)) + b, n_o = ‖(W + sBA)[o,:]‖ treated as a constant
  if (lw.base.kind !== "dense") throw new LoralabError(`${module}: DoRA needs a float base weight`);
  checkShape(lw.magnitude, [out], `${module}.lora_magnitude_vector`);
  const factor = doraFactor(lw.base.weight, lw.A, lw.B, lw.scaling, lw.magnitude);
  let y = g.op("Gemm", [ax, B, base(lw.base, false)], { transB: 1, alpha: { float: lw.scaling }, beta: { float: 1 } });
  const lb = loraBias();
  if (lb) y = g.op("Add", [y, lb]);
  y = g.op("Mul", [y, g.constF32(factor, [out], "dora_scale")]);
  return withBias(y, lw.base.bias);
}

/** m_o / ‖(W + sBA)[o,:]‖₂ per output row, in float64. */
export function doraFactor(W: Tensor, A: Tensor, B: Tensor, s: number, m: Tensor): Float32Array {
  const [out, inp] = W.shape, r = A.shape[0];
  const w = W.toF32(), a = A.toF32(), b = B.toF32(), mag = m.toF32();
  const row = new Float64Array(inp);
  const f = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inp; i++) row[i] = w[o * inp + i];
    for (let k = 0; k < r; k++) {
      const bk = s * b[o * r + k];
      if (bk === 0) continue;
      for (let i = 0; i < inp; i++) row[i] += bk * a[k * inp + i];
    }
    let ss = 0;
    for (let i = 0; i < inp; i++) ss += row[i] * row[i];
    f[o] = mag[o] / Math.sqrt(ss);
  }
  return f;
}

/** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) · w. */
export async function emitRmsNorm(e: Emit, x: string, weightName: string): Promise<string> {
  const w = await e.tensor(weightName);
  checkShape(w, [e.cfg.hiddenSize], weightName);
  const { g } = e;
  if (e.fused) return g.op("SimplifiedLayerNormalization", [x, e.placer.place(weightName, w)], { axis: -1, epsilon: { float: e.cfg.rmsNormEps }, stash_type: 1 });
  const ms = g.op("ReduceMean", [g.op("Mul", [x, x])], { axes: [-1], keepdims: 1 });
  const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.constF32([e.cfg.rmsNormEps], [], "eps")])])]);
  return g.op("Mul", [g.op("Mul", [x, inv]), e.placer.place(weightName, w)]);
}

/** Per-call values every layer shares: batch/seq shape, RoPE cos/sin at the positions, causal mask. */
export interface AttnContext {
  /** int64 [2] = [batch, seq] */
  bs: string;
  /** [seq, head_dim/2] */
  cos: string;
  sin: string;
  /** [seq, past+seq] additive mask (0 or -inf) */
  mask: string;
  /** for GroupQueryAttention: int32 [batch] = past+seq−1, int32 scalar past+seq, full RoPE tables */
  seqlensK: string;
  totalLen: string;
  cosCache: string;
  sinCache: string;
}

/** `shapeOf` is any tensor whose first two dims are [batch, seq]; `pastOf` a past key [b, h, past, d]. */
export function emitAttnContext(g: GraphBuilder, cfg: ModelConfig, maxContext: number, shapeOf: string, pastOf?: string): AttnContext {
  const shape = g.op("Shape", [shapeOf]);
  const bs = g.op("Slice", [shape, g.constI64([0]), g.constI64([2])]);
  const seq = g.op("Squeeze", [g.op("Slice", [shape, g.constI64([1]), g.constI64([2])])]);
  const past = pastOf ? g.op("Squeeze", [g.op("Slice", [g.op("Shape", [pastOf]), g.constI64([2]), g.constI64([3])])]) : g.constI64([0], []);
  const end = g.op("Add", [past, seq]);
  const one = g.constI64([1], []);
  const qpos = g.op("Range", [past, end, one]);
  const kpos = g.op("Range", [g.constI64([0], []), end, one]);
  const future = g.op("Greater", [g.op("Unsqueeze", [kpos, g.constI64([0])]), g.op("Unsqueeze", [qpos, g.constI64([1])])]);
  const mask = g.op("Where", [future, g.constF32([-Infinity], []), g.constF32([0], [])]);
  const tables = ropeTables(cfg, maxContext);
  const cosCache = g.constF32(tables.cos, [maxContext, cfg.headDim / 2], "rope_cos");
  const sinCache = g.constF32(tables.sin, [maxContext, cfg.headDim / 2], "rope_sin");
  const INT32 = 6;
  const totalLen = g.op("Cast", [end], { to: INT32 });
  const seqlensK = g.op("Expand", [g.op("Cast", [g.op("Sub", [end, one])], { to: INT32 }), g.op("Slice", [bs, g.constI64([0]), g.constI64([1])])]);
  return { bs, cos: g.op("Gather", [cosCache, qpos]), sin: g.op("Gather", [sinCache, qpos]), mask, seqlensK, totalLen, cosCache, sinCache };
}

export function ropeTables(cfg: ModelConfig, n: number): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInvFreq(cfg);
  const half = inv.length;
  const cos = new Float32Array(n * half), sin = new Float32Array(n * half);
  for (let p = 0; p < n; p++)
    for (let i = 0; i < half; i++) {
      const a = p * inv[i];
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  return { cos, sin };
}

/** rotate-half RoPE (HF layout) on x [b, h, s, d]. */
function emitRope(g: GraphBuilder, x: string, ctx: AttnContext): string {
  const [x1, x2] = g.node("Split", [x], 2, { axis: 3 });
  const a = g.op("Sub", [g.op("Mul", [x1, ctx.cos]), g.op("Mul", [x2, ctx.sin])]);
  const b = g.op("Add", [g.op("Mul", [x2, ctx.cos]), g.op("Mul", [x1, ctx.sin])]);
  return g.op("Concat", [a, b], { axis: 3 });
}

/** Names of the values a decoder layer exposes (the layer runner returns them). */
export interface LayerValues {
  /** input of q/k/v_proj (after input_layernorm) [tokens, hidden] */
  attnIn: string;
  /** input of o_proj [tokens, heads·head_dim] */
  oIn: string;
  /** input of gate/up_proj (after post_attention_layernorm) [tokens, hidden] */
  mlpIn: string;
  /** input of down_proj [tokens, intermediate] */
  downIn: string;
  /** layer output (residual stream) [tokens, hidden] */
  out: string;
  presentKey: string;
  presentValue: string;
}

/** One decoder layer on h [tokens, hidden]: attention, o_proj and the residual, post_attention_layernorm,
 * the MLP and the residual. */
export async function emitDecoderLayer(e: Emit, i: number, h: string, ctx: AttnContext, past?: { key: string; value: string }): Promise<LayerValues> {
  const { g } = e;
  const [, , , oM] = layerLinears(i);
  const { attnIn, oIn, presentKey, presentValue } = await emitAttention(e, i, h, ctx, past);
  const h2 = g.op("Add", [h, emitLinear(e, oIn, oM, await e.linear(oM))]);
  const mlpIn = await emitRmsNorm(e, h2, `model.layers.${i}.post_attention_layernorm.weight`);
  const mlp = await emitMlp(e, i, mlpIn);
  const out = g.op("Add", [h2, mlp.out]);
  return { attnIn, oIn, mlpIn, downIn: mlp.downIn, out, presentKey, presentValue };
}

/** Layer i's MLP on x (the post_attention_layernorm output): down_proj(silu(gate_proj(x)) · up_proj(x)). */
export async function emitMlp(e: Emit, i: number, x: string): Promise<{ downIn: string; out: string }> {
  const { g } = e;
  const [, , , , gateM, upM, downM] = layerLinears(i);
  const gate = emitLinear(e, x, gateM, await e.linear(gateM));
  const up = emitLinear(e, x, upM, await e.linear(upM));
  const downIn = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]);
  return { downIn, out: emitLinear(e, downIn, downM, await e.linear(downM)) };
}

/** Layer i's self-attention up to o_proj's input: input_layernorm, q/k/v, RoPE, causal (grouped-query)
 * attention over the past and the new tokens. */
export async function emitAttention(e: Emit, i: number, h: string, ctx: AttnContext, past?: { key: string; value: string }): Promise<{ attnIn: string; oIn: string; presentKey: string; presentValue: string }> {
  const { g, cfg } = e;
  const H = cfg.numHeads, KV = cfg.numKvHeads, D = cfg.headDim, rep = H / KV;
  const [qM, kM, vM] = layerLinears(i);
  const attnIn = await emitRmsNorm(e, h, `model.layers.${i}.input_layernorm.weight`);
  const q = emitLinear(e, attnIn, qM, await e.linear(qM));
  const k = emitLinear(e, attnIn, kM, await e.linear(kM));
  const v = emitLinear(e, attnIn, vM, await e.linear(vM));
  const rest = (oIn: string, presentKey: string, presentValue: string) => ({ attnIn, oIn, presentKey, presentValue });
  if (e.fused && D % 16 === 0) {
    // GroupQueryAttention (its CPU kernel needs head_dim % 16 == 0): RoPE (rotate-half), causal mask, GQA and the KV concat in one op
    const to3 = (x: string, heads: number) => g.op("Reshape", [x, g.op("Concat", [ctx.bs, g.constI64([heads * D])], { axis: 0 })]);
    const [attnOut, presentKey, presentValue] = g.node("GroupQueryAttention", [to3(q, H), to3(k, KV), to3(v, KV), past?.key ?? "", past?.value ?? "", ctx.seqlensK, ctx.totalLen, ctx.cosCache, ctx.sinCache], 3, {
      num_heads: H, kv_num_heads: KV, do_rotary: 1, rotary_interleaved: 0, scale: { float: 1 / Math.sqrt(D) },
    }, "com.microsoft");
    return rest(g.op("Reshape", [attnOut, g.constI64([-1, H * D])]), presentKey, presentValue);
  }
  const heads = (x: string, n: number) => g.op("Transpose", [g.op("Reshape", [x, g.op("Concat", [ctx.bs, g.constI64([n, D])], { axis: 0 })])], { perm: [0, 2, 1, 3] });
  // fold 1/sqrt(d) into q before RoPE (both linear)
  const qh = emitRope(g, g.op("Mul", [heads(q, H), g.constF32([1 / Math.sqrt(D)], [])]), ctx);
  let kh = emitRope(g, heads(k, KV), ctx);
  let vh = heads(v, KV);
  if (past) {
    kh = g.op("Concat", [past.key, kh], { axis: 2 });
    vh = g.op("Concat", [past.value, vh], { axis: 2 });
  }
  const q5 = g.op("Reshape", [qh, g.constI64([0, KV, rep, -1, D])]);
  const kT = g.op("Transpose", [g.op("Unsqueeze", [kh, g.constI64([2])])], { perm: [0, 1, 2, 4, 3] });
  const scores = g.op("Add", [g.op("MatMul", [q5, kT]), ctx.mask]);
  const probs = g.op("Softmax", [scores], { axis: -1 });
  const attn = g.op("MatMul", [probs, g.op("Unsqueeze", [vh, g.constI64([2])])]);
  const merged = g.op("Transpose", [g.op("Reshape", [attn, g.constI64([0, H, -1, D])])], { perm: [0, 2, 1, 3] });
  const oIn = g.op("Reshape", [merged, g.constI64([-1, H * D])]);
  return rest(oIn, kh, vh);
}

export const PAST_KEY = (i: number) => `past_key_values.${i}.key`;
export const PAST_VALUE = (i: number) => `past_key_values.${i}.value`;
export const PRESENT_KEY = (i: number) => `present.${i}.key`;
export const PRESENT_VALUE = (i: number) => `present.${i}.value`;

/** The whole causal LM (see the file comment for inputs/outputs). */
export async function emitCausalLm(e: Emit, maxContext: number, opts: LongTaskOptions = {}): Promise<void> {
  const { g, cfg } = e;
  const L = cfg.numLayers, KV = cfg.numKvHeads, D = cfg.headDim;
  const ids = g.input("input_ids", "I64", ["batch", "seq"]);
  const numLogits = g.input("num_logits", "I64", [1]);
  for (let i = 0; i < L; i++) {
    g.input(PAST_KEY(i), "F32", ["batch", KV, "past", D]);
    g.input(PAST_VALUE(i), "F32", ["batch", KV, "past", D]);
  }
  const embName = "model.embed_tokens.weight";
  const emb = await e.tensor(embName);
  checkShape(emb, [cfg.vocabSize, cfg.hiddenSize], embName);
  const embInit = e.placer.place(embName, emb);
  let h = g.op("Reshape", [g.op("Gather", [embInit, ids]), g.constI64([-1, cfg.hiddenSize])]);
  const ctx = emitAttnContext(g, cfg, maxContext, ids, PAST_KEY(0));
  for (let i = 0; i < L; i++) {
    throwIfAborted(opts.signal);
    const v = await emitDecoderLayer(e, i, h, ctx, { key: PAST_KEY(i), value: PAST_VALUE(i) });
    g.node("Identity", [v.presentKey], [PRESENT_KEY(i)]);
    g.node("Identity", [v.presentValue], [PRESENT_VALUE(i)]);
    g.output(PRESENT_KEY(i), "F32", ["batch", KV, "total", D]);
    g.output(PRESENT_VALUE(i), "F32", ["batch", KV, "total", D]);
    h = v.out;
    opts.onProgress?.({ phase: "build", done: i + 1, total: L, unit: "layers", label: `model.layers.${i}` });
  }
  // logits only for the last num_logits positions of each sequence
  const h3 = g.op("Reshape", [h, g.op("Concat", [ctx.bs, g.constI64([cfg.hiddenSize])], { axis: 0 })]);
  const tail = g.op("Slice", [h3, g.op("Neg", [numLogits]), g.constI64([Number.MAX_SAFE_INTEGER]), g.constI64([1])]);
  const normed = await emitRmsNorm(e, g.op("Reshape", [tail, g.constI64([-1, cfg.hiddenSize])]), "model.norm.weight");
  const logits2 = emitLinear(e, normed, "lm_head", await e.linear("lm_head"));
  g.node("Reshape", [logits2, g.op("Concat", [g.op("Slice", [ctx.bs, g.constI64([0]), g.constI64([1])]), g.constI64([-1, cfg.vocabSize])], { axis: 0 })], ["logits"]);
  g.output("logits", "F32", ["batch", "num_logits", cfg.vocabSize]);
}
