/** Loads quantized directories for the engine (`openWeightSource` calls `openQuantizedWeightSource`):
 * GPTQ (v1/v2 zeros), AutoAWQ GEMM and loralab's ONNX output, each linear as `com.microsoft.MatMulNBits`
 * operands (accuracy_level 4, block = group size). Act-order g_idx: ORT's deprecated g_idx input does not
 * reproduce the dequantized weight (measured), so K is reordered into contiguous groups and the input is
 * gathered in that order. Layouts MatMulNBits cannot run — 3-bit, groups that are not a power of two
 * ≥ 16 — are served as exact dequantized float32 weights. */
import { LoralabError } from "../errors.js";
import type { ModelConfig } from "../io/hf-config.js";
import type { ModelDir } from "../io/model-dir.js";
import { linearShape } from "../model/architecture.js";
import type { LinearWeights, NBitsLinear, WeightSource } from "../model/weights.js";
import { Tensor } from "../tensor/tensor.js";
import { isMatMulNBitsBlock, packMatMulNBits, unpackAwq, unpackGptq } from "./pack.js";
import { type Bits, type QuantizedMatrix, dequantize } from "./quantizer.js";

/** quant_method of loralab's ONNX output directory (MatMulNBits operands in model.safetensors). */
export const ONNX_QUANT_METHOD = "matmulnbits";

function trivialGroups(q: QuantizedMatrix): boolean {
  for (let k = 0; k < q.K; k++) if (q.gIdx[k] !== Math.floor(k / q.groupSize)) return false;
  return true;
}

/** Act-order: the columns reordered so every group is contiguous (stable by g_idx), or undefined when
 * the groups are not all of the group size. Returns the reordered matrix and the input order. */
export function reorderActOrder(q: QuantizedMatrix): { q: QuantizedMatrix; perm: Int32Array } | undefined {
  const { N, K, groupSize: G } = q;
  const perm = Int32Array.from({ length: K }, (_, k) => k).sort((a, b) => q.gIdx[a] - q.gIdx[b] || a - b);
  for (let i = 0; i < K; i++) if (q.gIdx[perm[i]] !== Math.floor(i / G)) return undefined;
  const codes = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) for (let i = 0; i < K; i++) codes[n * K + i] = q.codes[n * K + perm[i]];
  return { q: { ...q, codes, gIdx: Int32Array.from({ length: K }, (_, i) => Math.floor(i / G)) }, perm };
}

/** MatMulNBits operands for a quantized weight (zero points omitted when all equal the op default). */
export function toNBitsLinear(q: QuantizedMatrix, bias?: Tensor, inputPerm?: Int32Array): NBitsLinear {
  const t = packMatMulNBits(q);
  const dflt = 1 << (q.bits - 1);
  const needZp = q.zeros.some((z) => z !== dflt);
  return {
    kind: "nbits",
    K: q.K,
    N: q.N,
    bits: q.bits,
    blockSize: t.blockSize,
    packed: new Tensor("U8", t.shapes.B, t.B),
    scales: new Tensor("F32", t.shapes.scales, t.scales),
    zeroPoints: needZp ? new Tensor("U8", t.shapes.zeroPoints, t.zeroPoints) : undefined,
    inputPerm: inputPerm ? new Tensor("I64", [q.K], BigInt64Array.from(inputPerm, (v) => BigInt(v))) : undefined,
    bias,
    accuracyLevel: 4,
  };
}

/** MatMulNBits when it can run the layout (act-order: K reordered, input gathered), else the exact
 * dequantized float32 weight (3-bit, groups that are not a power of two ≥ 16). */
export function quantizedLinear(q: QuantizedMatrix, module: string, bias?: Tensor): LinearWeights {
  const fits = (q.bits === 2 || q.bits === 4 || q.bits === 8) && isMatMulNBitsBlock(q.groupSize) && q.K % q.groupSize === 0;
  if (fits && trivialGroups(q)) return toNBitsLinear(q, bias);
  const r = fits ? reorderActOrder(q) : undefined;
  if (r) return toNBitsLinear(r.q, bias, r.perm);
  return { kind: "dense", weight: Tensor.fromF32(dequantize(q), [q.N, q.K]), weightName: `${module}.weight`, bias };
}

export async function openQuantizedWeightSource(model: ModelDir): Promise<WeightSource> {
  const qc = model.config.quantizationConfig ?? {};
  const method = String(qc.quant_method ?? "");
  if (method !== "gptq" && method !== "awq" && method !== ONNX_QUANT_METHOD)
    throw new LoralabError(`${model.dir}: quantization_config.quant_method '${method}' is not supported (gptq, awq, or loralab's onnx output)`);
  return new QuantizedWeightSource(model, method, qc);
}

class QuantizedWeightSource implements WeightSource {
  readonly description: string;
  readonly tokenizerDir: string;
  private readonly bits: Bits;
  private readonly sym: boolean;
  private readonly checkpointFormat: "gptq" | "gptq_v2";

  constructor(readonly model: ModelDir, readonly method: string, readonly qc: Record<string, unknown>) {
    this.description = `${model.dir} (${method})`;
    this.tokenizerDir = model.dir;
    this.bits = Number(qc.bits ?? qc.w_bit ?? 4) as Bits;
    this.sym = qc.sym === undefined ? true : qc.sym === true;
    const fmt = String(qc.checkpoint_format ?? qc.format ?? "gptq");
    this.checkpointFormat = fmt === "gptq_v2" ? "gptq_v2" : "gptq";
    if (method === "gptq" && !["gptq", "gptq_v2"].includes(fmt)) throw new LoralabError(`${model.dir}: GPTQ checkpoint_format '${fmt}' is not supported (gptq or gptq_v2)`);
    if (method === "awq" && String(qc.version ?? qc.format ?? "gemm").toLowerCase() !== "gemm") throw new LoralabError(`${model.dir}: AWQ version '${String(qc.version)}' is not supported (gemm only)`);
  }

  get config(): ModelConfig {
    return this.model.config;
  }
  has(name: string): boolean {
    return this.model.has(name);
  }
  tensor(name: string): Promise<Tensor> {
    return this.model.read(name);
  }

  async linear(module: string): Promise<LinearWeights> {
    const m = this.model;
    const bias = m.has(`${module}.bias`) ? await m.read(`${module}.bias`) : undefined;
    if (module !== "lm_head" || m.has("lm_head.qweight") || m.has("lm_head.qweight_nbits")) {
      const [N, K] = linearShape(this.config, module);
      if (this.method === "gptq" && m.has(`${module}.qweight`)) {
        const [qweight, qzeros, scales, gIdx] = await Promise.all(["qweight", "qzeros", "scales", "g_idx"].map((t) => m.read(`${module}.${t}`)));
        const q = unpackGptq({ qweight: qweight.data as Int32Array, qzeros: qzeros.data as Int32Array, scales: scales.to("F16").data as Uint16Array, gIdx: gIdx.data as Int32Array }, N, K, this.bits, this.sym, this.checkpointFormat);
        return quantizedLinear(q, module, bias);
      }
      if (this.method === "awq" && m.has(`${module}.qweight`)) {
        const [qweight, qzeros, scales] = await Promise.all(["qweight", "qzeros", "scales"].map((t) => m.read(`${module}.${t}`)));
        const q = unpackAwq({ qweight: qweight.data as Int32Array, qzeros: qzeros.data as Int32Array, scales: scales.to("F16").data as Uint16Array }, N, K);
        return quantizedLinear(q, module, bias);
      }
      if (this.method === ONNX_QUANT_METHOD && m.has(`${module}.qweight_nbits`)) {
        const packed = await m.read(`${module}.qweight_nbits`);
        const zpName = `${module}.zero_points_nbits`;
        const permName = `${module}.input_perm_nbits`;
        return {
          kind: "nbits", K, N, bits: this.bits, blockSize: packed.shape[2] * 8 / this.bits,
          packed, scales: await m.read(`${module}.scales_nbits`), zeroPoints: m.has(zpName) ? await m.read(zpName) : undefined,
          inputPerm: m.has(permName) ? await m.read(permName) : undefined, bias, accuracyLevel: 4,
        };
      }
    }
    const weightName = module === "lm_head" ? m.lmHeadName() : `${module}.weight`;
    return { kind: "dense", weight: await m.read(weightName), weightName, bias };
  }

  close(): Promise<void> {
    return this.model.close();
  }
}
