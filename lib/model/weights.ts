/**
 * Weight sources: where the engine gets a model's tensors from.
 *
 * The engine (lib/model/graph.ts) never opens files itself; it asks a `WeightSource` for
 *   - `tensor(name)`: plain tensors by Hugging Face name (embedding, RMSNorm weights), and
 *   - `linear(module)`: one linear layer by module path (`model.layers.3.mlp.down_proj`, `lm_head`),
 *     returned as `LinearWeights`, one of
 *       - `dense`: W (out, in) [+ bias (out,)]                         -> Gemm(x, W, b, transB=1)
 *       - `nbits`: ORT `com.microsoft.MatMulNBits` operands           -> MatMulNBits(x, B, scales, zp, g_idx, bias)
 *       - `lora`:  a dense or nbits base plus A (r,in), B (out,r), scaling, optional lora bias and DoRA
 *                  magnitude                                         -> base(x) + s·B(Ax)  (DoRA: SPEC §3.5)
 * Float tensors may be F32/F16/BF16: the engine computes in float32 and converts once when building.
 *
 * Implementations here: `DenseWeightSource` (an HF safetensors directory, single file or sharded) and
 * `AdapterWeightSource` (any source + a PEFT adapter, giving `lora` linears = "base + dynamic LoRA").
 * A quantized directory (config.json has `quantization_config`) is opened by `openWeightSource` through
 * `lib/quant/weight-source.ts`, which must export
 *   `openQuantizedWeightSource(model: ModelDir): Promise<WeightSource>`
 * returning `nbits` linears (the quantization issue provides it).
 */
import { LoralabError } from "../errors.js";
import type { ModelConfig } from "../io/hf-config.js";
import { ModelDir } from "../io/model-dir.js";
import type { Adapter } from "../lora/types.js";
import { Tensor } from "../tensor/tensor.js";
import { checkArchitecture, linearShape } from "./architecture.js";

export interface DenseLinear {
  kind: "dense";
  /** (out, in) as stored by Hugging Face nn.Linear */
  weight: Tensor;
  /** the tensor's name; two linears with the same name share one initializer (tied lm_head) */
  weightName: string;
  bias?: Tensor;
}

/** Operands of `com.microsoft.MatMulNBits` (SPEC §9): Y = X · dequant(B)ᵀ with the logical weight (N=out, K=in). */
export interface NBitsLinear {
  kind: "nbits";
  K: number;
  N: number;
  bits: number;
  blockSize: number;
  /** U8 (N, ceil(K/blockSize), blockSize·bits/8) */
  packed: Tensor;
  /** float (N·k_blocks) or (N, k_blocks) */
  scales: Tensor;
  /** U8 packed (N·ceil(k_blocks·bits/8)) or float (N, k_blocks); absent = 2^(bits-1) */
  zeroPoints?: Tensor;
  /** I32 (K,) — deprecated in ORT, only when a checkpoint needs it */
  gIdx?: Tensor;
  /** I64 (K,): when set, the input's columns are gathered in this order first (act-order checkpoints
   * whose K is reordered into contiguous groups at load time; lib/quant) */
  inputPerm?: Tensor;
  bias?: Tensor;
  /** default 4 (int8 activations per block: ~2x faster decode on CPU) */
  accuracyLevel?: number;
}

export interface LoraLinear {
  kind: "lora";
  base: DenseLinear | NBitsLinear;
  /** (r, in) */
  A: Tensor;
  /** (out, r) */
  B: Tensor;
  /** alpha/r or alpha/sqrt(r), times the user multiplier */
  scaling: number;
  /** lora_B.bias (out,) */
  loraBias?: Tensor;
  /** DoRA magnitude (out,); needs a dense base */
  magnitude?: Tensor;
}

export type LinearWeights = DenseLinear | NBitsLinear | LoraLinear;

export interface WeightSource {
  readonly config: ModelConfig;
  /** where the weights come from, for messages and reports */
  readonly description: string;
  /** the directory holding tokenizer.json (the base model's for an adapter) */
  readonly tokenizerDir: string;
  has(name: string): boolean;
  tensor(name: string): Promise<Tensor>;
  linear(module: string): Promise<LinearWeights>;
  close(): Promise<void>;
}

/** out/in of a linear as the engine will use it (checks nothing). */
export function linearDims(lw: LinearWeights): { out: number; in: number } {
  if (lw.kind === "dense") return { out: lw.weight.shape[0], in: lw.weight.shape[1] };
  if (lw.kind === "nbits") return { out: lw.N, in: lw.K };
  return linearDims(lw.base);
}

/** A Hugging Face safetensors model directory with float weights. */
export class DenseWeightSource implements WeightSource {
  readonly description: string;
  readonly tokenizerDir: string;
  constructor(readonly model: ModelDir) {
    this.description = model.dir;
    this.tokenizerDir = model.dir;
  }
  get config(): ModelConfig {
    return this.model.config;
  }
  has(name: string): boolean {
    return this.model.has(name);
  }
  async tensor(name: string): Promise<Tensor> {
    return this.model.read(name);
  }
  async linear(module: string): Promise<LinearWeights> {
    const weightName = module === "lm_head" ? this.model.lmHeadName() : `${module}.weight`;
    const weight = await this.model.read(weightName);
    const biasName = `${module}.bias`;
    const bias = this.model.has(biasName) ? await this.model.read(biasName) : undefined;
    return { kind: "dense", weight, weightName, bias };
  }
  close(): Promise<void> {
    return this.model.close();
  }
}

/** Opens a model directory as a weight source: dense float weights, or quantized ones through lib/quant. */
export async function openWeightSource(dir: string): Promise<WeightSource> {
  const model = await ModelDir.open(dir);
  try {
    checkArchitecture(model.config, model.dir);
    if (model.config.quantizationConfig) {
      let mod: { openQuantizedWeightSource?: (m: ModelDir) => Promise<WeightSource> };
      try {
        mod = await import(QUANT_MODULE);
      } catch (e) {
        throw new LoralabError(`${model.dir} is a quantized model (config.json has quantization_config), and this build cannot load quantized models (${(e as Error).message})`);
      }
      if (!mod.openQuantizedWeightSource) throw new LoralabError(`${model.dir}: lib/quant/weight-source does not export openQuantizedWeightSource`);
      return await mod.openQuantizedWeightSource(model);
    }
    return new DenseWeightSource(model);
  } catch (e) {
    await model.close();
    throw e;
  }
}
// a variable keeps tsc from resolving a module another part of the project provides
const QUANT_MODULE = "../quant/weight-source.js";

/** A base source plus a PEFT adapter applied dynamically: every adapted linear becomes a `lora` linear;
 * replacements (modules_to_save, biases) and trainable-token rows replace base tensors; embedding LoRA
 * is folded into the embedding table (a gather costs the same either way). */
export class AdapterWeightSource implements WeightSource {
  readonly description: string;
  constructor(readonly base: WeightSource, readonly adapter: Adapter, readonly multiplier = 1) {
    this.description = `${base.description} + ${adapter.dir}`;
    this.validate();
  }
  get config(): ModelConfig {
    return this.base.config;
  }
  get tokenizerDir(): string {
    return this.base.tokenizerDir;
  }
  has(name: string): boolean {
    return this.base.has(name) || this.adapter.replacements.has(name);
  }

  /** An adapter for another model fails here, naming the module. */
  private validate(): void {
    const cfg = this.base.config;
    for (const m of this.adapter.modules.values()) {
      if (m.fanInFanOut) throw new LoralabError(`${this.adapter.dir}: module ${m.module} uses fan_in_fan_out (GPT-2 Conv1D), which Llama-family models do not have — the adapter is for another model`);
      if (!this.base.has(m.target) && !(m.module === "lm_head" && cfg.tieWordEmbeddings)) throw new LoralabError(`${this.adapter.dir}: adapter targets ${m.target}, which base model ${this.base.description} does not have — the adapter is for another model`);
      if (m.kind !== "linear") continue;
      const [out, inp] = linearShape(cfg, m.module);
      const [ar, ain] = m.A.shape;
      const [bout, br] = m.B.shape;
      if (ain !== inp || bout !== out || ar !== m.r || br !== m.r)
        throw new LoralabError(`${this.adapter.dir}: ${m.module} has lora_A [${m.A.shape}] and lora_B [${m.B.shape}], but the base layer is (${out}, ${inp}) — the adapter is for another model`);
    }
  }

  async tensor(name: string): Promise<Tensor> {
    let t = this.adapter.replacements.get(name) ?? (await this.base.tensor(name));
    const emb = [...this.adapter.modules.values()].find((m) => m.kind === "embedding" && m.target === name);
    const rows = this.adapter.trainableTokens.get(name);
    if (!emb && !rows) return t;
    const [V, D] = t.shape;
    const w = t.toF32(true);
    if (emb) {
      // ΔW (V, D) = s · (B A)ᵀ with A (r, V), B (D, r)
      const A = emb.A.toF32(), B = emb.B.toF32(), r = emb.r, s = emb.scaling * this.multiplier;
      for (let v = 0; v < V; v++)
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let k = 0; k < r; k++) acc += B[d * r + k] * A[k * V + v];
          w[v * D + d] += s * acc;
        }
    }
    if (rows) {
      const src = rows.rows.toF32();
      rows.indices.forEach((idx, i) => w.set(src.subarray(i * D, (i + 1) * D), idx * D));
    }
    t = Tensor.fromF32(w, [V, D]);
    return t;
  }

  async linear(module: string): Promise<LinearWeights> {
    const replaced = this.adapter.replacements.get(`${module}.weight`);
    const base = await this.base.linear(module);
    const baseLin: DenseLinear | NBitsLinear = base.kind === "lora" ? fail(`${module}: the base already carries a LoRA branch`) : base;
    if (replaced && baseLin.kind === "dense") Object.assign(baseLin, { weight: replaced, weightName: `${module}.weight` });
    const replacedBias = this.adapter.replacements.get(`${module}.bias`);
    if (replacedBias) baseLin.bias = replacedBias;
    const m = this.adapter.modules.get(`${module}.weight`) ?? (module === "lm_head" ? this.adapter.modules.get("lm_head.weight") : undefined);
    if (!m || m.kind !== "linear") return baseLin;
    if (m.magnitude && baseLin.kind !== "dense") throw new LoralabError(`${module}: DoRA needs a float base weight, not a quantized one`);
    return { kind: "lora", base: baseLin, A: m.A, B: m.B, scaling: m.scaling * this.multiplier, loraBias: m.bias, magnitude: m.magnitude };
  }

  close(): Promise<void> {
    return this.base.close();
  }
}

function fail(msg: string): never {
  throw new LoralabError(msg);
}

/** Tensors held in memory under their HF names (tests, merged-in-memory models). */
export class MapWeightSource implements WeightSource {
  constructor(readonly config: ModelConfig, readonly tensors: Map<string, Tensor>, readonly description = "in-memory model", readonly tokenizerDir = "") {
    checkArchitecture(config, description);
  }
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  async tensor(name: string): Promise<Tensor> {
    const t = this.tensors.get(name);
    if (!t) throw new LoralabError(`model ${this.description} has no tensor '${name}'`);
    return t;
  }
  async linear(module: string): Promise<LinearWeights> {
    const weightName = module === "lm_head" && !this.tensors.has("lm_head.weight") ? "model.embed_tokens.weight" : `${module}.weight`;
    return { kind: "dense", weight: await this.tensor(weightName), weightName, bias: this.tensors.get(`${module}.bias`) };
  }
  async close(): Promise<void> {}
}
