import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GraphBuilder } from "../engine/onnx-builder.js";
import { type SessionOptions, createSession, ort } from "../engine/session.js";
import { LoralabError } from "../errors.js";
import type { ModelConfig } from "../io/hf-config.js";
import type { LongTaskOptions } from "../progress.js";
import { checkArchitecture, linearShape } from "./architecture.js";
import { PAST_KEY, PAST_VALUE, PRESENT_KEY, PRESENT_VALUE, emitCausalLm } from "./graph.js";
import { ExternalPlacer, InlinePlacer, type TensorPlacer } from "./initializers.js";
import type { WeightSource } from "./weights.js";

export interface LoadOptions extends SessionOptions, LongTaskOptions {
  /** longest sequence (past + new) the session accepts; default max_position_embeddings */
  maxContext?: number;
  /** where the model goes when it needs external data (default: a temp dir, removed after loading) */
  cacheDir?: string;
  /** force external initializers (default: when the weights exceed 1.5 GB) */
  external?: boolean;
  /** ORT fused ops for RMSNorm/RoPE/attention (default true); false = plain ONNX ops */
  fused?: boolean;
}

/** Past keys/values per layer (ORT tensors [batch, kv_heads, past, head_dim]). */
export interface KvCache {
  length: number;
  batch: number;
  tensors: Record<string, ort.Tensor>;
}

const EXTERNAL_ABOVE = 1.5e9;

/** Approximate bytes of float32 weights, to choose inline vs external initializers before building. */
function estimateBytes(cfg: ModelConfig): number {
  const lin = (m: string) => { const [o, i] = linearShape(cfg, m); return o * i; };
  const layer = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].reduce((s, p) => s + lin(p), 0);
  return 4 * (cfg.numLayers * layer + cfg.vocabSize * cfg.hiddenSize * (cfg.tieWordEmbeddings ? 1 : 2));
}

/** A causal LM in one ONNX Runtime session, with a KV cache for incremental decoding. */
export class CausalLM {
  private constructor(
    readonly session: ort.InferenceSession,
    readonly config: ModelConfig,
    readonly maxContext: number,
    /** bytes of weights in the graph (float32 as run, LoRA factors included) */
    readonly modelBytes: number,
    /** build + session creation, ms */
    readonly loadMs: number,
    readonly description: string,
  ) {}

  static async load(source: WeightSource, opts: LoadOptions = {}): Promise<CausalLM> {
    const t0 = performance.now();
    const cfg = source.config;
    checkArchitecture(cfg, source.description);
    // attention is full (no sliding window): with Mistral's sliding_window the context stops there, where
    // full and windowed attention still agree
    const sw = cfg.raw.sliding_window, swOn = typeof sw === "number" && cfg.raw.use_sliding_window !== false;
    const limit = swOn ? Math.min(cfg.maxPositionEmbeddings, sw as number) : cfg.maxPositionEmbeddings;
    if (opts.maxContext !== undefined && opts.maxContext > limit) throw new LoralabError(`maxContext ${opts.maxContext} exceeds the model's ${swOn ? "sliding window" : "context"} of ${limit} tokens`);
    const maxContext = opts.maxContext ?? limit;
    const g = new GraphBuilder("causal_lm");
    const external = opts.external ?? estimateBytes(cfg) > EXTERNAL_ABOVE;
    let dir: string | undefined;
    let placer: TensorPlacer;
    if (external) {
      dir = opts.cacheDir ?? mkdtempSync(join(tmpdir(), "loralab-onnx-"));
      placer = new ExternalPlacer(g, dir);
    } else placer = new InlinePlacer(g);
    try {
      await emitCausalLm({ g, placer, cfg, tensor: (n) => source.tensor(n), linear: (m) => source.linear(m), fused: opts.fused ?? true }, maxContext, opts);
      let session: ort.InferenceSession;
      if (dir) {
        (placer as ExternalPlacer).close();
        const path = join(dir, "model.onnx");
        writeFileSync(path, g.toBytes());
        session = await createSession(path, opts);
      } else session = await createSession(g.toBytes(), opts);
      return new CausalLM(session, cfg, maxContext, placer.bytes, performance.now() - t0, source.description);
    } finally {
      if (dir && !opts.cacheDir) rmSync(dir, { recursive: true, force: true });
    }
  }

  emptyCache(batch = 1): KvCache {
    const { numKvHeads: KV, headDim: D, numLayers: L } = this.config;
    const tensors: Record<string, ort.Tensor> = {};
    const empty = new ort.Tensor("float32", new Float32Array(0), [batch, KV, 0, D]);
    for (let i = 0; i < L; i++) {
      tensors[PAST_KEY(i)] = empty;
      tensors[PAST_VALUE(i)] = empty;
    }
    return { length: 0, batch, tensors };
  }

  /**
   * Runs `ids` (batch rows of equal length) after the cached positions. Returns the logits of the last
   * `numLogits` positions of each row ([batch, numLogits, vocab] flattened) and the extended cache.
   */
  async forward(ids: ArrayLike<number>[], cache: KvCache = this.emptyCache(ids.length), numLogits = 1): Promise<{ logits: Float32Array; cache: KvCache }> {
    const batch = ids.length, seq = ids[0]?.length ?? 0;
    if (seq === 0) throw new LoralabError("no tokens to run");
    if (batch !== cache.batch) throw new LoralabError(`batch ${batch} does not match the cache's batch ${cache.batch}`);
    if (cache.length + seq > this.maxContext)
      throw new LoralabError(`the sequence (${cache.length} cached + ${seq} new tokens) is longer than the model's context of ${this.maxContext} tokens`);
    const V = this.config.vocabSize;
    const flat = new BigInt64Array(batch * seq);
    ids.forEach((row, b) => {
      if (row.length !== seq) throw new LoralabError("all rows of a batch must have the same length");
      for (let s = 0; s < seq; s++) {
        const id = row[s];
        if (!(id >= 0 && id < V)) throw new LoralabError(`token id ${id} is outside the vocabulary (0..${V - 1})`);
        flat[b * seq + s] = BigInt(id);
      }
    });
    numLogits = Math.min(numLogits, seq);
    const feeds: Record<string, ort.Tensor> = {
      ...cache.tensors,
      input_ids: new ort.Tensor("int64", flat, [batch, seq]),
      num_logits: new ort.Tensor("int64", BigInt64Array.from([BigInt(numLogits)]), [1]),
    };
    const out = await this.session.run(feeds);
    const tensors: Record<string, ort.Tensor> = {};
    for (let i = 0; i < this.config.numLayers; i++) {
      tensors[PAST_KEY(i)] = out[PRESENT_KEY(i)];
      tensors[PAST_VALUE(i)] = out[PRESENT_VALUE(i)];
    }
    return { logits: out.logits.data as Float32Array, cache: { length: cache.length + seq, batch, tensors } };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
