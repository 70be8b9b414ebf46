import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { perplexity } from "../lib/bench/perplexity.js";
import { CausalLM } from "../lib/model/causal-lm.js";
import { TextTokenizer } from "../lib/model/tokenizer.js";
import { openWeightSource } from "../lib/model/weights.js";
import { data } from "./helpers/paths.js";

/** NLL of every token of `ids` (from position 1) given all tokens before it in one forward pass, float64. */
async function directNll(lm: CausalLM, ids: number[]): Promise<number[]> {
  const V = lm.config.vocabSize;
  const { logits } = await lm.forward([ids], undefined, ids.length);
  const out: number[] = [];
  for (let t = 1; t < ids.length; t++) {
    const row = logits.subarray((t - 1) * V, t * V);
    let mx = -Infinity;
    for (const v of row) mx = Math.max(mx, v);
    let z = 0;
    for (const v of row) z += Math.exp(v - mx);
    out.push(mx + Math.log(z) - row[ids[t]]);
  }
  return out;
}

describe("perplexity windows (SPEC §12.2 exact counting)", () => {
  let lm: CausalLM;
  let stream: number[];
  before(async () => {
    const src = await openWeightSource(data("stories260K-hf"));
    lm = await CausalLM.load(src, { threads: 1 });
    await src.close();
    const tok = await TextTokenizer.load(data("stories260K-hf"));
    stream = tok.encode(readFileSync(data("tinystories-sample/tinystories.txt"), "utf8").slice(0, 4000), { bos: false });
  });
  after(() => lm.release());

  it("one window covering the text equals the direct computation", async () => {
    const ids = stream.slice(0, 300);
    const direct = await directNll(lm, ids);
    const r = await perplexity(lm, ids, { ctx: 300 });
    assert.equal(r.tokens, 299);
    const mean = direct.reduce((a, b) => a + b, 0) / direct.length;
    assert.ok(Math.abs(r.nll - mean) < 1e-9 * 300 + 1e-6);
  });

  it("overlapping windows score every token but the first exactly once, with the window's context", async () => {
    const ids = stream.slice(0, 700);
    const r = await perplexity(lm, ids, { ctx: 256, stride: 128 });
    assert.equal(r.tokens, 699);
    // windows start at 0,128,...,512 (512+256 ≥ 700 ends); recompute each scored token from its window
    let sum = 0, prevEnd = 0;
    for (let begin = 0; ; begin += 128) {
      const end = Math.min(begin + 256, 700);
      const nll = await directNll(lm, ids.slice(begin, end));
      for (let t = Math.max(prevEnd, begin + 1); t < end; t++) sum += nll[t - begin - 1];
      prevEnd = end;
      if (end === 700) break;
    }
    assert.ok(Math.abs(r.nllSum - sum) < 1e-6 * Math.abs(sum), `${r.nllSum} vs ${sum}`);
    assert.equal(r.windows, 5);
  });

  it("stride = ctx with BOS: ctx−1 tokens per window, partial tail kept or dropped", async () => {
    const ids = stream.slice(0, 1000);
    const keep = await perplexity(lm, ids, { ctx: 300, bos: 1 });
    assert.equal(keep.windows, 4);
    assert.equal(keep.tokens, 3 * 299 + 99);
    const drop = await perplexity(lm, ids, { ctx: 300, bos: 1, dropPartial: true });
    assert.equal(drop.windows, 3);
    assert.equal(drop.tokens, 3 * 299);
    // the first window equals a direct pass over [BOS, w...] without the BOS→w0 term
    const direct = await directNll(lm, [1, ...ids.slice(0, 300)]);
    const w0 = direct.slice(1).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(drop.windowNll[0] - w0) < 1e-6 * w0);
  });

  it("refuses bad windows and too-short texts", async () => {
    await assert.rejects(perplexity(lm, stream, { ctx: 600 }), /longer than the model's context/);
    await assert.rejects(perplexity(lm, stream, { ctx: 100, stride: 200 }), /--stride/);
    await assert.rejects(perplexity(lm, [5], {}), /at least 2/);
  });
});
