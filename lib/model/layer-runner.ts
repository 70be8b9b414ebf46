/**
 * Runs ONE decoder layer at a time in ONNX Runtime, for layer-wise calibration (GPTQ/AWQ).
 *
 *   const runner = await DecoderLayerRunner.create(modelDirOrSource, { threads });
 *   let h = runner.embed(ids);                                   // [seqLen × hidden]
 *   for (let l = 0; l < runner.config.numLayers; l++) {
 *     const a = await runner.run(l, h, ids.length);               // inputs of every linear + output
 *     // a.attnIn → q/k/v_proj, a.oIn → o_proj, a.mlpIn → gate/up_proj, a.downIn → down_proj
 *     h = (await runner.run(l, h, ids.length, quantizedWeights)).out;
 *   }
 *   const logits = await runner.finalNormAndLogits(h, ids.length); // [seqLen × vocab]
 *
 * One session serves every layer: the layer's weights are graph inputs (Llama layers share shapes),
 * fed from the source on each call (the last layer's are cached) or from `replace`, a map from the
 * module path (`model.layers.3.mlp.down_proj` or just `mlp.down_proj`) to a float32 (out, in) weight —
 * e.g. the dequantized result of quantizing it. `hidden` may hold several sequences of `seqLen`
 * tokens back to back (batch = hidden.length / (seqLen·hidden_size)); each is causal on its own, with
 * positions 0..seqLen-1. Biases (Qwen2 q/k/v) come from the source and are not replaced.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GraphBuilder } from "../engine/onnx-builder.js";
import { type SessionOptions, createSession, ort } from "../engine/session.js";
import { LoralabError } from "../errors.js";
import type { ModelConfig } from "../io/hf-config.js";
import { ModelDir } from "../io/model-dir.js";
import { Tensor } from "../tensor/tensor.js";
import { checkArchitecture, layerLinears, linearShape } from "./architecture.js";
import { type Emit, emitAttnContext, emitDecoderLayer, emitLinear, emitMlp, emitRmsNorm } from "./graph.js";
import { ExternalPlacer, InlinePlacer, InputPlacer, type TensorPlacer, asGraphTensor } from "./initializers.js";
import { DenseWeightSource, type DenseLinear, type WeightSource } from "./weights.js";

export interface LayerActivations {
  /** input of q_proj/k_proj/v_proj [tokens × hidden] */
  attnIn: Float32Array;
  /** input of o_proj [tokens × heads·head_dim] */
  oIn: Float32Array;
  /** input of gate_proj/up_proj [tokens × hidden] */
  mlpIn: Float32Array;
  /** input of down_proj [tokens × intermediate] */
  downIn: Float32Array;
  /** the layer's output [tokens × hidden] */
  out: Float32Array;
}

export interface LayerRunnerOptions extends SessionOptions {
  /** longest seqLen accepted (RoPE table size); default max_position_embeddings */
  maxContext?: number;
  /** ORT fused ops (default true), as in CausalLM */
  fused?: boolean;
}

const LAYER_PREFIX = /^model\.layers\.\d+\./;
const OUTPUTS = ["attnIn", "oIn", "mlpIn", "downIn", "out"] as const;

export class DecoderLayerRunner {
  private cachedLayer = -1;
  private cachedFeeds: Record<string, ort.Tensor> = {};
  private head?: ort.InferenceSession;
  /** graphs of one activation of the layer (pruned to what it depends on: ORT runs every node of a graph,
   * whichever outputs are fetched), and of the MLP alone */
  private parts = new Map<string, Promise<ort.InferenceSession>>();

  private constructor(
    readonly source: WeightSource,
    private readonly session: ort.InferenceSession,
    /** graph input name → name relative to the layer (`self_attn.q_proj.weight`) */
    private readonly weightInputs: Map<string, string>,
    private readonly embedding: Float32Array,
    private readonly opts: LayerRunnerOptions,
  ) {}

  get config(): ModelConfig {
    return this.source.config;
  }

  static async create(model: ModelDir | WeightSource, opts: LayerRunnerOptions = {}): Promise<DecoderLayerRunner> {
    const source = model instanceof ModelDir ? new DenseWeightSource(model) : model;
    const cfg = source.config;
    checkArchitecture(cfg, source.description);
    const { g, e, h, ctx, placer } = layerGraph(source, opts);
    const v = await emitDecoderLayer(e, 0, h, ctx);
    for (const name of OUTPUTS) {
      g.node("Identity", [v[name]], [name]);
      g.output(name, "F32", ["tokens", activationWidth(cfg, name)]);
    }
    const session = await createSession(g.toBytes(), { spinning: false, ...opts });
    const weightInputs = new Map([...placer.inputs].map(([key, name]) => [key, name.replace(LAYER_PREFIX, "")]));
    const embedding = (await source.tensor("model.embed_tokens.weight")).toF32();
    if (embedding.length !== cfg.vocabSize * cfg.hiddenSize) throw new LoralabError(`config/weight shape mismatch: model.embed_tokens.weight has ${embedding.length} values, config.json implies ${cfg.vocabSize}×${cfg.hiddenSize}`);
    return new DecoderLayerRunner(source, session, weightInputs, embedding, opts);
  }

  /** Token embeddings [ids.length × hidden]. */
  embed(ids: ArrayLike<number>): Float32Array {
    const d = this.config.hiddenSize, V = this.config.vocabSize;
    const out = new Float32Array(ids.length * d);
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t];
      if (!(id >= 0 && id < V)) throw new LoralabError(`token id ${id} is outside the vocabulary (0..${V - 1})`);
      out.set(this.embedding.subarray(id * d, (id + 1) * d), t * d);
    }
    return out;
  }

  /** Runs decoder layer `layer` on `hidden` (one or more sequences of `seqLen` tokens). */
  async run(layer: number, hidden: Float32Array, seqLen: number, replace?: Map<string, Float32Array>): Promise<LayerActivations> {
    const res = await this.session.run(await this.feedsWith(layer, hidden, seqLen, replace));
    return { attnIn: f32(res.attnIn), oIn: f32(res.oIn), mlpIn: f32(res.mlpIn), downIn: f32(res.downIn), out: f32(res.out) };
  }

  /** The layer's weights as graph inputs, those in `replace` substituted, and `hidden` (when given). */
  private async feedsWith(layer: number, hidden: Float32Array | undefined, seqLen: number, replace?: Map<string, Float32Array>): Promise<Record<string, ort.Tensor>> {
    const cfg = this.config;
    if (!(layer >= 0 && layer < cfg.numLayers)) throw new LoralabError(`layer ${layer} does not exist (model has ${cfg.numLayers})`);
    const d = cfg.hiddenSize;
    const feeds: Record<string, ort.Tensor> = { ...(await this.layerFeeds(layer)) };
    if (hidden) {
      if (seqLen <= 0 || hidden.length % (seqLen * d) !== 0) throw new LoralabError(`hidden has ${hidden.length} values, not a multiple of seqLen ${seqLen} × hidden ${d}`);
      feeds.hidden = new ort.Tensor("float32", hidden, [hidden.length / (seqLen * d), seqLen, d]);
    }
    for (const [module, w] of replace ?? []) {
      const rel = module.replace(LAYER_PREFIX, "");
      const key = `layer.${rel}.weight`;
      if (!this.weightInputs.has(key)) throw new LoralabError(`replace: '${module}' is not a linear of a decoder layer (use e.g. self_attn.q_proj)`);
      const [out, inp] = linearShape(cfg, rel);
      if (w.length !== out * inp) throw new LoralabError(`replace: ${module} needs ${out}×${inp} values, got ${w.length}`);
      feeds[key] = new ort.Tensor("float32", w, [out, inp]);
    }
    return feeds;
  }

  /** One activation of `run`, computing only what it depends on: `attnIn` is the input norm alone, `oIn` the
   * attention, `mlpIn` stops before the MLP, `downIn` before down_proj. */
  async activation(name: keyof LayerActivations, layer: number, hidden: Float32Array, seqLen: number, replace?: Map<string, Float32Array>): Promise<Float32Array> {
    const session = await this.part(name, async () => {
      const { g, e, h, ctx } = layerGraph(this.source, this.opts);
      const v = await emitDecoderLayer(e, 0, h, ctx);
      g.node("Identity", [v[name]], [name]);
      g.output(name, "F32", ["tokens", activationWidth(this.config, name)]);
      g.prune();
      return g;
    });
    const res = await session.run(await this.feeds(session, layer, hidden, seqLen, replace));
    return f32(res[name]);
  }

  /** Only the MLP of layer `layer` on x (post_attention_layernorm outputs, [tokens × hidden]):
   * down_proj(silu(gate_proj(x))·up_proj(x)), without the residual. */
  async mlp(layer: number, x: Float32Array, replace?: Map<string, Float32Array>): Promise<Float32Array> {
    const d = this.config.hiddenSize;
    const session = await this.part("mlp", async () => {
      const g = new GraphBuilder("decoder_mlp");
      const { out } = await emitMlp(layerEmit(g, this.source, this.opts), 0, g.input("x", "F32", ["tokens", d]));
      g.node("Identity", [out], ["y"]);
      g.output("y", "F32", ["tokens", d]);
      return g;
    });
    if (x.length % d !== 0) throw new LoralabError(`mlp input has ${x.length} values, not a multiple of hidden ${d}`);
    const res = await session.run(await this.feeds(session, layer, undefined, 1, replace, { x: new ort.Tensor("float32", x, [x.length / d, d]) }));
    return f32(res.y);
  }

  /** The session of a part of the layer, built on first use. */
  private part(key: string, build: () => Promise<GraphBuilder>): Promise<ort.InferenceSession> {
    let s = this.parts.get(key);
    if (!s) {
      s = build().then((g) => createSession(g.toBytes(), { spinning: false, ...this.opts }));
      this.parts.set(key, s);
    }
    return s;
  }

  /** The inputs `session` declares: the layer's weights (those in `replace` substituted), `hidden`. */
  private async feeds(session: ort.InferenceSession, layer: number, hidden: Float32Array | undefined, seqLen: number, replace?: Map<string, Float32Array>, extra: Record<string, ort.Tensor> = {}): Promise<Record<string, ort.Tensor>> {
    const all = await this.feedsWith(layer, hidden, seqLen, replace);
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of session.inputNames) feeds[name] = extra[name] ?? all[name];
    return feeds;
  }

  /** Final RMSNorm and lm_head on the last layer's output: [tokens × vocab]. */
  async finalNormAndLogits(hidden: Float32Array, tokens = hidden.length / this.config.hiddenSize): Promise<Float32Array> {
    const cfg = this.config;
    if (!this.head) this.head = await this.buildHead();
    const res = await this.head.run({ hidden: new ort.Tensor("float32", hidden, [tokens, cfg.hiddenSize]) });
    return f32(res.logits);
  }

  private async buildHead(): Promise<ort.InferenceSession> {
    const cfg = this.config;
    const g = new GraphBuilder("lm_head");
    const big = cfg.vocabSize * cfg.hiddenSize * 4 > 1.5e9;
    const dir = big ? mkdtempSync(join(tmpdir(), "loralab-head-")) : undefined;
    const placer: TensorPlacer = dir ? new ExternalPlacer(g, dir) : new InlinePlacer(g);
    try {
      const e: Emit = { g, placer, cfg, tensor: (n) => this.source.tensor(n), linear: (m) => this.source.linear(m), fused: this.opts.fused ?? true };
      const x = g.input("hidden", "F32", ["tokens", cfg.hiddenSize]);
      const logits = emitLinear(e, await emitRmsNorm(e, x, "model.norm.weight"), "lm_head", await e.linear("lm_head"));
      g.node("Identity", [logits], ["logits"]);
      g.output("logits", "F32", ["tokens", cfg.vocabSize]);
      if (!dir) return await createSession(g.toBytes(), { spinning: false, ...this.opts });
      (placer as ExternalPlacer).close();
      writeFileSync(join(dir, "model.onnx"), g.toBytes());
      return await createSession(join(dir, "model.onnx"), { spinning: false, ...this.opts });
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }

  private async layerFeeds(layer: number): Promise<Record<string, ort.Tensor>> {
    if (layer === this.cachedLayer) return this.cachedFeeds;
    const feeds: Record<string, ort.Tensor> = {};
    const linears = new Map(layerLinears(layer).map((m) => [m.replace(LAYER_PREFIX, ""), m]));
    const loaded = new Map<string, DenseLinear>();
    for (const [key, rel] of this.weightInputs) {
      const full = `model.layers.${layer}.${rel}`;
      const module = rel.replace(/\.(weight|bias)$/, "");
      let t: Tensor;
      if (linears.has(module)) {
        if (!loaded.has(module)) loaded.set(module, await denseLinear(this.source, linears.get(module)!));
        const lin = loaded.get(module)!;
        t = rel.endsWith(".bias") ? lin.bias! : lin.weight;
      } else t = await this.source.tensor(full);
      t = asGraphTensor(t);
      feeds[key] = new ort.Tensor(t.dtype === "F32" ? "float32" : "uint8", t.data as Float32Array, [...t.shape]);
    }
    this.cachedLayer = layer;
    this.cachedFeeds = feeds;
    return feeds;
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.head?.release();
    for (const s of this.parts.values()) await (await s).release();
    this.parts.clear();
  }
}

/** Values per token of each activation. */
function activationWidth(cfg: ModelConfig, name: keyof LayerActivations): number {
  return { attnIn: cfg.hiddenSize, oIn: cfg.numHeads * cfg.headDim, mlpIn: cfg.hiddenSize, downIn: cfg.intermediateSize, out: cfg.hiddenSize }[name];
}

/** Emitting into `g` with the layer's weights as graph inputs named `layer.<module>.weight` (one graph
 * serves every layer: they share shapes). */
function layerEmit(g: GraphBuilder, source: WeightSource, opts: LayerRunnerOptions): Emit {
  const placer = new InputPlacer(g, (name) => name.replace(LAYER_PREFIX, "layer."));
  return { g, placer, cfg: source.config, tensor: (n) => source.tensor(n), linear: (m) => denseLinear(source, m), fused: opts.fused ?? true };
}

/** A graph with the layer's input `hidden` [batch, seq, hidden], its attention context (RoPE tables, causal
 * mask) and the layer's weights as graph inputs named `layer.<module>.weight`. */
function layerGraph(source: WeightSource, opts: LayerRunnerOptions) {
  const cfg = source.config;
  const g = new GraphBuilder("decoder_layer");
  const hidden = g.input("hidden", "F32", ["batch", "seq", cfg.hiddenSize]);
  const e = layerEmit(g, source, opts);
  const placer = e.placer as InputPlacer;
  const ctx = emitAttnContext(g, cfg, opts.maxContext ?? cfg.maxPositionEmbeddings, hidden);
  const h = g.op("Reshape", [hidden, g.constI64([-1, cfg.hiddenSize])]);
  return { g, e, h, ctx, placer };
}

async function denseLinear(source: WeightSource, module: string): Promise<DenseLinear> {
  const lw = await source.linear(module);
  if (lw.kind !== "dense") throw new LoralabError(`the layer runner needs float weights, but ${module} is ${lw.kind} in ${source.description}`);
  return lw;
}

function f32(t: ort.Tensor): Float32Array {
  return t.data as Float32Array;
}
