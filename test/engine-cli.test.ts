import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { saveTensors } from "../lib/io/safetensors.js";
import type { Adapter } from "../lib/lora/types.js";
import { AdapterWeightSource, MapWeightSource } from "../lib/model/weights.js";
import { Tensor } from "../lib/tensor/tensor.js";
import { REPO_ROOT, data, tempDir } from "./helpers/paths.js";
import { randomModel } from "./model-reference.js";

/** Runs the CLI from source (tsx) and returns exit code and output. */
function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const script = `import("./lib/cli/main.ts").then(async (m) => { process.exitCode = await m.main(${JSON.stringify(args)}); })`;
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: REPO_ROOT, encoding: "utf8", timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const TINY = { model_type: "llama", architectures: ["LlamaForCausalLM"], hidden_size: 16, intermediate_size: 24, num_attention_heads: 2, num_key_value_heads: 1, num_hidden_layers: 1, vocab_size: 512, max_position_embeddings: 8, rms_norm_eps: 1e-5, hidden_act: "silu", tie_word_embeddings: true, bos_token_id: 1, eos_token_id: 2 };

async function writeModel(dir: string, raw: Record<string, unknown>, edit?: (t: Map<string, Tensor>) => void): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const { tensors } = randomModel({ ...TINY, model_type: "llama" }, 3);
  edit?.(tensors);
  writeFileSync(join(dir, "config.json"), JSON.stringify(raw));
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(data("stories260K-hf", f), join(dir, f));
  await saveTensors(join(dir, "model.safetensors"), Object.fromEntries(tensors));
  return dir;
}

describe("engine CLI", function () {
  this.timeout(300_000);
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const golden = JSON.parse(readFileSync(data("stories260K-golden/golden.json"), "utf8"));

  it("logits --json: golden ids and last-position logits", () => {
    const r = cli("logits", "--model", data("stories260K-hf"), "--prompt", "Once upon a time", "--json", "--threads", "1");
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.ids, golden.prompt_logits.ids);
    assert.equal(out.logits.length, 512);
    out.logits.forEach((v: number, i: number) => assert.ok(Math.abs(v - golden.prompt_logits.last_position_logits[i]) < 1e-4 * Math.max(1, Math.abs(v))));
  });

  it("generate streams the greedy golden continuation; --json reports the same ids", () => {
    const r = cli("generate", "--model", data("stories260K-hf/sharded"), "--prompt", "Once upon a time", "--max-new-tokens", "20");
    assert.equal(r.code, 0, r.stderr);
    assert.ok(golden.greedy_from_bos.text.startsWith(r.stdout.trimEnd()), r.stdout);
    assert.ok(r.stdout.length > 60);
    const j = JSON.parse(cli("generate", "--model", data("stories260K-hf"), "--prompt", "Once upon a time", "--max-new-tokens", "20", "--json").stdout);
    assert.deepEqual(j.ids, golden.greedy_from_bos.ids.slice(5, 25));
    // sampling is reproducible with a seed and differs from greedy
    const s1 = JSON.parse(cli("generate", "--model", data("stories260K-hf"), "--prompt", "Once upon a time", "--max-new-tokens", "30", "--temperature", "1.5", "--seed", "4", "--json").stdout);
    const s2 = JSON.parse(cli("generate", "--model", data("stories260K-hf"), "--prompt", "Once upon a time", "--max-new-tokens", "30", "--temperature", "1.5", "--seed", "4", "--json").stdout);
    assert.deepEqual(s1.ids, s2.ids);
    assert.notDeepEqual(s1.ids.slice(0, 20), golden.greedy_from_bos.ids.slice(5, 25));
  });

  it("ppl --json reports ppl, nll and the scored token count", () => {
    const text = join(tmp.path, "text.txt");
    writeFileSync(text, readFileSync(data("tinystories-sample/tinystories.txt"), "utf8").slice(0, 3000));
    const r = cli("ppl", "--model", data("stories260K-hf"), "--text", text, "--ctx", "200", "--stride", "200", "--max-tokens", "600", "--json");
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.tokens, 3 * 199);
    assert.ok(Math.abs(Math.exp(j.nll) - j.ppl) < 1e-9 * j.ppl);
    assert.ok(j.ppl > 1.5 && j.ppl < 20, String(j.ppl));
  });

  it("ppl reproduces the lora-shakespeare golden method on the held-out text (base; + adapter when lib/lora/adapter exists)", async function () {
    const text = readFileSync(data("tinyshakespeare/tinyshakespeare.txt"), "utf8");
    const heldOut = join(tmp.path, "heldout.txt");
    writeFileSync(heldOut, text.slice(1003854));
    const lora = JSON.parse(readFileSync(data("stories260K-lora-shakespeare/golden.json"), "utf8")).perplexity;
    const args = ["ppl", "--model", data("stories260K-hf"), "--text", heldOut, "--ctx", "256", "--max-tokens", "4096", "--drop-partial", "--json"];
    const base = JSON.parse(cli(...args).stdout);
    assert.equal(base.tokens, 4080);
    assert.ok(Math.abs(base.ppl / lora.base.ppl - 1) < 1e-3, String(base.ppl));
    if (!existsSync(join(REPO_ROOT, "lib/lora/adapter.ts"))) return this.skip();
    const r = cli(...args, "--adapter", data("stories260K-lora-shakespeare"));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Math.abs(JSON.parse(r.stdout).ppl / lora.dynamic.ppl - 1) < 1e-3, r.stdout);
    const other = cli("logits", "--model", data("stories260K-hf"), "--adapter", data("lora-gpt2-fmi"), "--prompt", "hi");
    assert.equal(other.code, 1);
    assert.match(other.stderr, /another model|fan_in_fan_out|does not have/);
  });

  it("bench --json and compare --json (base vs the same weights sharded as 'merged')", () => {
    const b = cli("bench", "--model", data("stories260K-hf"), "--prompt", "Once upon a time", "--max-new-tokens", "8", "--repeats", "2", "--json");
    assert.equal(b.code, 0, b.stderr);
    const bj = JSON.parse(b.stdout);
    assert.equal(bj.newTokens, 8);
    assert.equal(bj.ttftMs.n, 2);
    assert.ok(bj.decodeTokPerS.median > 0 && bj.peakRssBytes > 0);
    assert.equal(bj.modelBytes, 1040128);
    const text = join(tmp.path, "t2.txt");
    writeFileSync(text, readFileSync(data("tinystories-sample/tinystories.txt"), "utf8").slice(0, 2000));
    const out = join(tmp.path, "compare.json");
    const c = cli("compare", "--base", data("stories260K-hf"), "--merged", data("stories260K-hf/sharded"), "--prompt", "Once upon a time", "--text", text, "--max-new-tokens", "4", "--repeats", "1", "--ctx", "128", "--out", out);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /config\s+memory\s+TTFT\s+tok\/s\s+perplexity/);
    const cj = JSON.parse(readFileSync(out, "utf8"));
    assert.deepEqual(cj.rows.map((r: { config: string }) => r.config), ["base", "merged"]);
    assert.equal(cj.rows[0].perplexity.ppl, cj.rows[1].perplexity.ppl);
  });

  describe("bad input → clear error, non-zero exit", () => {
    it("unknown architecture", async () => {
      const dir = await writeModel(join(tmp.path, "gpt"), { ...TINY, model_type: "gpt_neox", architectures: ["GPTNeoXForCausalLM"] });
      const r = cli("logits", "--model", dir, "--prompt", "hi");
      assert.equal(r.code, 1);
      assert.match(r.stderr, /unsupported architecture.*gpt_neox/);
    });
    it("missing tensor", async () => {
      const dir = await writeModel(join(tmp.path, "missing"), TINY, (t) => t.delete("model.layers.0.mlp.up_proj.weight"));
      const r = cli("logits", "--model", dir, "--prompt", "hi");
      assert.equal(r.code, 1);
      assert.match(r.stderr, /model\.layers\.0\.mlp\.up_proj\.weight/);
    });
    it("config/weight shape mismatch", async () => {
      const dir = await writeModel(join(tmp.path, "shape"), { ...TINY, intermediate_size: 32 });
      const r = cli("logits", "--model", dir, "--prompt", "hi");
      assert.equal(r.code, 1);
      assert.match(r.stderr, /shape mismatch.*mlp\.gate_proj/);
    });
    it("prompt longer than the context", async () => {
      const dir = await writeModel(join(tmp.path, "short"), TINY);
      const r = cli("logits", "--model", dir, "--prompt", "Once upon a time there was a very long prompt");
      assert.equal(r.code, 1);
      assert.match(r.stderr, /longer than the model's context of 8 tokens/);
      const g = cli("generate", "--model", dir, "--prompt", "Once upon a time there was a very long prompt");
      assert.equal(g.code, 1);
      assert.match(g.stderr, /context/);
    });
    it("empty text file", () => {
      const empty = join(tmp.path, "empty.txt");
      writeFileSync(empty, "\n  \n");
      const r = cli("ppl", "--model", data("stories260K-hf"), "--text", empty);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /empty\.txt is empty/);
    });
    it("--device cuda without the CUDA provider", () => {
      const r = cli("logits", "--model", data("stories260K-hf"), "--prompt", "hi", "--device", "cuda");
      assert.equal(r.code, 1);
      assert.match(r.stderr, /CUDA execution provider/);
      // says how to get it, and nothing ran on the CPU instead
      assert.match(r.stderr, /ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules\/onnxruntime-node\/script\/install/);
      assert.equal(r.stdout, "");
    });
    it("an adapter for another model (CLI: stories260K's adapter on a 16-wide model)", async () => {
      const dir = await writeModel(join(tmp.path, "other-base"), TINY);
      const r = cli("logits", "--model", dir, "--adapter", data("stories260K-lora-shakespeare"), "--prompt", "hi");
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^loralab logits: .*another model/m);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    });
    it("an adapter for another model (library level: shapes and targets)", () => {
      const { cfg, tensors } = randomModel(TINY, 1);
      const base = new MapWeightSource(cfg, tensors);
      const A = Tensor.zeros("F32", [8, 64]), B = Tensor.zeros("F32", [64, 8]);
      const mk = (module: string): Adapter => ({ dir: "/adapters/x", config: {}, modules: new Map([[`${module}.weight`, { module, target: `${module}.weight`, kind: "linear", A, B, r: 8, alpha: 16, scaling: 2, fanInFanOut: false }]]), replacements: new Map(), trainableTokens: new Map() });
      assert.throws(() => new AdapterWeightSource(base, mk("model.layers.0.self_attn.q_proj")), /lora_A \[8,64\].*\(16, 16\).*another model/);
      assert.throws(() => new AdapterWeightSource(base, mk("model.layers.7.self_attn.q_proj")), /model\.layers\.7\.self_attn\.q_proj\.weight.*another model/);
    });
  });
});
