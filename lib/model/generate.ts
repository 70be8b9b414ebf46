import { throwIfAborted } from "../errors.js";
import type { LongTaskOptions } from "../progress.js";
import { seededRandom } from "../random.js";
import type { CausalLM } from "./causal-lm.js";

export interface SamplingOptions {
  /** 0 (default) = greedy argmax */
  temperature?: number;
  /** keep the k most likely tokens (0 = all) */
  topK?: number;
  /** keep the smallest set whose probability reaches p (1 = all) */
  topP?: number;
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions, LongTaskOptions {
  maxNewTokens: number;
  /** stop when one of these is produced (default: the config's eos ids); `[]` never stops early */
  stopIds?: number[];
  /** called with each new token as soon as it is chosen */
  onToken?: (id: number) => void;
}

export interface GenerateResult {
  /** the new tokens (the stop token included when it ended generation) */
  ids: number[];
  promptTokens: number;
  /** prompt → first new token chosen (prefill + sampling), ms */
  ttftMs: number;
  /** latency of every later token (one decode step each), ms */
  tokenMs: number[];
  totalMs: number;
  stop: "eos" | "length";
}


export function argmax(v: ArrayLike<number>, from = 0, to = v.length): number {
  let best = from;
  for (let i = from + 1; i < to; i++) if (v[i] > v[best]) best = i;
  return best - from;
}

/** Picks the next token from one logits row. */
export function sampleToken(logits: Float32Array, opts: SamplingOptions, random: () => number): number {
  const T = opts.temperature ?? 0;
  if (!(T > 0)) return argmax(logits);
  const n = logits.length;
  let order = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b] - logits[a]);
  if (opts.topK && opts.topK > 0 && opts.topK < n) order = order.slice(0, opts.topK);
  const max = logits[order[0]];
  let probs = order.map((i) => Math.exp((logits[i] - max) / T));
  let sum = probs.reduce((a, b) => a + b, 0);
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    let cum = 0, keep = 0;
    while (keep < probs.length && cum < topP * sum) cum += probs[keep++];
    order = order.slice(0, Math.max(1, keep));
    probs = probs.slice(0, order.length);
    sum = probs.reduce((a, b) => a + b, 0);
  }
  let u = random() * sum;
  for (let i = 0; i < order.length; i++) {
    u -= probs[i];
    if (u <= 0) return order[i];
  }
  return order[order.length - 1];
}

/** Generates up to maxNewTokens after `prompt` (batch 1) with the KV cache; timing for the benchmark. */
export async function generate(lm: CausalLM, prompt: number[], opts: GenerateOptions): Promise<GenerateResult> {
  const stop = new Set(opts.stopIds ?? lm.config.eosTokenIds);
  const random = seededRandom(opts.seed ?? 0);
  const t0 = performance.now();
  let { logits, cache } = await lm.forward([prompt]);
  const ids: number[] = [];
  const tokenMs: number[] = [];
  let ttftMs = 0;
  let result: GenerateResult["stop"] = "length";
  let last = performance.now();
  while (ids.length < opts.maxNewTokens) {
    const id = sampleToken(logits, opts, random);
    const now = performance.now();
    if (ids.length === 0) ttftMs = now - t0;
    else tokenMs.push(now - last);
    last = now;
    ids.push(id);
    opts.onToken?.(id);
    opts.onProgress?.({ phase: "generate", done: ids.length, total: opts.maxNewTokens, unit: "tokens" });
    if (stop.has(id)) { result = "eos"; break; }
    if (ids.length >= opts.maxNewTokens || cache.length + 1 > lm.maxContext) break;
    throwIfAborted(opts.signal);
    ({ logits, cache } = await lm.forward([[id]], cache));
  }
  return { ids, promptTokens: prompt.length, ttftMs, tokenMs, totalMs: performance.now() - t0, stop: result };
}
