import type { Tensor } from "../tensor/tensor.js";

/** One LoRA-adapted module of a PEFT adapter, resolved against its config (rank/alpha patterns,
 * rsLoRA). `A` and `B` are kept in their stored dtype; callers convert with `toF32()`. */
export interface LoraModule {
  /** module path in the base model, e.g. `model.layers.0.self_attn.q_proj` (no `base_model.model.`) */
  module: string;
  /** the base tensor the delta applies to: `${module}.weight` */
  target: string;
  kind: "linear" | "embedding";
  /** linear: (r, in); embedding: lora_embedding_A (r, num_embeddings) */
  A: Tensor;
  /** linear: (out, r); embedding: lora_embedding_B (embedding_dim, r) */
  B: Tensor;
  r: number;
  alpha: number;
  /** alpha / r, or alpha / sqrt(r) with rsLoRA; the user multiplier is applied on top by callers */
  scaling: number;
  /** base stores (in, out) (GPT-2 Conv1D) */
  fanInFanOut: boolean;
  /** lora_B.bias (out,) when the adapter has lora_bias */
  bias?: Tensor;
  /** DoRA magnitude vector (out,) */
  magnitude?: Tensor;
}

/** A loaded PEFT LoRA adapter (small enough to hold in memory). */
export interface Adapter {
  dir: string;
  /** adapter_config.json as parsed */
  config: Record<string, unknown>;
  /** keyed by base target tensor name (`…q_proj.weight`) */
  modules: Map<string, LoraModule>;
  /** full tensors that replace base tensors: modules_to_save, bias="all"/"lora_only" biases, resized
   * embeddings; keyed by base tensor name */
  replacements: Map<string, Tensor>;
  /** trainable tokens: new row values for the listed rows of an embedding; keyed by base tensor name */
  trainableTokens: Map<string, { indices: number[]; rows: Tensor }>;
}
