import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { cli } from "./helpers/cli.js";
import { data, tempDir } from "./helpers/paths.js";


describe("loralab merge CLI", function () {
  this.timeout(60_000);
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it("merges two weighted adapters, --json report, exit 0; refuses an existing output", () => {
    const out = join(tmp.path, "m");
    const r = cli("merge", "--base", data("stories260K-hf"), "--adapter", data("stories260K-lora-shakespeare"), "--weight", "0.7",
      "--adapter", data("stories260K-lora-rslora"), "--weight", "0.3", "--out", out, "--json", "--quiet");
    assert.equal(r.status, 0, r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.ok(rep.modules.length > 0 && rep.modules.some((m: { adapters: number }) => m.adapters === 2));
    const again = cli("merge", "--base", data("stories260K-hf"), "--adapter", data("stories260K-dora"), "--out", out, "--quiet");
    assert.notEqual(again.status, 0);
    assert.match(again.stderr, /already exists/);
  });

  it("another model's adapter: non-zero exit naming the module, no output", () => {
    const out = join(tmp.path, "bad");
    const r = cli("merge", "--base", data("stories260K-hf"), "--adapter", data("lora-gpt2-fmi"), "--out", out, "--quiet");
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /c_attn/);
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(tmp.path).filter((n) => n.includes("bad")), []);
  });
});
