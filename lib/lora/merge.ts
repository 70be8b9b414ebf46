import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { GraphBuilder } from "../engine/onnx-builder.js";
import { createSession, ort } from "../engine/session.js";
import { LoralabError, throwIfAborted } from "../errors.js";
import { AtomicOutputDir } from "../io/output-dir.js";
import { ModelDir } from "../io/model-dir.js";
import type { SafetensorsFile, TensorPlan } from "../io/safetensors.js";
import { planShards, writeShardedModel } from "../io/sharded-writer.js";
import { lazyDisplay } from "../plot/display-cache.js";
import type { LongTaskOptions } from "../progress.js";
import { DTYPE_SIZE, type DType, dtypeToTorch, isFloatDType } from "../tensor/dtype.js";
import { type KernelDType, type LowRankStats, LowRankKernels, packR } from "../tensor/lowrank.js";
import { Tensor, fromF32, numel, toF32 } from "../tensor/tensor.js";
import { loadAdapter } from "./adapter.js";
import type { Adapter, LoraModule } from "./types.js";

export interface MergeOptions extends LongTaskOptions {
  base: string;
  adapters: { path: string; weight?: number }[];
  out: string;
  /** output dtype; "auto" (default) keeps each tensor's base dtype */
  dtype?: "auto" | "f32" | "f16" | "bf16";
  maxShardSize?: number;
  overwrite?: boolean;
}

export interface ModuleReport {
  tensor: string;
  adapters: number;
  rank: number;
  scaling: number;
  relDelta: number;
  maxAbsDelta: number;
  roundingError: number;
}

export class MergeReport {
  constructor(readonly out: string, readonly dtype: string, readonly modules: ModuleReport[], readonly replaced: string[],
    readonly untied: boolean, readonly seconds: number, readonly bytes: number) {}

  toJSON() { return { out: this.out, dtype: this.dtype, seconds: this.seconds, bytes: this.bytes, untied: this.untied, replaced: this.replaced, modules: this.modules }; }

  table(): string {
    const head = ["tensor", "rank", "scaling", "|dW|/|W|", "max|dW|", "round err"];
    const rows = this.modules.map((m) => [m.tensor, String(m.rank), m.scaling.toPrecision(4), m.relDelta.toExponential(3), m.maxAbsDelta.toExponential(3), m.roundingError.toExponential(2)]);
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ");
    const extra = [...this.replaced.map((r) => `replaced: ${r}`), ...(this.untied ? ["tie_word_embeddings set to false (lm_head.weight written)"] : [])];
    return [line(head), ...rows.map(line), ...extra, `merged into ${this.out} (${this.dtype}, ${(this.bytes / 1e9).toFixed(3)} GB in ${this.seconds.toFixed(2)} s)`].join("\n");
  }

  /** Table + ‖ΔW‖/‖W‖ per-module bars (see merge-display.ts); the plotting code loads only when displayed. */
  [Symbol.for("Jupyter.display")]() {
    return lazyDisplay(this, () => import("./merge-display.js").then((m) => m.mergeReportBundle(this)));
  }
}

interface Job { kind: "lora"; m: LoraModule; weight: number }
const OUT_DTYPE = { f32: "F32", f16: "F16", bf16: "BF16" } as const;

/** Merges LoRA adapters into a base model, streaming tensor by tensor (SPEC §3.9). */
export async function merge(o: MergeOptions): Promise<MergeReport> {
  const t0 = performance.now();
  const base = await ModelDir.open(o.base);
  try {
    const adapters: { a: Adapter; w: number }[] = [];
    for (const x of o.adapters) adapters.push({ a: await loadAdapter(x.path), w: x.weight ?? 1 });
    if (adapters.length === 0) throw new LoralabError("merge needs at least one adapter");
    const raw = JSON.parse(await readFile(join(base.dir, "config.json"), "utf8")) as Record<string, unknown>;
    const tied = !!raw.tie_word_embeddings && !base.has("lm_head.weight");
    const embName = ["model.embed_tokens.weight", "transformer.wte.weight"].find((n) => base.has(n));

    // collect work per output tensor; "lm_head.weight" of a tied model starts from the embedding
    const lora = new Map<string, Job[]>();
    const replace = new Map<string, Tensor>();
    // replacements and token rows in adapter order, each before LoRA deltas of later adapters (SPEC §3.9 loop)
    const steps = new Map<string, ({ t: Tensor } | { tt: { indices: number[]; rows: Tensor } } | { j: Job })[]>();
    const step = (name: string, x: { t: Tensor } | { tt: { indices: number[]; rows: Tensor } } | { j: Job }) => (steps.get(name) ?? steps.set(name, []).get(name)!).push(x);
    const biasAdd = new Map<string, { v: Tensor; s: number }[]>();
    const touched = new Set<string>();
    const source = (name: string) => (tied && name === "lm_head.weight" ? embName! : name);
    const shapeOf = (name: string, where: string) => {
      const src = source(name);
      if (!base.has(src)) throw new LoralabError(`${where}: the base model ${base.dir} has no tensor '${name}'`);
      return base.entry(src).shape;
    };
    for (const { a, w } of adapters) {
      for (const [target, m] of a.modules) {
        const s = shapeOf(target, `adapter ${a.dir}, module ${m.module}`);
        const [out, inn] = m.kind === "embedding" || m.fanInFanOut ? [s[1], s[0]] : [s[0], s[1]];
        const aIn = m.A.shape[1], bOut = m.B.shape[0];
        if (s.length !== 2 || aIn !== inn || bOut !== out)
          throw new LoralabError(`adapter ${a.dir}, module ${m.module}: lora_A [${m.A.shape}] / lora_B [${m.B.shape}] do not fit base tensor ${target} [${s}] — is this adapter for another model?`);
        if (m.magnitude && numel(m.magnitude.shape) !== out) throw new LoralabError(`adapter ${a.dir}, module ${m.module}: lora_magnitude_vector has ${numel(m.magnitude.shape)} values, expected ${out}`);
        const job: Job = { kind: "lora", m, weight: w };
        (lora.get(target) ?? lora.set(target, []).get(target)!).push(job);
        step(target, { j: job });
        touched.add(target);
        if (m.bias) {
          const bname = `${m.module}.bias`;
          if (!base.has(bname)) throw new LoralabError(`adapter ${a.dir}, module ${m.module}: lora_bias is set but the base has no ${bname}`);
          (biasAdd.get(bname) ?? biasAdd.set(bname, []).get(bname)!).push({ v: m.bias, s: m.scaling * w });
          touched.add(bname);
        }
      }
      for (const [name, t] of a.replacements) {
        const s = shapeOf(name, `adapter ${a.dir}`);
        if (s.join() !== t.shape.join()) throw new LoralabError(`adapter ${a.dir}: full tensor ${name} [${t.shape}] does not fit the base [${s}]`);
        replace.set(name, t); step(name, { t }); touched.add(name);
      }
      for (const [name, tt] of a.trainableTokens) {
        const s = shapeOf(name, `adapter ${a.dir}`);
        if (tt.rows.shape[1] !== s[1] || tt.indices.some((i) => i < 0 || i >= s[0])) throw new LoralabError(`adapter ${a.dir}: trainable tokens for ${name} do not fit [${s}]`);
        step(name, { tt }); touched.add(name);
      }
    }
    const untie = tied && !!embName && (touched.has("lm_head.weight") || touched.has(embName));

    const outDtype = o.dtype && o.dtype !== "auto" ? (OUT_DTYPE[o.dtype] as DType) : undefined;
    const plan: TensorPlan[] = base.names().map((n) => {
      const e = base.entry(n);
      return { name: n, dtype: outDtype && isFloatDType(e.dtype) ? outDtype : e.dtype, shape: e.shape };
    });
    if (untie) plan.push({ ...plan.find((p) => p.name === embName)!, name: "lm_head.weight" });
    const shards = planShards(plan, o.maxShardSize ?? 5e9);
    const order = shards.flatMap((sh) => sh.tensors.map((t) => t.name)); // the order the writer asks for them
    const position = new Map(order.map((n, i) => [n, i]));
    const fast = new FastPath(plan.filter((p) => fastEligible(p, base.entry(source(p.name)).dtype, steps.get(p.name)))
      .map((p) => ({ p, rank: (lora.get(p.name) ?? []).reduce((a, j) => a + j.m.r, 0), inDtype: base.entry(source(p.name)).dtype })));
    let session: ort.InferenceSession | undefined; // the general path's ORT session, made on first use
    const reports: ModuleReport[] = [];
    let done = 0;
    const total = plan.reduce((a, p) => a + numel(p.shape), 0);
    try {
      await AtomicOutputDir.write(o.out, { overwrite: o.overwrite }, async (dir) => {
        // pipelined: FastPath hands out two output regions and two copy chunks in turn, as the writer requires
        await writeShardedModel(dir.path, shards, async (p) => {
          throwIfAborted(o.signal);
          const src = source(p.name);
          const e = base.entry(src);
          // take this tensor's read (maybe started by the previous call) before starting the next one's
          const mine = fast.has(p.name) && !fast.chunked(p.name) ? fast.read(p.name, (into) => base.readBytes(src, into), e.byteLength) : undefined;
          const next = order[(position.get(p.name) ?? -2) + 1];
          // (a chunked tensor uses both input regions itself: the next one is read when its turn comes)
          if (next !== undefined && !fast.chunked(p.name)) { const ns = source(next); fast.prefetch(next, (into) => base.readBytes(ns, into), base.entry(ns).byteLength); }
          done += numel(p.shape);
          o.onProgress?.({ phase: "merge", done, total, unit: "elements", label: p.name });
          if (!touched.has(p.name)) {
            if (p.dtype === e.dtype) return fast.copyChunks(base.fileOf(src), src, e.byteLength);
            const t = await base.read(src);
            const v = fromF32(p.dtype, t.toF32());
            return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
          }
          const jobs = lora.get(p.name) ?? [];
          if (mine) return fast.merge(p, await mine, e.dtype as KernelDType, jobs, reports);
          if (fast.chunked(p.name)) return fast.mergeChunks(p, base.fileOf(src), src, e.dtype as KernelDType, jobs, reports, o.signal);
          session ??= await deltaSession();
          const orig = (await base.read(src)).toF32(true);
          let w: Float32Array = orig; // copied before the first in-place change; ORT returns new arrays
          for (const b of biasAdd.get(p.name) ?? []) { if (w === orig) w = Float32Array.from(orig); const v = b.v.toF32(); for (let i = 0; i < w.length; i++) w[i] += b.s * v[i]; }
          for (const st of steps.get(p.name) ?? []) {
            if ("t" in st) w = st.t.toF32(true);
            else if ("tt" in st) {
              if (w === orig) w = Float32Array.from(orig);
              const d = p.shape[1], rows = st.tt.rows.toF32();
              st.tt.indices.forEach((idx, i) => w.set(rows.subarray(i * d, (i + 1) * d), idx * d));
            } else w = await applyLora(session, w, orig, p.shape, st.j);
          }
          return finish(p, w, orig, jobs, reports);
        }, { pipelined: true, syncEvery: SYNC_EVERY });
        for (const f of base.auxFiles) if (f !== "config.json") await copyFile(join(base.dir, f), dir.file(f));
        const cfg = { ...raw };
        if (outDtype) cfg.torch_dtype = dtypeToTorch(outDtype);
        if (untie) cfg.tie_word_embeddings = false;
        await writeFile(dir.file("config.json"), JSON.stringify(cfg, null, 2) + "\n");
      });
    } finally {
      await fast.close();
      await session?.release();
    }
    const bytes = shards.reduce((a, s) => a + s.bytes, 0);
    return new MergeReport(o.out, outDtype ?? "auto", reports, [...replace.keys()], untie, (performance.now() - t0) / 1000, bytes);
  } finally {
    await base.close();
  }
}

/** Y = W + B·A on ONNX Runtime (dynamic shapes: one session for every tensor). */
async function deltaSession(): Promise<ort.InferenceSession> {
  const g = new GraphBuilder("lora_delta");
  g.input("W", "F32", ["o", "i"]); g.input("B", "F32", ["o", "r"]); g.input("A", "F32", ["r", "i"]);
  g.node("Add", ["W", g.op("MatMul", ["B", "A"])], ["Y"]);
  g.output("Y", "F32", ["o", "i"]);
  return createSession(g.toBytes(), { spinning: false });
}

function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(x.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = x[i * cols + j];
  return t;
}

/** W + s·w·BA in the stored orientation; DoRA rescales rows (columns when stored transposed) by m/‖W0+Δ‖. */
async function applyLora(session: ort.InferenceSession, w: Float32Array, orig: Float32Array, shape: readonly number[], j: Job): Promise<Float32Array> {
  const { m } = j;
  const s = m.scaling * j.weight;
  const r = m.r;
  let Bs = m.B.toF32(true), A = m.A.toF32();
  const [rows, cols] = [shape[0], shape[1]];
  for (let i = 0; i < Bs.length; i++) Bs[i] *= s;
  const transposed = m.kind === "embedding" || m.fanInFanOut;
  if (transposed) { const bt = transpose(A, r, rows); A = transpose(Bs, cols, r); Bs = bt; } // (BA)ᵀ = Aᵀ Bᵀ
  const run = async (W: Float32Array) => (await session.run({
    W: new ort.Tensor("float32", W, [rows, cols]), B: new ort.Tensor("float32", Bs, [rows, r]), A: new ort.Tensor("float32", A, [r, cols]),
  })).Y.data as Float32Array;
  if (!m.magnitude) return run(w);
  const y0 = await run(orig); // W0 + Δ, for the norm
  const mag = m.magnitude.toF32();
  const out = new Float32Array(w.length);
  if (!transposed) {
    for (let i = 0; i < rows; i++) {
      let ss = 0; for (let k = 0; k < cols; k++) ss += y0[i * cols + k] ** 2;
      const f = mag[i] / Math.sqrt(ss);
      for (let k = 0; k < cols; k++) out[i * cols + k] = f * (w[i * cols + k] + y0[i * cols + k] - orig[i * cols + k]);
    }
  } else {
    const ss = new Float64Array(cols);
    for (let i = 0; i < rows; i++) for (let k = 0; k < cols; k++) ss[k] += y0[i * cols + k] ** 2;
    for (let i = 0; i < rows; i++) for (let k = 0; k < cols; k++) out[i * cols + k] = (mag[k] / Math.sqrt(ss[k])) * (w[i * cols + k] + y0[i * cols + k] - orig[i * cols + k]);
  }
  return out;
}

function moduleReport(name: string, jobs: Job[], relDelta: number, maxAbsDelta: number, roundingError: number): ModuleReport {
  return {
    tensor: name, adapters: jobs.length, rank: jobs.reduce((a, j) => a + j.m.r, 0),
    scaling: jobs.length === 1 ? jobs[0].m.scaling : jobs.reduce((a, j) => a + j.m.scaling * j.weight, 0),
    relDelta, maxAbsDelta, roundingError,
  };
}

const KERNEL_DTYPES: readonly DType[] = ["F32", "BF16", "F16"];
/** Background fdatasync interval where the writer falls back to buffered writes (no O_DIRECT; see file-sink.ts). */
const SYNC_EVERY = 256 * 2 ** 20;
/** Chunk size for tensors copied unchanged. */
const COPY_CHUNK = 32 * 2 ** 20;
/** Input bytes a kernel region holds: larger tensors are merged in row chunks of about this size (the kernel's
 * memory is 32-bit, and memory stays bounded for 70B-sized MLPs or 128K-token vocabularies). */
const REGION_BYTES = 128 * 2 ** 20;

/** A tensor whose only changes are LoRA deltas (no replacement or token rows) — plain ones, or one DoRA
 * adapter on a linear stored [out, in] — stored as F32, BF16 or F16 in and out, 2-D with a column count
 * divisible by 4: merged in one fused WebAssembly pass (DoRA: a pass for the row norms, then the scaled one). */
function fastEligible(p: TensorPlan, inDtype: DType, st: ({ j: Job } | object)[] | undefined): boolean {
  if (!st || st.length === 0 || !st.every((x) => "j" in x)) return false;
  const dora = (st as { j: Job }[]).filter((x) => x.j.m.magnitude);
  if (dora.length > 0 && (st.length > 1 || dora[0].j.m.kind === "embedding" || dora[0].j.m.fanInFanOut)) return false;
  if (!KERNEL_DTYPES.includes(inDtype) || !KERNEL_DTYPES.includes(p.dtype) || p.shape.length !== 2) return false;
  const [rows, cols] = p.shape;
  return rows > 0 && cols > 0 && cols % 4 === 0;
}

/** The fused path: one WebAssembly memory laid out once for the largest eligible tensor
 * ([stats | R | L | input | output]); tensors are read straight into it and written straight out of it, so no
 * per-tensor allocation (and no page faults) after the first. Several adapters on one tensor become one
 * low-rank product of concatenated factors: W + Σ wᵢsᵢBᵢAᵢ = W + [w₁s₁B₁ … ]·[A₁; …]. */
class FastPath {
  private readonly names: Set<string>;
  /** rows per chunk of the tensors merged in chunks */
  private readonly chunkRows = new Map<string, number>();
  private k?: LowRankKernels;
  private readonly at = { r: 0, l: 0, in: [0, 0], out: [0, 0], norms: 0, scale: 0, end: 0 };
  private readonly copies: (Uint8Array | undefined)[] = [undefined, undefined];
  private turn = { in: 0, out: 0, copy: 0 };
  /** the next eligible tensor's read, started while the current one computes */
  private ahead?: { name: string; bytes: Promise<Uint8Array> };

  /** `tensors`: the eligible tensors with their total LoRA rank and input dtype; regions are sized for the
   * largest. Two output regions: the writer may still be writing the previous tensor's. */
  constructor(tensors: { p: TensorPlan; rank: number; inDtype: DType }[]) {
    this.names = new Set(tensors.map((t) => t.p.name));
    let maxIn = 0, maxOut = 0, maxR = 0, maxL = 0, maxRows = 0;
    for (const { p, rank, inDtype } of tensors) {
      const [rows, cols] = p.shape;
      // a tensor over REGION_BYTES goes in chunks of whole rows (at least one)
      const chunkRows = Math.min(rows, Math.max(1, Math.floor(REGION_BYTES / (cols * DTYPE_SIZE[inDtype]))));
      if (chunkRows < rows) this.chunkRows.set(p.name, chunkRows);
      maxIn = Math.max(maxIn, chunkRows * cols * DTYPE_SIZE[inDtype]); maxOut = Math.max(maxOut, chunkRows * cols * DTYPE_SIZE[p.dtype]);
      maxR = Math.max(maxR, rank * cols * 4); maxL = Math.max(maxL, rows * rank * 4); maxRows = Math.max(maxRows, chunkRows);
    }
    const align = (x: number) => Math.ceil(x / 64) * 64;
    this.at.r = LowRankKernels.FIRST_FREE; this.at.l = align(this.at.r + maxR);
    this.at.in = [this.at.l + align(maxL), this.at.l + align(maxL) + align(maxIn)];
    this.at.out = [this.at.in[1] + align(maxIn), this.at.in[1] + align(maxIn) + align(maxOut)];
    this.at.norms = this.at.out[1] + align(maxOut); // DoRA: Σ y² (float64) and m/‖y‖ (float32) per row
    this.at.scale = this.at.norms + align(8 * maxRows);
    this.at.end = this.at.scale + align(4 * maxRows);
  }

  has(name: string): boolean { return this.names.has(name); }

  /** Whether `name` is merged in row chunks (`mergeChunks`) rather than whole (`read` + `merge`). */
  chunked(name: string): boolean { return this.chunkRows.has(name); }

  /** A tensor copied unchanged, streamed in chunks through two small buffers in turn (the writer writes one
   * while the next is read), so a large embedding needs no tensor-sized buffer. */
  async *copyChunks(file: SafetensorsFile, name: string, bytes: number): AsyncGenerator<Uint8Array> {
    for (let at = 0; at < bytes; at += COPY_CHUNK) {
      const i = (this.turn.copy ^= 1);
      this.copies[i] ??= new Uint8Array(COPY_CHUNK);
      yield await file.readRange(name, at, this.copies[i]!.subarray(0, Math.min(COPY_CHUNK, bytes - at)));
    }
  }

  private kernels(): LowRankKernels {
    if (!this.k) { this.k = new LowRankKernels(); this.k.reserve(this.at.end); }
    return this.k;
  }

  /** Reads an eligible tensor into the kernel's memory: the read started by `prefetch`, or a new one.
   * Two input regions in turn: the next tensor's read lands beside the one being computed. */
  read(name: string, read: (into: Uint8Array) => Promise<Uint8Array>, bytes: number): Promise<Uint8Array> {
    const a = this.ahead;
    this.ahead = undefined;
    if (a?.name === name) return a.bytes;
    return read(this.kernels().bytes(this.at.in[(this.turn.in ^= 1)], bytes));
  }

  /** Starts reading `name` (when eligible) so the disk/page-cache copy overlaps the current computation. */
  prefetch(name: string | undefined, read: (into: Uint8Array) => Promise<Uint8Array>, bytes: number): void {
    if (name === undefined || !this.has(name) || this.chunked(name) || this.ahead) return;
    const p = read(this.kernels().bytes(this.at.in[(this.turn.in ^= 1)], bytes));
    p.catch(() => {}); // rethrown when taken; a merge that fails first never awaits it
    this.ahead = { name, bytes: p };
  }

  async close(): Promise<void> { await this.k?.close(); }

  async merge(p: TensorPlan, bytes: Uint8Array, inDtype: KernelDType, jobs: Job[], reports: ModuleReport[]): Promise<Uint8Array> {
    const [rows, cols] = p.shape;
    const k = this.kernels();
    const inAt = bytes.byteOffset;
    if (bytes.buffer !== k.memory.buffer || !this.at.in.includes(inAt)) throw new Error("internal: fast-path input outside the kernel memory");
    const rank = this.factors(p, jobs);
    const outT = p.dtype as KernelDType;
    const out = this.at.out[(this.turn.out ^= 1)];
    const st = await this.run(jobs, rank, inDtype, outT, inAt, this.at.l, out, 0, rows, cols);
    const outBytes = k.bytes(out, rows * cols * DTYPE_SIZE[outT]);
    if (!st.finite) nonFinite(p.name, outT, outBytes, 0);
    reports.push(moduleReport(p.name, jobs, st.sumSqW > 0 ? Math.sqrt(st.sumSqDelta / st.sumSqW) : 0, st.maxAbsDelta, st.maxRoundErr));
    return outBytes;
  }

  /** A tensor too large for one region: rows read, merged and handed to the writer a chunk at a time (two
   * input and two output regions in turn), the report's statistics summed over the chunks. */
  async *mergeChunks(p: TensorPlan, file: SafetensorsFile, name: string, inDtype: KernelDType, jobs: Job[], reports: ModuleReport[], signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const [rows, cols] = p.shape;
    const chunk = this.chunkRows.get(p.name)!;
    const k = this.kernels();
    const rank = this.factors(p, jobs);
    const outT = p.dtype as KernelDType, inRow = cols * DTYPE_SIZE[inDtype], outRow = cols * DTYPE_SIZE[outT];
    let dd = 0, ww = 0, md = 0, re = 0;
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      throwIfAborted(signal);
      const n = Math.min(chunk, rows - r0);
      const inAt = this.at.in[(this.turn.in ^= 1)], out = this.at.out[(this.turn.out ^= 1)];
      await file.readRange(name, r0 * inRow, k.bytes(inAt, n * inRow));
      const st = await this.run(jobs, rank, inDtype, outT, inAt, this.at.l + r0 * rank * 4, out, r0, n, cols);
      const outBytes = k.bytes(out, n * outRow);
      if (!st.finite) nonFinite(p.name, outT, outBytes, r0 * cols);
      dd += st.sumSqDelta; ww += st.sumSqW; md = Math.max(md, st.maxAbsDelta); re = Math.max(re, st.maxRoundErr);
      yield outBytes;
    }
    reports.push(moduleReport(p.name, jobs, ww > 0 ? Math.sqrt(dd / ww) : 0, md, re));
  }

  /** The kernel over `rows` rows from row `r0` of the tensor; with DoRA (a single job, see `fastEligible`)
   * first their norms, then the merge with each row scaled by m/‖W + ΔW‖ (PEFT's merge). */
  private async run(jobs: Job[], rank: number, inDtype: KernelDType, outT: KernelDType, w: number, l: number, out: number, r0: number, rows: number, cols: number): Promise<LowRankStats> {
    const k = this.kernels();
    const mag = jobs[0].m.magnitude;
    if (!mag) return k.run(rank, inDtype, outT, { w, l, r: this.at.r, out }, rows, cols);
    const ss = await k.rowSquares(rank, inDtype, { w, l, r: this.at.r, out: this.at.norms }, rows, cols);
    const m = mag.toF32(), f = k.f32(this.at.scale, rows);
    for (let i = 0; i < rows; i++) f[i] = m[r0 + i] / Math.sqrt(ss[i]);
    return k.run(rank, inDtype, outT, { w, l, r: this.at.r, out, scale: this.at.scale }, rows, cols);
  }

  /** Lays out L [rows, rank] row-major and R [rank, cols] packed for all of `jobs` on this tensor (the scaling
   * goes with B, as PEFT's s·(B·A)); returns the total rank. */
  private factors(p: TensorPlan, jobs: Job[]): number {
    const [rows, cols] = p.shape;
    const rank = jobs.reduce((a, j) => a + j.m.r, 0);
    const k = this.kernels();
    const L = k.f32(this.at.l, rows * rank);
    const Rs: { k: number; get: (k: number, j: number) => number }[] = [];
    let off = 0;
    for (const j of jobs) {
      const { m } = j, r = m.r, s = m.scaling * j.weight, A = m.A.toF32(), B = m.B.toF32();
      if (m.kind === "embedding" || m.fanInFanOut) { // stored transposed: ΔWᵀ = Aᵀ·(sB)ᵀ
        for (let i = 0; i < rows; i++) for (let q = 0; q < r; q++) L[i * rank + off + q] = A[q * rows + i];
        Rs.push({ k: r, get: (q, c) => Math.fround(s * B[c * r + q]) });
      } else {
        for (let i = 0; i < rows; i++) for (let q = 0; q < r; q++) L[i * rank + off + q] = s * B[i * r + q];
        Rs.push({ k: r, get: (q, c) => A[q * cols + c] });
      }
      off += r;
    }
    const starts: number[] = []; let acc = 0;
    for (const x of Rs) { starts.push(acc); acc += x.k; }
    packR(k.f32(this.at.r, rank * cols), rank, cols, (q, c) => {
      let i = 0; while (i + 1 < Rs.length && q >= starts[i + 1]) i++;
      return Rs[i].get(q - starts[i], c);
    });
    return rank;
  }
}

/** Throws for the first non-finite merged value in `outBytes` (which starts at element `first` of the tensor). */
function nonFinite(name: string, outT: KernelDType, outBytes: Uint8Array, first: number): never {
  const n = outBytes.byteLength / DTYPE_SIZE[outT];
  const v = toF32(outT, outT === "F32" ? new Float32Array(outBytes.buffer, outBytes.byteOffset, n) : new Uint16Array(outBytes.buffer, outBytes.byteOffset, n));
  const i = v.findIndex((x) => !Number.isFinite(x));
  throw new LoralabError(`merged tensor ${name} has a non-finite value (${v[i]}) at element ${first + i}; the adapter or its weight is broken`);
}

function finish(p: TensorPlan, w: Float32Array, orig: Float32Array, jobs: Job[], reports: ModuleReport[]): Uint8Array {
  const v = fromF32(p.dtype, w);
  const back = toF32(p.dtype, v, true);
  let dd = 0, ww = 0, maxD = 0, roundErr = 0;
  for (let i = 0; i < w.length; i++) {
    const x = w[i];
    if (!Number.isFinite(x)) throw new LoralabError(`merged tensor ${p.name} has a non-finite value (${x}) at element ${i}; the adapter or its weight is broken`);
    const d = x - orig[i];
    dd += d * d; ww += orig[i] * orig[i];
    if (Math.abs(d) > maxD) maxD = Math.abs(d);
    const re = Math.abs(back[i] - x);
    if (re > roundErr) roundErr = re;
  }
  reports.push(moduleReport(p.name, jobs, ww > 0 ? Math.sqrt(dd / ww) : 0, maxD, roundErr));
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}
