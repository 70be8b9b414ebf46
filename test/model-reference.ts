/**
 * An independent float64 reference forward of a Llama-family decoder for tests: plain loops, written from
 * the transformers modeling code's definitions (RMSNorm, rotate-half RoPE with default/linear/llama3
 * frequencies, GQA by repeat, SwiGLU, optional q/k/v bias, tied or separate lm_head, LoRA/DoRA branches).
 */
import type { ModelConfig } from "../lib/io/hf-config.js";
import { parseConfig } from "../lib/io/hf-config.js";
import { Tensor } from "../lib/tensor/tensor.js";

export type F64Map = Map<string, Float64Array>;

export interface RefLora {
  A: Float64Array; // (r, in)
  B: Float64Array; // (out, r)
  r: number;
  scaling: number;
  magnitude?: Float64Array;
}

function invFreq(cfg: ModelConfig): number[] {
  const D = cfg.headDim;
  const out: number[] = [];
  for (let i = 0; i < D; i += 2) out.push(Math.pow(cfg.ropeTheta, -i / D));
  const rs = cfg.ropeScaling;
  if (!rs || rs.ropeType === "default") return out;
  if (rs.ropeType === "linear") return out.map((f) => f / rs.factor);
  const old = rs.originalMaxPositionEmbeddings!, lo = rs.lowFreqFactor!, hi = rs.highFreqFactor!;
  return out.map((f) => {
    const wl = (2 * Math.PI) / f;
    if (wl < old / hi) return f;
    if (wl > old / lo) return f / rs.factor;
    const sm = (old / wl - lo) / (hi - lo);
    return (1 - sm) * (f / rs.factor) + sm * f;
  });
}

function rms(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * w[i]);
}

/** y = W x (+b) with W (out, in), plus an optional LoRA / DoRA branch. */
function linear(W: Float64Array, x: Float64Array, out: number, bias?: Float64Array, lora?: RefLora): Float64Array {
  const inp = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let acc = 0;
    for (let i = 0; i < inp; i++) acc += W[o * inp + i] * x[i];
    y[o] = acc;
  }
  if (lora) {
    const ax = new Float64Array(lora.r);
    for (let k = 0; k < lora.r; k++) for (let i = 0; i < inp; i++) ax[k] += lora.A[k * inp + i] * x[i];
    for (let o = 0; o < out; o++) {
      let acc = 0;
      for (let k = 0; k < lora.r; k++) acc += lora.B[o * lora.r + k] * ax[k];
      y[o] += lora.scaling * acc;
    }
    if (lora.magnitude) {
      for (let o = 0; o < out; o++) {
        let ss = 0;
        for (let i = 0; i < inp; i++) {
          let w = W[o * inp + i];
          for (let k = 0; k < lora.r; k++) w += lora.scaling * lora.B[o * lora.r + k] * lora.A[k * inp + i];
          ss += w * w;
        }
        y[o] *= lora.magnitude[o] / Math.sqrt(ss);
      }
    }
  }
  if (bias) for (let o = 0; o < out; o++) y[o] += bias[o];
  return y;
}

/** Logits [seq × vocab] for one sequence, all positions. */
export function referenceForward(cfg: ModelConfig, w: F64Map, ids: number[], loras: Map<string, RefLora> = new Map()): Float64Array[] {
  const d = cfg.hiddenSize, H = cfg.numHeads, KV = cfg.numKvHeads, D = cfg.headDim, I = cfg.intermediateSize;
  const get = (n: string) => { const t = w.get(n); if (!t) throw new Error(`reference: no ${n}`); return t; };
  const freqs = invFreq(cfg);
  const emb = get("model.embed_tokens.weight");
  let h = ids.map((id) => emb.slice(id * d, (id + 1) * d));
  const rope = (v: Float64Array, pos: number) => {
    const half = D / 2, o = new Float64Array(D);
    for (let i = 0; i < half; i++) {
      const c = Math.cos(pos * freqs[i]), s = Math.sin(pos * freqs[i]);
      o[i] = v[i] * c - v[i + half] * s;
      o[i + half] = v[i + half] * c + v[i] * s;
    }
    return o;
  };
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    const lin = (m: string, x: Float64Array, out: number) => linear(get(`${p}.${m}.weight`), x, out, w.get(`${p}.${m}.bias`), loras.get(`${p}.${m}`));
    const xs = h.map((x) => rms(x, get(`${p}.input_layernorm.weight`), cfg.rmsNormEps));
    const q = xs.map((x, t) => { const v = lin("self_attn.q_proj", x, H * D); const o = new Float64Array(H * D); for (let hh = 0; hh < H; hh++) o.set(rope(v.subarray(hh * D, hh * D + D), t), hh * D); return o; });
    const k = xs.map((x, t) => { const v = lin("self_attn.k_proj", x, KV * D); const o = new Float64Array(KV * D); for (let hh = 0; hh < KV; hh++) o.set(rope(v.subarray(hh * D, hh * D + D), t), hh * D); return o; });
    const v = xs.map((x) => lin("self_attn.v_proj", x, KV * D));
    const rep = H / KV;
    const attnOut = q.map((qt, t) => {
      const o = new Float64Array(H * D);
      for (let hh = 0; hh < H; hh++) {
        const kh = Math.floor(hh / rep);
        const sc: number[] = [];
        for (let j = 0; j <= t; j++) {
          let acc = 0;
          for (let e = 0; e < D; e++) acc += qt[hh * D + e] * k[j][kh * D + e];
          sc.push(acc / Math.sqrt(D));
        }
        const mx = Math.max(...sc);
        const ex = sc.map((s) => Math.exp(s - mx));
        const z = ex.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= t; j++) for (let e = 0; e < D; e++) o[hh * D + e] += (ex[j] / z) * v[j][kh * D + e];
      }
      return o;
    });
    h = h.map((x, t) => { const y = lin("self_attn.o_proj", attnOut[t], d); return x.map((a, i) => a + y[i]); });
    h = h.map((x) => {
      const n = rms(x, get(`${p}.post_attention_layernorm.weight`), cfg.rmsNormEps);
      const g = lin("mlp.gate_proj", n, I), u = lin("mlp.up_proj", n, I);
      const a = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
      const y = lin("mlp.down_proj", a, d);
      return x.map((b, i) => b + y[i]);
    });
  }
  const head = w.get("lm_head.weight") ?? emb;
  return h.map((x) => linear(head, rms(x, get("model.norm.weight"), cfg.rmsNormEps), cfg.vocabSize));
}

/** Seeded random tiny model: config fields from `raw`, weights ~ U(-a, a) rounded to float32. */
export function randomModel(raw: Record<string, unknown>, seed: number): { cfg: ModelConfig; f64: F64Map; tensors: Map<string, Tensor> } {
  const cfg = parseConfig(raw);
  let s = seed >>> 0;
  const rnd = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296 - 0.5; };
  const f64: F64Map = new Map(), tensors = new Map<string, Tensor>();
  const add = (name: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const f = Float32Array.from({ length: n }, () => offset + 2 * scale * rnd());
    tensors.set(name, new Tensor("F32", shape, f));
    f64.set(name, Float64Array.from(f));
  };
  const d = cfg.hiddenSize, H = cfg.numHeads, KV = cfg.numKvHeads, D = cfg.headDim, I = cfg.intermediateSize;
  add("model.embed_tokens.weight", [cfg.vocabSize, d], 1);
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [d], 0.2, 1);
    add(`${p}.post_attention_layernorm.weight`, [d], 0.2, 1);
    add(`${p}.self_attn.q_proj.weight`, [H * D, d], 1 / Math.sqrt(d));
    add(`${p}.self_attn.k_proj.weight`, [KV * D, d], 1 / Math.sqrt(d));
    add(`${p}.self_attn.v_proj.weight`, [KV * D, d], 1 / Math.sqrt(d));
    add(`${p}.self_attn.o_proj.weight`, [d, H * D], 1 / Math.sqrt(H * D));
    if (cfg.attentionBias) for (const [m, o] of [["q_proj", H * D], ["k_proj", KV * D], ["v_proj", KV * D]] as const) add(`${p}.self_attn.${m}.bias`, [o], 0.5);
    add(`${p}.mlp.gate_proj.weight`, [I, d], 1 / Math.sqrt(d));
    add(`${p}.mlp.up_proj.weight`, [I, d], 1 / Math.sqrt(d));
    add(`${p}.mlp.down_proj.weight`, [d, I], 1 / Math.sqrt(I));
  }
  add("model.norm.weight", [d], 0.2, 1);
  if (!cfg.tieWordEmbeddings) add("lm_head.weight", [cfg.vocabSize, d], 1 / Math.sqrt(d));
  return { cfg, f64, tensors };
}
