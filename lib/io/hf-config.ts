import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { LoralabError } from "../errors.js";
import { type DType, dtypeFromTorch } from "../tensor/dtype.js";

/** The fields of a Hugging Face `config.json` the library needs, normalised across families
 * (Llama, Mistral, Qwen2, Phi-3, Gemma use the Llama names; GPT-2 uses n_embd/n_layer/n_head). */
export interface ModelConfig {
  modelType: string;
  architectures: string[];
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  hiddenAct: string;
  tieWordEmbeddings: boolean;
  attentionBias: boolean;
  mlpBias: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** the dtype the weights were saved in, when the config says */
  torchDtype: DType | undefined;
  /** present when the model is already quantized (GPTQ/AWQ/...) */
  quantizationConfig: Record<string, unknown> | undefined;
  /** the parsed file, for writing an updated copy */
  raw: Record<string, unknown>;
}

export interface RopeScaling {
  ropeType: string;
  factor: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

/** Families whose tensor names follow Llama's (`model.layers.N.self_attn.q_proj`, ...). */
export const LLAMA_LIKE = new Set(["llama", "mistral", "qwen2", "phi3", "gemma", "gemma2", "qwen3"]);

export async function readConfigJson(dir: string): Promise<Record<string, unknown>> {
  const path = join(dir, "config.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new LoralabError(`${dir} is not a Hugging Face model directory: no config.json`);
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    return v;
  } catch (e) {
    throw new LoralabError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

export function parseConfig(raw: Record<string, unknown>, where = "config.json"): ModelConfig {
  const num = (...keys: string[]): number | undefined => {
    for (const k of keys) if (typeof raw[k] === "number") return raw[k] as number;
    return undefined;
  };
  const need = (value: number | undefined, name: string): number => {
    if (value === undefined || !Number.isFinite(value)) throw new LoralabError(`${where}: missing or invalid '${name}'`);
    return value;
  };
  const modelType = String(raw.model_type ?? "");
  const hiddenSize = need(num("hidden_size", "n_embd"), "hidden_size");
  const numHeads = need(num("num_attention_heads", "n_head"), "num_attention_heads");
  const numLayers = need(num("num_hidden_layers", "n_layer"), "num_hidden_layers");
  const vocabSize = need(num("vocab_size"), "vocab_size");
  const eos = raw.eos_token_id;
  const rs = raw.rope_scaling as Record<string, unknown> | null | undefined;
  const ropeScaling: RopeScaling | null = rs && typeof rs === "object"
    ? {
        ropeType: String(rs.rope_type ?? rs.type ?? "default"),
        factor: Number(rs.factor ?? 1),
        lowFreqFactor: rs.low_freq_factor as number | undefined,
        highFreqFactor: rs.high_freq_factor as number | undefined,
        originalMaxPositionEmbeddings: rs.original_max_position_embeddings as number | undefined,
      }
    : null;
  return {
    modelType,
    architectures: Array.isArray(raw.architectures) ? (raw.architectures as string[]) : [],
    hiddenSize,
    intermediateSize: num("intermediate_size", "n_inner") ?? 4 * hiddenSize,
    numLayers,
    numHeads,
    numKvHeads: num("num_key_value_heads") ?? numHeads,
    headDim: num("head_dim") ?? hiddenSize / numHeads,
    vocabSize,
    maxPositionEmbeddings: num("max_position_embeddings", "n_positions") ?? 2048,
    rmsNormEps: num("rms_norm_eps", "layer_norm_epsilon") ?? 1e-6,
    ropeTheta: num("rope_theta") ?? 10000,
    ropeScaling,
    hiddenAct: String(raw.hidden_act ?? raw.activation_function ?? "silu"),
    // transformers' default for tie_word_embeddings is true (PretrainedConfig)
    tieWordEmbeddings: raw.tie_word_embeddings === undefined ? true : raw.tie_word_embeddings === true,
    attentionBias: raw.attention_bias === true || modelType === "qwen2",
    mlpBias: raw.mlp_bias === true,
    bosTokenId: typeof raw.bos_token_id === "number" ? raw.bos_token_id : null,
    eosTokenIds: typeof eos === "number" ? [eos] : Array.isArray(eos) ? (eos as number[]) : [],
    torchDtype: dtypeFromTorch((raw.torch_dtype ?? raw.dtype) as string | undefined),
    quantizationConfig: raw.quantization_config as Record<string, unknown> | undefined,
    raw,
  };
}

export async function loadConfig(dir: string): Promise<ModelConfig> {
  return parseConfig(await readConfigJson(dir), join(dir, "config.json"));
}
