/** A Llama-family model as GGUF for llama.cpp (SPEC §11): convert_hf_to_gguf tensor names, q/k rows
 * permuted back to llama.cpp's RoPE layout, quantized linears as Q4_0/Q8_0 (GPTQ-rule symmetric codes with
 * groups of 32 are exactly these blocks), everything else F32, and the llama metadata with the tokenizer
 * (SentencePiece-style vocabulary read from tokenizer.json). */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { LoralabError, throwIfAborted } from "../errors.js";
import type { ModelConfig } from "../io/hf-config.js";
import type { LongTaskOptions } from "../progress.js";
import { Tensor } from "../tensor/tensor.js";
import { type GgufTensorInfo, type GgufValue, writeGguf } from "./gguf.js";
import { packGgml } from "./pack.js";
import type { QuantizedModel } from "./pipeline.js";
import type { QuantizedMatrix } from "./quantizer.js";

const LAYER_NAMES: Record<string, string> = {
  "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
  "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
  input_layernorm: "attn_norm", post_attention_layernorm: "ffn_norm",
};

/** GGUF name of an HF tensor name (without the .weight suffix handling differences). */
export function ggufName(hf: string): string | undefined {
  if (hf === "model.embed_tokens.weight") return "token_embd.weight";
  if (hf === "model.norm.weight") return "output_norm.weight";
  if (hf === "lm_head.weight") return "output.weight";
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(hf);
  if (m && LAYER_NAMES[m[2]]) return `blk.${m[1]}.${LAYER_NAMES[m[2]]}.weight`;
  return undefined;
}

/** Row order llama.cpp expects for q/k (convert_hf_to_gguf `permute`): row h·hd + 2j + i takes HF row
 * h·hd + i·hd/2 + j. */
export function qkRowOrder(heads: number, rows: number): Int32Array {
  const hd = rows / heads;
  const order = new Int32Array(rows);
  for (let h = 0; h < heads; h++) for (let j = 0; j < hd / 2; j++) for (let i = 0; i < 2; i++) order[h * hd + 2 * j + i] = h * hd + i * (hd / 2) + j;
  return order;
}

function permuteRowsF32(w: Float32Array, K: number, order: Int32Array): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < order.length; r++) out.set(w.subarray(order[r] * K, (order[r] + 1) * K), r * K);
  return out;
}

function permuteRowsQ(q: QuantizedMatrix, order: Int32Array): QuantizedMatrix {
  const { K } = q;
  const ng = q.scales.length / q.N;
  const codes = new Uint8Array(q.codes.length);
  const scales = new Float32Array(q.scales.length);
  const zeros = new Uint8Array(q.zeros.length);
  for (let r = 0; r < order.length; r++) {
    const s = order[r];
    codes.set(q.codes.subarray(s * K, (s + 1) * K), r * K);
    scales.set(q.scales.subarray(s * ng, (s + 1) * ng), r * ng);
    zeros.set(q.zeros.subarray(s * ng, (s + 1) * ng), r * ng);
  }
  return { ...q, codes, scales, zeros };
}

/** tokenizer.json (BPE, SentencePiece-converted) → llama.cpp "llama" vocabulary: pieces by id, scores
 * (−rank of the first merge that builds a piece, so merge priority is preserved; −1e9 for pieces no
 * merge builds) and token types (1 normal, 2 unknown, 3 control, 6 byte). */
export async function llamaVocab(dir: string, vocabSize: number): Promise<{ tokens: string[]; scores: Float32Array; types: Int32Array; unk: number }> {
  let tj: { model?: { type?: string; vocab?: Record<string, number>; merges?: (string | string[])[]; unk_token?: string }; added_tokens?: { id: number; content: string; special?: boolean }[] };
  try {
    tj = JSON.parse(await readFile(`${dir}/tokenizer.json`, "utf8"));
  } catch (e) {
    throw new LoralabError(`--format gguf needs the model's tokenizer.json (${(e as Error).message})`);
  }
  if (tj.model?.type !== "BPE" || !tj.model.vocab) throw new LoralabError(`${dir}/tokenizer.json: --format gguf supports SentencePiece-style BPE vocabularies (Llama); got ${tj.model?.type}`);
  const tokens = new Array<string>(vocabSize).fill("");
  for (const [piece, id] of Object.entries(tj.model.vocab)) if (id < vocabSize) tokens[id] = piece;
  for (const a of tj.added_tokens ?? []) if (a.id < vocabSize) tokens[a.id] = a.content;
  const scores = new Float32Array(vocabSize).fill(-1e9);
  const seen = new Set<number>();
  (tj.model.merges ?? []).forEach((m, rank) => {
    const [a, b] = typeof m === "string" ? m.split(" ") : m;
    const id = tj.model!.vocab![a + b];
    if (id !== undefined && id < vocabSize && !seen.has(id)) {
      seen.add(id);
      scores[id] = -rank;
    }
  });
  const types = new Int32Array(vocabSize).fill(1);
  const special = new Set((tj.added_tokens ?? []).filter((a) => a.special).map((a) => a.id));
  const unkPiece = tj.model.unk_token ?? "<unk>";
  let unk = 0;
  tokens.forEach((t, id) => {
    if (/^<0x[0-9A-F]{2}>$/.test(t)) types[id] = 6;
    else if (t === unkPiece) { types[id] = 2; unk = id; }
    else if (special.has(id)) types[id] = 3;
  });
  return { tokens, scores, types, unk };
}

export async function writeGgufModel(qm: QuantizedModel, path: string, opts: LongTaskOptions): Promise<void> {
  const m = qm.model;
  const cfg: ModelConfig = m.config;
  const vocab = await llamaVocab(m.dir, cfg.vocabSize);
  const qtype = qm.bits === 4 ? "Q4_0" : "Q8_0";
  const kv: [string, GgufValue][] = [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: basename(m.dir) }],
    ["general.file_type", { type: "u32", value: qm.bits === 4 ? 2 : 7 }],
    ["general.quantization_version", { type: "u32", value: 2 }],
    ["general.alignment", { type: "u32", value: 32 }],
    ["llama.context_length", { type: "u32", value: cfg.maxPositionEmbeddings }],
    ["llama.embedding_length", { type: "u32", value: cfg.hiddenSize }],
    ["llama.block_count", { type: "u32", value: cfg.numLayers }],
    ["llama.feed_forward_length", { type: "u32", value: cfg.intermediateSize }],
    ["llama.rope.dimension_count", { type: "u32", value: cfg.headDim }],
    ["llama.attention.head_count", { type: "u32", value: cfg.numHeads }],
    ["llama.attention.head_count_kv", { type: "u32", value: cfg.numKvHeads }],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: cfg.rmsNormEps }],
    ["llama.rope.freq_base", { type: "f32", value: cfg.ropeTheta }],
    ["llama.vocab_size", { type: "u32", value: cfg.vocabSize }],
    ["tokenizer.ggml.model", { type: "string", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "string[]", value: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: "f32[]", value: vocab.scores }],
    ["tokenizer.ggml.token_type", { type: "i32[]", value: vocab.types }],
    ["tokenizer.ggml.unknown_token_id", { type: "u32", value: vocab.unk }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: true }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: false }],
  ];
  if (cfg.bosTokenId !== null) kv.push(["tokenizer.ggml.bos_token_id", { type: "u32", value: cfg.bosTokenId }]);
  if (cfg.eosTokenIds.length) kv.push(["tokenizer.ggml.eos_token_id", { type: "u32", value: cfg.eosTokenIds[0] }]);
  if (cfg.ropeScaling && cfg.ropeScaling.ropeType !== "default") throw new LoralabError(`--format gguf: rope_scaling '${cfg.ropeScaling.ropeType}' is not written by this exporter`);

  const infos: GgufTensorInfo[] = [];
  const source = new Map<string, string>();
  for (const name of m.names()) {
    const g = ggufName(name);
    if (!g) {
      if (/rotary_emb\.inv_freq$/.test(name)) continue;
      throw new LoralabError(`--format gguf: tensor '${name}' has no llama.cpp name (biases and extra tensors are not supported)`);
    }
    const e = m.entry(name);
    const module = name.slice(0, -".weight".length);
    const ne = [...e.shape].reverse();
    infos.push({ name: g, ne, type: qm.quantized.has(module) ? qtype : "F32" });
    source.set(g, name);
  }
  const qkOrder = (name: string, rows: number) => {
    if (/self_attn\.q_proj\.weight$/.test(name)) return qkRowOrder(cfg.numHeads, rows);
    if (/self_attn\.k_proj\.weight$/.test(name)) return qkRowOrder(cfg.numKvHeads, rows);
    return undefined;
  };
  await writeGguf(path, kv, infos, async (t) => {
    throwIfAborted(opts.signal);
    const name = source.get(t.name)!;
    const module = name.slice(0, -".weight".length);
    const q = qm.quantized.get(module);
    if (q) {
      const order = qkOrder(name, q.N);
      return packGgml(order ? permuteRowsQ(q, order) : q);
    }
    const o = qm.overrides.get(name);
    const tensor: Tensor = o ?? (await m.read(name));
    let w = tensor.toF32(true);
    const order = qkOrder(name, tensor.shape[0]);
    if (order) w = permuteRowsF32(w, tensor.shape[1], order);
    return new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
  });
}
