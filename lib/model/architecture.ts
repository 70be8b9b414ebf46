import { LoralabError } from "../errors.js";
import type { ModelConfig } from "../io/hf-config.js";

/** Model families the engine runs: decoder-only, Llama tensor names, RMSNorm, RoPE, SwiGLU, GQA. */
const SUPPORTED_TYPES = new Set(["llama", "mistral", "qwen2"]);
const SUPPORTED_ARCHS = new Set(["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"]);

export function checkArchitecture(cfg: ModelConfig, where: string): void {
  const ok = SUPPORTED_TYPES.has(cfg.modelType) || cfg.architectures.some((a) => SUPPORTED_ARCHS.has(a));
  if (!ok)
    throw new LoralabError(`${where}: unsupported architecture (model_type '${cfg.modelType}', architectures [${cfg.architectures.join(", ")}]); the engine runs llama, mistral and qwen2`);
  if (cfg.hiddenAct !== "silu" && cfg.hiddenAct !== "swish") throw new LoralabError(`${where}: hidden_act '${cfg.hiddenAct}' is not supported (only silu/SwiGLU)`);
  if (cfg.numHeads % cfg.numKvHeads !== 0) throw new LoralabError(`${where}: num_attention_heads ${cfg.numHeads} is not a multiple of num_key_value_heads ${cfg.numKvHeads}`);
  if (cfg.headDim % 2 !== 0) throw new LoralabError(`${where}: head_dim ${cfg.headDim} must be even for RoPE`);
  const rs = cfg.ropeScaling;
  if (rs && !["default", "linear", "llama3"].includes(rs.ropeType)) throw new LoralabError(`${where}: rope_scaling type '${rs.ropeType}' is not supported (default, linear, llama3)`);
}

export const ATTN_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj"] as const;
export const MLP_PROJ = ["gate_proj", "up_proj", "down_proj"] as const;

/** The seven linear module paths of decoder layer `i`, in execution order. */
export function layerLinears(i: number): string[] {
  return [...ATTN_PROJ.map((p) => `model.layers.${i}.self_attn.${p}`), ...MLP_PROJ.map((p) => `model.layers.${i}.mlp.${p}`)];
}

/** Expected (out, in) of a linear module from the config. */
export function linearShape(cfg: ModelConfig, module: string): [number, number] {
  const d = cfg.hiddenSize, hd = cfg.headDim;
  const leaf = module.slice(module.lastIndexOf(".") + 1);
  switch (leaf) {
    case "q_proj": return [cfg.numHeads * hd, d];
    case "k_proj": case "v_proj": return [cfg.numKvHeads * hd, d];
    case "o_proj": return [d, cfg.numHeads * hd];
    case "gate_proj": case "up_proj": return [cfg.intermediateSize, d];
    case "down_proj": return [d, cfg.intermediateSize];
    case "lm_head": return [cfg.vocabSize, d];
    default: throw new LoralabError(`'${module}' is not a linear layer of a Llama-family model`);
  }
}

/** RoPE inverse frequencies (head_dim/2), with linear or Llama-3 scaling as transformers computes them. */
export function ropeInvFreq(cfg: ModelConfig): Float64Array {
  const half = cfg.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(cfg.ropeTheta, (2 * i) / cfg.headDim);
  const rs = cfg.ropeScaling;
  if (!rs || rs.ropeType === "default") return inv;
  if (rs.ropeType === "linear") return inv.map((f) => f / rs.factor);
  // llama3: keep high frequencies, divide low ones by factor, interpolate between
  const old = rs.originalMaxPositionEmbeddings ?? 8192;
  const lowF = rs.lowFreqFactor ?? 1, highF = rs.highFreqFactor ?? 4;
  const lowWave = old / lowF, highWave = old / highF;
  return inv.map((f) => {
    const wave = (2 * Math.PI) / f;
    if (wave < highWave) return f;
    if (wave > lowWave) return f / rs.factor;
    const smooth = (old / wave - lowF) / (highF - lowF);
    return (1 - smooth) * (f / rs.factor) + smooth * f;
  });
}
