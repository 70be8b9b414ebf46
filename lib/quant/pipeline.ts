/** `quantizeModel`: validate everything first, then quantize a Hugging Face Llama-family directory with
 * RTN, GPTQ or AWQ (layer by layer on ONNX Runtime through the engine's DecoderLayerRunner), then write
 * one artifact (GPTQ / AWQ directories, ONNX MatMulNBits model, GGUF) atomically. */
import { readdir, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { LoralabError, throwIfAborted } from "../errors.js";
import { ModelDir } from "../io/model-dir.js";
import type { ModelConfig } from "../io/hf-config.js";
import { checkArchitecture, layerLinears, linearShape } from "../model/architecture.js";
import { DecoderLayerRunner, type LayerActivations } from "../model/layer-runner.js";
import { TextTokenizer } from "../model/tokenizer.js";
import type { LongTaskOptions } from "../progress.js";
import { Tensor } from "../tensor/tensor.js";
import { N_GRID, clipSearch, meanAbsColumns, searchScales } from "./awq.js";
import { calibrationWindows, readCalibrationText } from "./calibration.js";
import { type Format, type Method, checkCombination, moduleMisfit } from "./formats.js";
import { type GptqHessian, HessianAccumulator, type HessianArithmetic, gptqQuantize, prepareHessian } from "./gptq.js";
import { OrtMath } from "./ort-math.js";
import { type Bits, type QuantRule, type QuantizedMatrix, assertFinite, dequantize, quantizationError, relativeError } from "./quantizer.js";
import { quantizeRtnFast } from "./rtn-kernel.js";
import { type ModuleReport, QuantReport, type SkippedModule } from "./report.js";
import { writeArtifact } from "./writers.js";

export interface QuantizeOptions extends LongTaskOptions {
  model: string;
  out: string;
  method: Method;
  format: Format;
  bits: number;
  groupSize: number;
  /** default: true for rtn/gptq (AutoGPTQ), false for awq */
  sym?: boolean;
  /** RTN only: "gptq" (§4.2, default) or "minmax" (§4.1, AWQ's RTN baseline; default for --format awq) */
  rule?: QuantRule;
  descAct?: boolean;
  staticGroups?: boolean;
  trueSequential?: boolean;
  damp?: number;
  /** GPTQ: how XᵀX is summed — "int" (exact integer products on a 14-bit grid, default) or "float32" */
  hessian?: HessianArithmetic;
  calib?: string;
  /** pre-tokenized calibration windows (equal lengths), instead of `calib` (notebooks, tests) */
  windows?: number[][];
  calibSamples?: number;
  seqLen?: number;
  seed?: number;
  overwrite?: boolean;
  threads?: number;
  /** also quantize lm_head (GPTQModel's `lm_head`; RTN and --format onnx only) */
  lmHead?: boolean;
  /** also write the same quantization as a plain float directory here (dequantized weights), to
   * evaluate exactly what the artifact holds */
  dequantizedTwin?: string;
}

/** Everything a writer needs about the quantized model. */
export interface QuantizedModel {
  model: ModelDir;
  bits: Bits;
  groupSize: number;
  sym: boolean;
  method: Method;
  descAct: boolean;
  staticGroups: boolean;
  trueSequential: boolean;
  damp: number;
  hessian: HessianArithmetic;
  /** module path → quantized weight (codes in the basis they are stored in) */
  quantized: Map<string, QuantizedMatrix>;
  /** tensor name → replacement float tensor (AWQ: scaled norms and previous linears) */
  overrides: Map<string, Tensor>;
  skipped: SkippedModule[];
}

/** AutoGPTQ's true-sequential groups for Llama, and which layer-runner input feeds each. */
const SEQUENTIAL_GROUPS: { modules: string[]; input: keyof LayerActivations }[] = [
  { modules: ["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"], input: "attnIn" },
  { modules: ["self_attn.o_proj"], input: "oIn" },
  { modules: ["mlp.up_proj", "mlp.gate_proj"], input: "mlpIn" },
  { modules: ["mlp.down_proj"], input: "downIn" },
];

export async function quantizeModel(opts: QuantizeOptions): Promise<QuantReport> {
  const t0 = performance.now();
  const { method, format } = opts;
  const sym = opts.sym ?? (method === "awq" || (method === "rtn" && format === "awq") ? false : true);
  const bits = opts.bits as Bits;
  checkCombination(method, format, bits, opts.groupSize, sym);
  const rule: QuantRule = opts.rule ?? (format === "awq" && method === "rtn" ? "minmax" : "gptq");
  if (method !== "rtn" && opts.rule) throw new LoralabError("--rule applies to --method rtn only");
  if (rule === "minmax" && sym) throw new LoralabError("the min-max rule (§4.1) is asymmetric; drop --sym");
  const damp = opts.damp ?? 0.01;
  if (!(damp >= 0 && damp < 1)) throw new LoralabError(`--damp must be in [0, 1), got ${damp}`);
  const hessian = opts.hessian ?? "int";
  if (hessian !== "int" && hessian !== "float32") throw new LoralabError(`--hessian must be int or float32, got '${hessian}'`);
  if (opts.lmHead && (method !== "rtn" || format !== "onnx")) throw new LoralabError("--lm-head is supported with --method rtn and --format onnx");
  await checkOutputFree(opts.out, !!opts.overwrite);

  const model = await ModelDir.open(opts.model);
  let math: OrtMath | undefined;
  let runner: DecoderLayerRunner | undefined;
  try {
    const cfg = model.config;
    if (cfg.quantizationConfig)
      throw new LoralabError(`${model.dir} is already quantized (config.json has quantization_config with quant_method '${String(cfg.quantizationConfig.quant_method)}'); quantize the float (merged) model instead`);
    checkArchitecture(cfg, model.dir);

    // plan: which linears the format can hold
    const planned: string[] = [];
    const skipped: SkippedModule[] = [];
    for (let l = 0; l < cfg.numLayers; l++) {
      for (const module of layerLinears(l)) {
        const [N, K] = linearShape(cfg, module);
        if (!model.has(`${module}.weight`)) throw new LoralabError(`${model.dir}: missing tensor ${module}.weight`);
        const misfit = moduleMisfit(format, bits, opts.groupSize, N, K);
        if (misfit) skipped.push({ module, shape: [N, K], reason: misfit });
        else planned.push(module);
      }
    }
    const weightName = (module: string) => (module === "lm_head" ? model.lmHeadName() : `${module}.weight`);
    if (opts.lmHead) {
      const [N, K] = linearShape(cfg, "lm_head");
      const misfit = moduleMisfit(format, bits, opts.groupSize, N, K);
      if (misfit) skipped.push({ module: "lm_head", shape: [N, K], reason: misfit });
      else planned.push("lm_head");
    }
    // bad weights fail here, before any long work
    for (const module of planned) assertFinite((await model.read(weightName(module))).toF32(), weightName(module));

    // calibration data, checked before any long work
    let windows: number[][] = [];
    let calibInfo: QuantReport["calibration"] = null;
    if (method !== "rtn" && opts.windows) {
      windows = opts.windows;
      if (windows.length === 0 || windows.some((w) => w.length !== windows[0].length || w.length < 2)) throw new LoralabError("calibration windows must be non-empty and of equal length ≥ 2");
      calibInfo = { file: "(windows)", samples: windows.length, seqLen: windows[0].length, seed: opts.seed ?? 0, tokens: windows.length * windows[0].length };
    } else if (method !== "rtn") {
      if (!opts.calib) throw new LoralabError(`--method ${method} needs calibration text: --calib FILE`);
      const samples = opts.calibSamples ?? 128;
      const seqLen = opts.seqLen ?? Math.min(512, cfg.maxPositionEmbeddings);
      if (seqLen > cfg.maxPositionEmbeddings) throw new LoralabError(`--seq-len ${seqLen} is longer than the model's context (${cfg.maxPositionEmbeddings})`);
      const seed = opts.seed ?? 0;
      const tok = await TextTokenizer.load(model.dir);
      windows = calibrationWindows(tok, await readCalibrationText(opts.calib), opts.calib, { samples, seqLen, seed });
      calibInfo = { file: resolve(opts.calib), samples, seqLen, seed, tokens: samples * seqLen };
    }

    const qm: QuantizedModel = {
      model, bits, groupSize: opts.groupSize, sym, method, descAct: !!opts.descAct, staticGroups: !!opts.staticGroups,
      trueSequential: opts.trueSequential ?? true, damp, hessian, quantized: new Map(), overrides: new Map(), skipped,
    };
    const reports: ModuleReport[] = [];
    const progress = (done: number, total: number, label: string, unit = "modules") =>
      opts.onProgress?.({ phase: `quantize (${method})`, done, total, unit, label });

    if (method === "rtn") {
      let done = 0;
      for (const module of planned) {
        throwIfAborted(opts.signal);
        const t = performance.now();
        const [N, K] = linearShape(cfg, module);
        const W = (await model.read(weightName(module))).toF32();
        const q = await quantizeRtnFast(W, N, K, { bits, groupSize: opts.groupSize, sym, rule });
        qm.quantized.set(module, q);
        reports.push({ module, shape: [N, K], bits, groupSize: q.groupSize, relError: quantizationError(W, q), loss: null, seconds: (performance.now() - t) / 1000 });
        progress(++done, planned.length, `${module} ${reports[reports.length - 1].seconds.toFixed(3)} s`);
      }
    } else {
      math = new OrtMath(opts.threads);
      runner = await DecoderLayerRunner.create(model, { threads: opts.threads, maxContext: windows[0].length });
      const plannedSet = new Set(planned);
      if (method === "gptq") await runGptq(qm, runner, math, windows, plannedSet, reports, opts, progress);
      else await runAwq(qm, runner, math, windows, plannedSet, reports, opts, progress);
    }

    throwIfAborted(opts.signal);
    const bytesAfter = await writeArtifact(format, qm, opts);
    if (opts.dequantizedTwin) await writeArtifact("dequantized", qm, { ...opts, out: opts.dequantizedTwin });
    const order = new Map(planned.map((m, i) => [m, i]));
    reports.sort((a, b) => order.get(a.module)! - order.get(b.module)!);
    return new QuantReport({
      model: model.dir, out: resolve(opts.out), method, format, bits, groupSize: opts.groupSize, sym, descAct: !!opts.descAct,
      damp: method === "gptq" ? damp : null, hessian: method === "gptq" ? hessian : null, calibration: calibInfo, modules: reports, skipped, bytesBefore: model.totalBytes(), bytesAfter,
      seconds: (performance.now() - t0) / 1000,
    });
  } finally {
    await runner?.release();
    await math?.release();
    await model.close();
  }
}

async function checkOutputFree(out: string, overwrite: boolean): Promise<void> {
  const s = await stat(out).catch(() => undefined);
  if (!s) return;
  if (!s.isDirectory()) throw new LoralabError(`output path ${out} exists and is not a directory`);
  if (!overwrite && (await readdir(out)).length > 0) throw new LoralabError(`output directory ${out} already exists and is not empty (choose another --out, or pass --overwrite)`);
}

type Progress = (done: number, total: number, label: string, unit?: string) => void;

/** Sequences per layer run: activations of about 4 M floats per output, whatever the model's width. */
function sequencesPerChunk(cfg: ModelConfig, seqLen: number): number {
  return Math.max(1, Math.floor((1 << 22) / (seqLen * Math.max(cfg.hiddenSize, cfg.intermediateSize))));
}

/** Runs layer `l` over `hidden` a chunk of whole sequences at a time; `use` gets each chunk's activations:
 * all of them, or only `only`, computed without the rest of the layer (GPTQ's true-sequential groups each
 * need one: the input norm alone for q/k/v, the attention for o_proj, …). */
async function forEachChunk(runner: DecoderLayerRunner, l: number, hidden: Float32Array, seqLen: number, replace: Map<string, Float32Array>, use: (a: Partial<LayerActivations>, seqs: number, offset: number) => Promise<void> | void, only?: keyof LayerActivations, signal?: AbortSignal): Promise<void> {
  const cfg = runner.config;
  const d = cfg.hiddenSize;
  const total = hidden.length / (seqLen * d);
  const per = sequencesPerChunk(cfg, seqLen);
  for (let s = 0; s < total; s += per) {
    const n = Math.min(per, total - s);
    throwIfAborted(signal);
    const chunk = hidden.subarray(s * seqLen * d, (s + n) * seqLen * d);
    await use(only ? { [only]: await runner.activation(only, l, chunk, seqLen, replace) } : await runner.run(l, chunk, seqLen, replace), n, s);
  }
}

/** `part` over `x` (whole sequences of `seqLen` tokens, `inWidth` values each) in the chunks `forEachChunk`
 * uses, its outputs (`outWidth` per token) concatenated. */
async function inSequenceChunks(runner: DecoderLayerRunner, seqLen: number, x: Float32Array, inWidth: number, outWidth: number, part: (x: Float32Array) => Promise<Float32Array>, signal?: AbortSignal): Promise<Float32Array> {
  const tokens = x.length / inWidth;
  const per = seqLen * sequencesPerChunk(runner.config, seqLen);
  const out = new Float32Array(tokens * outWidth);
  for (let t = 0; t < tokens; t += per) {
    throwIfAborted(signal);
    const n = Math.min(per, tokens - t);
    out.set(await part(x.subarray(t * inWidth, (t + n) * inWidth)), t * outWidth);
  }
  return out;
}

function embedAll(runner: DecoderLayerRunner, windows: number[][]): Float32Array {
  const d = runner.config.hiddenSize;
  const L = windows[0].length;
  const hidden = new Float32Array(windows.length * L * d);
  windows.forEach((w, i) => hidden.set(runner.embed(w), i * L * d));
  return hidden;
}

async function runGptq(qm: QuantizedModel, runner: DecoderLayerRunner, math: OrtMath, windows: number[][], planned: Set<string>, reports: ModuleReport[], opts: QuantizeOptions, progress: Progress): Promise<void> {
  const cfg = qm.model.config;
  const seqLen = windows[0].length;
  let hidden = embedAll(runner, windows);
  const groups = qm.trueSequential ? SEQUENTIAL_GROUPS : [{ modules: SEQUENTIAL_GROUPS.flatMap((g) => g.modules), input: "attnIn" as const }];
  const inputOf = new Map(SEQUENTIAL_GROUPS.flatMap((g) => g.modules.map((m) => [m, g.input] as const)));
  for (let l = 0; l < cfg.numLayers; l++) {
    const replace = new Map<string, Float32Array>();
    for (const group of groups) {
      const modules = group.modules.filter((m) => planned.has(`model.layers.${l}.${m}`));
      if (modules.length === 0) continue;
      throwIfAborted(opts.signal);
      // modules reading the same activation (k/v/q, up/gate) share one Hessian
      const byInput = new Map<keyof LayerActivations, HessianAccumulator>();
      for (const m of modules) if (!byInput.has(inputOf.get(m)!)) byInput.set(inputOf.get(m)!, new HessianAccumulator(linearShape(cfg, m)[1], { arithmetic: qm.hessian }));
      const accs = new Map(modules.map((m) => [m, byInput.get(inputOf.get(m)!)!]));
      const factors = new Map<HessianAccumulator, Promise<GptqHessian>>();
      await forEachChunk(runner, l, hidden, seqLen, replace, async (a, seqs) => {
        for (const [input, acc] of byInput) {
          const x = a[input]!;
          await acc.add(math, x, x.length / acc.K, seqs);
        }
      }, byInput.size === 1 ? [...byInput.keys()][0] : undefined, opts.signal);
      for (const m of modules) {
        throwIfAborted(opts.signal);
        const t = performance.now();
        const module = `model.layers.${l}.${m}`;
        const [N, K] = linearShape(cfg, m);
        const W = (await qm.model.read(`${module}.weight`)).toF32(true);
        const gopts = { bits: qm.bits, groupSize: qm.groupSize, sym: qm.sym, damp: qm.damp, descAct: qm.descAct, staticGroups: qm.staticGroups };
        // the inverse factor depends on the Hessian alone: once per input, not per linear (q/k/v, gate/up)
        const acc = accs.get(m)!;
        if (!factors.has(acc)) factors.set(acc, prepareHessian(math, await acc.finish(math), K, gopts));
        const res = await gptqQuantize(math, W, N, K, await factors.get(acc)!, gopts);
        const deq = dequantize(res.q);
        replace.set(m, deq);
        qm.quantized.set(module, res.q);
        reports.push({ module, shape: [N, K], bits: qm.bits, groupSize: res.q.groupSize, relError: relativeError(W, deq), loss: res.loss, seconds: (performance.now() - t) / 1000 });
        progress(reports.length, planned.size, `${module} ${reports[reports.length - 1].seconds.toFixed(3)} s`);
      }
    }
    // inputs of the next layer come from this layer with its quantized weights
    const next = new Float32Array(hidden.length);
    await forEachChunk(runner, l, hidden, seqLen, replace, (a, _n, s) => next.set(a.out!, s * seqLen * cfg.hiddenSize), "out", opts.signal);
    hidden = next;
    progress(reports.length, planned.size, `model.layers.${l} done`);
  }
}

/** AWQ scaling groups for Llama (AutoAWQ get_layers_for_scaling): previous op, linears, input. */
interface ScalingGroup {
  prev: { kind: "norm"; name: string } | { kind: "linear"; module: string };
  modules: string[];
  input: keyof LayerActivations;
}

async function runAwq(qm: QuantizedModel, runner: DecoderLayerRunner, math: OrtMath, windows: number[][], planned: Set<string>, reports: ModuleReport[], opts: QuantizeOptions, progress: Progress): Promise<void> {
  const cfg = qm.model.config;
  const seqLen = windows[0].length;
  const d = cfg.hiddenSize;
  let hidden = embedAll(runner, windows);
  const T = hidden.length / d;
  for (let l = 0; l < cfg.numLayers; l++) {
    throwIfAborted(opts.signal);
    const p = `model.layers.${l}`;
    // 1. full-precision pass: cache every linear's input and the layer output
    const acts: Record<keyof LayerActivations, Float32Array> = {
      attnIn: new Float32Array(T * d), oIn: new Float32Array(T * cfg.numHeads * cfg.headDim), mlpIn: new Float32Array(T * d),
      downIn: new Float32Array(T * cfg.intermediateSize), out: new Float32Array(T * d),
    };
    await forEachChunk(runner, l, hidden, seqLen, new Map(), (a, n, s) => {
      for (const k of Object.keys(acts) as (keyof LayerActivations)[]) acts[k].set(a[k]!, s * seqLen * (a[k]!.length / (n * seqLen)));
    }, undefined, opts.signal);
    const weights = new Map<string, Float32Array>();
    for (const m of layerLinears(l)) weights.set(m.slice(p.length + 1), (await qm.model.read(`${m}.weight`)).toF32(true));
    const W = (m: string) => weights.get(m)!;
    const N = (m: string) => linearShape(cfg, m)[0];
    const width = (k: keyof LayerActivations) => acts[k].length / T;

    const groups: ScalingGroup[] = [
      { prev: { kind: "norm", name: `${p}.input_layernorm.weight` }, modules: ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], input: "attnIn" },
      { prev: { kind: "linear", module: "self_attn.v_proj" }, modules: ["self_attn.o_proj"], input: "oIn" },
      { prev: { kind: "norm", name: `${p}.post_attention_layernorm.weight` }, modules: ["mlp.gate_proj", "mlp.up_proj"], input: "mlpIn" },
      { prev: { kind: "linear", module: "mlp.up_proj" }, modules: ["mlp.down_proj"], input: "downIn" },
    ];
    const [vN, vK] = linearShape(cfg, "self_attn.v_proj");
    const [oN, oK] = linearShape(cfg, "self_attn.o_proj");
    const vEqualsO = vN === oN && vK === oK;
    const attnOut = (oIn: Float32Array) => math.gemm({ data: oIn, rows: T, cols: oK }, { data: W("self_attn.o_proj"), rows: oN, cols: oK }, { transB: true });
    const fpAttn = await attnOut(acts.oIn);
    const mse = (a: Float32Array, b: Float32Array) => {
      let e = 0;
      for (let i = 0; i < a.length; i++) e += (a[i] - b[i]) ** 2;
      return e / a.length;
    };
    const lossOf = new Map<string, number>();
    const scalesOf = new Map<ScalingGroup, Float32Array>();
    // 2. scale search per group (weights in the original basis; scales applied after all searches)
    for (const group of groups) {
      throwIfAborted(opts.signal);
      if (group.prev.kind === "linear" && group.prev.module === "self_attn.v_proj" && !vEqualsO) continue;
      if (!group.modules.every((m) => planned.has(`${p}.${m}`))) continue;
      if (group.prev.kind === "linear" && !planned.has(`${p}.${group.prev.module}`)) continue;
      const K = width(group.input);
      const xMean = meanAbsColumns(acts[group.input], T, K);
      const lin = group.modules.map((m) => ({ W: W(m), N: N(m) }));
      // each candidate is measured on the smallest part of the layer that its linears feed (AutoAWQ's
      // module2inspect): the linear alone, the attention (+ o_proj), or the MLP — not the whole layer
      const m0 = group.modules[0];
      const single = m0 === "self_attn.o_proj" || m0 === "mlp.down_proj";
      const linearOut = (w: Float32Array) => math.gemm({ data: acts[group.input], rows: T, cols: K }, { data: w, rows: N(m0), cols: K }, { transB: true });
      const mlpOut = (replace?: Map<string, Float32Array>) => inSequenceChunks(runner, seqLen, acts.mlpIn, d, d, (x) => runner.mlp(l, x, replace), opts.signal);
      const reference = single ? (await linearOut(W(m0))).data : group.input === "mlpIn" ? await mlpOut() : fpAttn.data;
      let tried = 0;
      const res = await searchScales(lin, K, xMean, qm.bits, qm.groupSize, async (cands) => {
        // a candidate can take minutes on a large model with many calibration tokens
        throwIfAborted(opts.signal);
        progress(reports.length, planned.size, `${p}: scales of ${group.modules.join(", ")}, ${++tried}/${N_GRID}`);
        if (single) return mse((await linearOut(cands[0])).data, reference);
        const replace = new Map(group.modules.map((m, i) => [m, cands[i]]));
        if (group.input === "mlpIn") return mse(await mlpOut(replace), reference);
        const oIn = await inSequenceChunks(runner, seqLen, hidden, d, oK, (x) => runner.activation("oIn", l, x, seqLen, replace), opts.signal);
        return mse((await attnOut(oIn)).data, reference);
      });
      scalesOf.set(group, res.scales);
      for (const m of group.modules) lossOf.set(m, res.loss);
    }
    // 3. apply scales: previous op ÷ s, the group's linears × s on input columns, cached inputs ÷ s
    for (const [group, s] of scalesOf) {
      const K = s.length;
      if (group.prev.kind === "norm") {
        const name = group.prev.name;
        const g = (qm.overrides.get(name) ?? (await qm.model.read(name))).toF32(true);
        for (let c = 0; c < K; c++) g[c] /= s[c];
        qm.overrides.set(name, Tensor.fromF32(g, [K]));
      } else {
        const Wp = W(group.prev.module);
        const pK = linearShape(cfg, group.prev.module)[1];
        const pN = N(group.prev.module);
        for (let r = pN - K; r < pN; r++) for (let c = 0; c < pK; c++) Wp[r * pK + c] /= s[r - (pN - K)];
      }
      for (const m of group.modules) {
        const w = W(m);
        const n = N(m);
        for (let r = 0; r < n; r++) for (let c = 0; c < K; c++) w[r * K + c] *= s[c];
      }
      const x = acts[group.input];
      for (let t = 0; t < T; t++) for (let c = 0; c < K; c++) x[t * K + c] /= s[c];
    }
    // 4. clip search (not for q/k), 5. quantize every planned linear with min-max groups
    const inputOfModule = new Map(groups.flatMap((g) => g.modules.map((m) => [m, g.input] as const)));
    for (const full of layerLinears(l)) {
      if (!planned.has(full)) continue;
      throwIfAborted(opts.signal);
      const t = performance.now();
      const m = full.slice(p.length + 1);
      const w = W(m);
      const [n, K] = linearShape(cfg, m);
      const before = Float32Array.from(w);
      if (!/(^|\.)(q_|k_)/.test(m)) await clipSearch(w, n, K, acts[inputOfModule.get(m)!], T, qm.bits, qm.groupSize, math);
      const q = await quantizeRtnFast(w, n, K, { bits: qm.bits, groupSize: qm.groupSize, sym: false, rule: "minmax" });
      qm.quantized.set(full, q);
      reports.push({ module: full, shape: [n, K], bits: qm.bits, groupSize: q.groupSize, relError: quantizationError(before, q), loss: lossOf.get(m) ?? null, seconds: (performance.now() - t) / 1000 });
      progress(reports.length, planned.size, `${full} ${reports[reports.length - 1].seconds.toFixed(3)} s`);
    }
    // unquantized linears that a scale touched keep their new float values
    for (const m of weights.keys()) {
      const full = `${p}.${m}`;
      if (!planned.has(full)) qm.overrides.set(`${full}.weight`, Tensor.fromF32(W(m), linearShape(cfg, m)));
    }
    // the next layer's inputs come from the full-precision layer (AutoAWQ)
    hidden = acts.out;
    progress(reports.length, planned.size, `${p} done`);
  }
}
