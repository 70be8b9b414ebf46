import { LoralabError, throwIfAborted } from "../errors.js";
import type { CausalLM } from "../model/causal-lm.js";
import type { LongTaskOptions } from "../progress.js";
import { type Displayable, withDisplay } from "./stats.js";

export interface PerplexityOptions extends LongTaskOptions {
  /** stream tokens per window (default: the model's context, less one for BOS) */
  ctx?: number;
  /** window start advance (default ctx: non-overlapping windows) */
  stride?: number;
  /** use only the first T tokens of the stream */
  maxTokens?: number;
  /** BOS id put before every window (default none); the BOS → first-token prediction is never scored */
  bos?: number | null;
  /** drop a trailing window shorter than ctx (the lora-shakespeare golden method); default false (HF) */
  dropPartial?: boolean;
}

export interface PerplexityResult {
  ppl: number;
  /** mean NLL per scored token (natural log) */
  nll: number;
  nllSum: number;
  /** scored tokens */
  tokens: number;
  /** ppl · standard error of the mean NLL (llama.cpp's ± figure) */
  pplStderr: number;
  windows: number;
  /** NLL sum of each window */
  windowNll: number[];
  /** tokens each window scored */
  windowTokens: number[];
  streamTokens: number;
  ctx: number;
  stride: number;
  bos: boolean;
  method: string;
}

/**
 * Strided perplexity (SPEC §12.2, exact token count) over a token stream without BOS. Windows start at
 * 0, stride, 2·stride, …; window = stream[begin, min(begin+ctx, n)), run as its own sequence with BOS
 * first when given; scored: the stream tokens after `prevEnd` (the previous window's end), never the
 * window's first token (it has no context inside the window). stride = ctx gives non-overlapping windows
 * scoring ctx−1 tokens each — with BOS exactly the stories260K-lora-shakespeare golden method.
 */
export async function perplexity(lm: CausalLM, stream: number[], opts: PerplexityOptions = {}): Promise<PerplexityResult & Displayable> {
  const bos = opts.bos ?? null;
  const ids = opts.maxTokens !== undefined ? stream.slice(0, opts.maxTokens) : stream;
  const n = ids.length;
  const ctx = opts.ctx ?? lm.maxContext - (bos === null ? 0 : 1);
  const stride = opts.stride ?? ctx;
  if (!(ctx >= 2)) throw new LoralabError(`--ctx must be at least 2, got ${ctx}`);
  if (!(stride >= 1 && stride <= ctx)) throw new LoralabError(`--stride must be between 1 and --ctx (${ctx}), got ${stride}`);
  if (ctx + (bos === null ? 0 : 1) > lm.maxContext) throw new LoralabError(`--ctx ${ctx}${bos === null ? "" : " + BOS"} is longer than the model's context of ${lm.maxContext} tokens`);
  if (n < 2) throw new LoralabError(`the text has ${n} token${n === 1 ? "" : "s"}; perplexity needs at least 2`);
  const V = lm.config.vocabSize;
  const starts: number[] = [];
  for (let begin = 0; ; begin += stride) {
    const end = Math.min(begin + ctx, n);
    if (end - begin < ctx && opts.dropPartial) break;
    starts.push(begin);
    if (end === n) break;
  }
  if (starts.length === 0) throw new LoralabError(`the text has ${n} tokens, fewer than one window of ${ctx}`);
  let sum = 0, sumSq = 0, count = 0, prevEnd = 0;
  const windowNll: number[] = [], windowTokens: number[] = [];
  for (const [w, begin] of starts.entries()) {
    throwIfAborted(opts.signal);
    const end = Math.min(begin + ctx, n);
    const input = bos === null ? ids.slice(begin, end) : [bos, ...ids.slice(begin, end)];
    const off = bos === null ? 0 : 1;
    const first = Math.max(prevEnd, begin + 1);
    const { logits } = await lm.forward([input], undefined, input.length);
    let wsum = 0;
    for (let t = first; t < end; t++) {
      // logits at input position of token t-1 predict token t
      const row = (t - 1 - begin + off) * V;
      let max = -Infinity;
      for (let j = 0; j < V; j++) if (logits[row + j] > max) max = logits[row + j];
      let z = 0;
      for (let j = 0; j < V; j++) z += Math.exp(logits[row + j] - max);
      const nll = Math.log(z) + max - logits[row + ids[t]];
      wsum += nll;
      sumSq += nll * nll;
      count++;
    }
    sum += wsum;
    windowNll.push(wsum);
    windowTokens.push(end - first);
    prevEnd = end;
    opts.onProgress?.({ phase: "perplexity", done: w + 1, total: starts.length, unit: "windows" });
  }
  const mean = sum / count;
  const variance = count > 1 ? (sumSq / count - mean * mean) * (count / (count - 1)) : 0;
  const ppl = Math.exp(mean);
  const result: PerplexityResult = {
    ppl, nll: mean, nllSum: sum, tokens: count, pplStderr: ppl * Math.sqrt(Math.max(variance, 0) / count),
    windows: starts.length, windowNll, windowTokens, streamTokens: n, ctx, stride, bos: bos !== null,
    method: `strided windows of ${ctx} tokens, stride ${stride}${bos === null ? "" : ", BOS before every window (BOS→first token not scored)"}${opts.dropPartial ? ", trailing partial window dropped" : ""}`,
  };
  // summary table + perplexity per window; the plotting code loads only when the result is displayed
  return withDisplay(result, (r) => import("./display.js").then((m) => m.perplexityBundle(r)));
}
