import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { main } from "../lib/cli/main.js";
import { LoralabError, isLoralabError } from "../lib/errors.js";
import { data, tempDir } from "./helpers/paths.js";

/** main() in this process (mocha under tsx), where the command modules are imported dynamically and the
 * error class may come from a second copy of lib/errors: a bad input still gives a clean message and 1. */
async function inProcess(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = "";
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    return { code: await main(args), stderr };
  } finally {
    process.stderr.write = write;
  }
}

describe("main() in process", function () {
  this.timeout(60_000);
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it("an empty text file: exit code 1 and the message, no stack", async () => {
    const empty = join(tmp.path, "empty.txt");
    writeFileSync(empty, "");
    const r = await inProcess(["ppl", "--model", data("stories260K-hf"), "--text", empty]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^loralab ppl: .*empty\.txt is empty/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  it("a missing model directory: exit code 1 and the path", async () => {
    const r = await inProcess(["logits", "--model", join(tmp.path, "nope"), "--prompt", "hi"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nope/);
  });

  it("isLoralabError recognises the brand across copies of the class", () => {
    assert.ok(isLoralabError(new LoralabError("x")));
    // what a second copy of lib/errors.ts produces: another class with the same brand
    const other = Object.assign(new Error("y"), { [Symbol.for("loralab.LoralabError")]: true });
    assert.ok(isLoralabError(other));
    assert.ok(!isLoralabError(new Error("z")));
    assert.ok(!isLoralabError("LoralabError"));
  });
});
