/** Writers of the quantized artifacts, all through AtomicOutputDir (nothing left behind on failure):
 * GPTQ and AWQ Hugging Face directories (SPEC §7, §8), the ONNX MatMulNBits model (§9), GGUF (§11) and a
 * plain dequantized float directory (for evaluation). */
import { chmod, copyFile, open, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { GraphBuilder, type OnnxDType } from "../engine/onnx-builder.js";
import { throwIfAborted } from "../errors.js";
import { AtomicOutputDir } from "../io/output-dir.js";
import { type TensorPlan, planBytes } from "../io/safetensors.js";
import { planShards, writeShardedModel } from "../io/sharded-writer.js";
import { emitCausalLm } from "../model/graph.js";
import { asGraphTensor, type TensorPlacer } from "../model/initializers.js";
import type { LinearWeights } from "../model/weights.js";
import { type DType } from "../tensor/dtype.js";
import { Tensor } from "../tensor/tensor.js";
import type { Format } from "./formats.js";
import { writeGgufModel } from "./gguf-model.js";
import { packAwq, packGptq } from "./pack.js";
import type { QuantizeOptions, QuantizedModel } from "./pipeline.js";
import { dequantize } from "./quantizer.js";
import { ONNX_QUANT_METHOD, quantizedLinear } from "./weight-source.js";

const TOOL = "loralab:0.1.0";
const MAX_SHARD = 5e9;

/** Writes the artifact; returns the bytes of everything written. */
export async function writeArtifact(format: Format, qm: QuantizedModel, opts: QuantizeOptions): Promise<number> {
  return AtomicOutputDir.write(opts.out, { overwrite: opts.overwrite }, async (dir) => {
    if (format === "gguf") await writeGgufModel(qm, dir.file("model.gguf"), opts);
    else if (format === "onnx") await writeOnnx(qm, dir.path, opts);
    else await writeHfDir(qm, format, dir.path, opts);
    return dirBytes(dir.path);
  });
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) n += (await stat(join(dir, f))).size;
  return n;
}

async function copyAux(qm: QuantizedModel, dir: string): Promise<void> {
  for (const f of qm.model.auxFiles) {
    await copyFile(join(qm.model.dir, f), join(dir, f));
    await chmod(join(dir, f), 0o644); // the source may be read-only
  }
}

/** A float tensor as stored: the AWQ override when there is one, in the source dtype. */
async function floatTensor(qm: QuantizedModel, name: string): Promise<Tensor> {
  const o = qm.overrides.get(name);
  if (!o) return qm.model.read(name);
  return o.to(qm.model.has(name) ? qm.model.entry(name).dtype : o.dtype);
}

/** Module paths not quantized, as relative names when every layer skips the same one. */
function notConverted(qm: QuantizedModel): string[] {
  const byRel = new Map<string, string[]>();
  for (const s of qm.skipped) {
    const rel = s.module.replace(/^model\.layers\.\d+\./, "");
    byRel.set(rel, [...(byRel.get(rel) ?? []), s.module]);
  }
  const L = qm.model.config.numLayers;
  return [...byRel].flatMap(([rel, mods]) => (mods.length === L ? [rel] : mods));
}

export function gptqQuantizationConfig(qm: QuantizedModel): Record<string, unknown> {
  const skipped = notConverted(qm);
  const rels = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];
  const cfg: Record<string, unknown> = {
    quant_method: "gptq",
    bits: qm.bits,
    group_size: qm.groupSize,
    desc_act: qm.descAct,
    sym: qm.sym,
    true_sequential: qm.trueSequential,
    damp_percent: qm.damp,
    static_groups: qm.staticGroups,
    checkpoint_format: "gptq",
    format: "gptq",
    lm_head: false,
    model_name_or_path: null,
    model_file_base_name: "model",
    pack_dtype: "int32",
    meta: { quantizer: [TOOL], uri: "https://github.com/loralab/loralab", method: qm.method, damp_percent: qm.damp, damp_auto_increment: 0.0025, static_groups: qm.staticGroups, true_sequential: qm.trueSequential, mse: 0.0 },
  };
  if (skipped.length) {
    cfg.modules_to_not_convert = skipped;
    cfg.modules_in_block_to_quantize = [rels.filter((r) => !skipped.includes(r))];
    cfg.dynamic = Object.fromEntries(skipped.map((m) => [`-:.*${m.replace(/\./g, "\\.")}$`, {}]));
  }
  return cfg;
}

export function awqQuantizationConfig(qm: QuantizedModel): Record<string, unknown> {
  const skipped = notConverted(qm);
  return { quant_method: "awq", zero_point: true, group_size: qm.groupSize, bits: 4, version: "gemm", modules_to_not_convert: skipped.length ? skipped : null };
}

async function writeHfDir(qm: QuantizedModel, format: "gptq" | "awq" | "dequantized" | Format, dir: string, opts: QuantizeOptions): Promise<void> {
  const plan: TensorPlan[] = [];
  const producers = new Map<string, () => Promise<Uint8Array>>();
  const add = (name: string, dtype: DType, shape: readonly number[], produce: () => Promise<Uint8Array> | Uint8Array) => {
    plan.push({ name, dtype, shape });
    producers.set(name, async () => produce());
  };
  const bytesOf = (a: Int32Array | Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (const name of qm.model.names()) {
    const module = name.endsWith(".weight") ? name.slice(0, -".weight".length) : "";
    const q = qm.quantized.get(module);
    if (!q) {
      const e = qm.model.entry(name);
      add(name, e.dtype, e.shape, async () => (await floatTensor(qm, name)).bytes());
      continue;
    }
    if (format === "gptq") {
      const t = packGptq(q);
      add(`${module}.qweight`, "I32", t.shapes.qweight, () => bytesOf(t.qweight));
      add(`${module}.qzeros`, "I32", t.shapes.qzeros, () => bytesOf(t.qzeros));
      add(`${module}.scales`, "F16", t.shapes.scales, () => bytesOf(t.scales));
      add(`${module}.g_idx`, "I32", t.shapes.gIdx, () => bytesOf(t.gIdx));
    } else if (format === "awq") {
      const t = packAwq(q);
      add(`${module}.qweight`, "I32", t.shapes.qweight, () => bytesOf(t.qweight));
      add(`${module}.qzeros`, "I32", t.shapes.qzeros, () => bytesOf(t.qzeros));
      add(`${module}.scales`, "F16", t.shapes.scales, () => bytesOf(t.scales));
    } else {
      const e = qm.model.entry(name);
      add(name, e.dtype, e.shape, () => Tensor.fromF32(dequantize(q), e.shape).to(e.dtype).bytes());
    }
  }
  const head = qm.quantized.get("lm_head");
  const untie = head !== undefined && !qm.model.has("lm_head.weight");
  if (untie && format === "dequantized") add("lm_head.weight", "F32", [head.N, head.K], () => Tensor.fromF32(dequantize(head), [head.N, head.K]).bytes());
  // the writer checks sizes against the plan; metadata as AutoGPTQ writes it
  await writeShardedModel(dir, planShards(plan, MAX_SHARD), async (t) => {
    throwIfAborted(opts.signal);
    const bytes = await producers.get(t.name)!();
    if (bytes.byteLength !== planBytes(t)) throw new Error(`internal: ${t.name} has ${bytes.byteLength} bytes, planned ${planBytes(t)}`);
    return bytes;
  });
  const config = { ...qm.model.config.raw };
  if (untie) config.tie_word_embeddings = false; // the quantized lm_head no longer equals the embedding
  if (format === "gptq") {
    const qc = gptqQuantizationConfig(qm);
    config.quantization_config = qc;
    await writeFile(join(dir, "quantize_config.json"), JSON.stringify(qc, null, 2) + "\n");
  } else if (format === "awq") config.quantization_config = awqQuantizationConfig(qm);
  await writeFile(join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  await copyAux(qm, dir);
}

// ---------------------------------------------------------------------------------------------------
// ONNX: the engine's causal-LM graph with MatMulNBits linears; every initializer lives in
// model.safetensors (ORT external data points at the safetensors data offsets), so the same bytes serve
// plain onnxruntime (model.onnx) and the loralab engine (config.json + model.safetensors).

class SafetensorsPlacer implements TensorPlacer {
  private readonly placed = new Map<string, string>();
  private readonly entries: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
  private offset = 0;
  bytes = 0;
  private constructor(private readonly g: GraphBuilder, private readonly fh: import("node:fs/promises").FileHandle, private readonly headerBytes: number, readonly file: string) {}

  /** `headerBytes`: space reserved for the JSON header (padded with spaces), so data offsets are known
   * while the data streams out. */
  static async create(g: GraphBuilder, path: string, file: string, headerBytes: number): Promise<SafetensorsPlacer> {
    return new SafetensorsPlacer(g, await open(path, "w"), headerBytes, file);
  }

  place(name: string, t: Tensor): string {
    const known = this.placed.get(name);
    if (known) return known;
    t = asGraphTensor(t);
    const bytes = t.bytes();
    const at = 8 + this.headerBytes + this.offset;
    this.pending.push(this.fh.write(bytes, 0, bytes.byteLength, at).then(() => undefined));
    this.g.externalInitializer(name, t.dtype as OnnxDType, t.shape, this.file, at, bytes.byteLength);
    this.entries.push({ name, dtype: t.dtype, shape: [...t.shape], begin: this.offset, end: this.offset + bytes.byteLength });
    this.offset += bytes.byteLength;
    this.bytes += bytes.byteLength;
    this.placed.set(name, name);
    return name;
  }
  private pending: Promise<void>[] = [];

  async close(): Promise<void> {
    await Promise.all(this.pending);
    const header: Record<string, unknown> = { __metadata__: { format: "pt", producer: TOOL } };
    for (const e of this.entries) header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [e.begin, e.end] };
    const json = Buffer.from(JSON.stringify(header), "utf8");
    if (json.length > this.headerBytes) throw new Error(`internal: safetensors header needs ${json.length} bytes, ${this.headerBytes} reserved`);
    const head = Buffer.alloc(8 + this.headerBytes, 0x20);
    head.writeBigUInt64LE(BigInt(this.headerBytes), 0);
    json.copy(head, 8);
    await this.fh.write(head, 0, head.length, 0);
    await this.fh.sync();
    await this.fh.close();
  }
}

async function writeOnnx(qm: QuantizedModel, dir: string, opts: QuantizeOptions): Promise<void> {
  const m = qm.model;
  const cfg = m.config;
  const g = new GraphBuilder("loralab_matmulnbits");
  // room for every tensor's header entry; 8 + header is page aligned
  const headerBytes = Math.ceil((4096 + 256 * (m.names().length + 3 * qm.quantized.size)) / 4096) * 4096 - 8;
  const placer = await SafetensorsPlacer.create(g, join(dir, "model.safetensors"), "model.safetensors", headerBytes);
  try {
    const linear = async (module: string): Promise<LinearWeights> => {
      const bias = m.has(`${module}.bias`) ? await m.read(`${module}.bias`) : undefined;
      const q = qm.quantized.get(module);
      if (q) return quantizedLinear(q, module, bias);
      const weightName = module === "lm_head" ? m.lmHeadName() : `${module}.weight`;
      return { kind: "dense", weight: await floatTensor(qm, weightName), weightName, bias };
    };
    await emitCausalLm({ g, placer, cfg, tensor: (n) => floatTensor(qm, n), linear }, cfg.maxPositionEmbeddings, { signal: opts.signal });
  } finally {
    await placer.close();
  }
  await writeFile(join(dir, "model.onnx"), g.toBytes());
  const config: Record<string, unknown> = { ...cfg.raw, torch_dtype: "float32" };
  const skipped = notConverted(qm);
  config.quantization_config = {
    quant_method: ONNX_QUANT_METHOD, bits: qm.bits, group_size: qm.groupSize, sym: qm.sym, method: qm.method, accuracy_level: 4,
    onnx_model: "model.onnx", modules_to_not_convert: skipped.length ? skipped : null, producer: TOOL,
  };
  await writeFile(join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  await copyAux(qm, dir);
}
