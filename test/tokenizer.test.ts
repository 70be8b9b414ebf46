import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { TextStream, TextTokenizer } from "../lib/model/tokenizer.js";
import { data } from "./helpers/paths.js";

const golden = JSON.parse(readFileSync(data("stories260K-golden/golden.json"), "utf8"));
const lora = JSON.parse(readFileSync(data("stories260K-lora-shakespeare/golden.json"), "utf8"));

describe("tokenizer (@huggingface/tokenizers on stories260K-hf/tokenizer.json)", () => {
  let tok: TextTokenizer;
  before(async () => {
    tok = await TextTokenizer.load(data("stories260K-hf"));
  });

  it("finds the BOS the post-processor adds", () => {
    assert.equal(tok.bosId, 1);
  });

  it("reproduces every golden encode case", () => {
    for (const c of golden.encode_cases) assert.deepEqual(tok.encode(c.text, { bos: false }), c.ids_without_bos, JSON.stringify(c.text));
    assert.deepEqual(tok.encode(golden.prompt_logits.prompt), golden.prompt_logits.ids);
    assert.deepEqual(tok.encode(lora.prompt.text), lora.prompt.ids);
  });

  it("reproduces the 4,096 golden ids of the held-out Shakespeare text", () => {
    const text = readFileSync(data("tinyshakespeare/tinyshakespeare.txt"), "utf8");
    const heldOut = text.slice(Math.floor(0.9 * text.length));
    assert.equal(heldOut.length, 111540);
    assert.deepEqual(tok.encode(heldOut.slice(0, 12000), { bos: false }).slice(0, 4096), lora.perplexity.token_ids_first4096);
  });

  it("streams decoded text token by token with the spaces of the whole", () => {
    const ids = golden.greedy_from_bos.ids.slice(1, 60);
    let out = "";
    const s = new TextStream(tok, 1, (t) => (out += t));
    for (const id of ids) s.push(id);
    s.end();
    assert.equal(out, tok.decode(ids));
    assert.ok(golden.greedy_from_bos.text.startsWith(out));
  });
});
