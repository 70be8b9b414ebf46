import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { generateLlamaModel, generateLoraAdapter } from "../lib/fixtures/index.js";
import { merge } from "../lib/lora/merge.js";
import { cliProcess } from "./helpers/cli.js";
import { tempDir } from "./helpers/paths.js";

/** Ctrl-C (an AbortSignal in the library, SIGINT on the CLI) stops a merge and leaves nothing behind. */
describe("interrupting a merge", function () {
  this.timeout(120_000);
  const tmp = tempDir();
  const base = join(tmp.path, "base"), adapter = join(tmp.path, "adapter"), second = join(tmp.path, "second");
  const linears = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
  before(async () => {
    // ~200 MB of fp32 weights, a DoRA adapter and then a plain one on every linear (a DoRA step followed by
    // another adapter takes the general merge path, not the fused kernel): the merge lasts long enough
    // (≈ 2 s) that a signal lands mid-merge
    await generateLlamaModel(base, { hiddenSize: 1024, intermediateSize: 2816, numLayers: 4, numHeads: 8, numKvHeads: 8, vocabSize: 256, dtype: "F32", seed: 5 });
    await generateLoraAdapter(adapter, base, { r: 8, alpha: 16, targets: linears, useDora: true, seed: 6 });
    await generateLoraAdapter(second, base, { r: 4, alpha: 8, targets: linears, seed: 7 });
  });
  after(() => tmp.cleanup());
  const leftovers = (name: string) => readdirSync(tmp.path).filter((f) => f.includes(name));

  it("library: an abort after the first tensor rejects with AbortError, no output and no temporary left", async () => {
    const ctl = new AbortController();
    let events = 0;
    await assert.rejects(
      merge({ base, adapters: [{ path: adapter }, { path: second }], out: join(tmp.path, "lib-out"), signal: ctl.signal, onProgress: () => { events++; ctl.abort(); } }),
      (e: Error) => e.name === "AbortError",
    );
    assert.equal(events, 1);
    assert.deepEqual(leftovers("lib-out"), []);
  });

  it("CLI: SIGINT during the merge exits 130 with 'interrupted', no output and no temporary left", async () => {
    const out = join(tmp.path, "cli-out");
    const child = cliProcess("merge", "--base", base, "--adapter", adapter, "--adapter", second, "--out", out);
    let stderr = "";
    const code = await new Promise<number | null>((resolve) => {
      // the non-TTY progress prints the phase name at the first progress event
      // one Ctrl-C, as a user would press it (a second one exits at once, by design)
      let sent = false;
      child.stderr.on("data", (d: Buffer) => { stderr += d; if (!sent && /merge\.\.\./.test(stderr)) { sent = true; child.kill("SIGINT"); } });
      child.on("exit", (c) => resolve(c));
    });
    assert.equal(code, 130, stderr);
    assert.match(stderr, /interrupted/);
    assert.deepEqual(leftovers("cli-out"), []);
    assert.ok(!existsSync(out));
  });
});
