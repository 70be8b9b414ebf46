import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { openSink } from "../lib/io/file-sink.js";
import { seededRandom } from "../lib/random.js";
import { tempDir } from "./helpers/paths.js";
import { onTinyTmpfs } from "./helpers/tmpfs.js";

describe("file sink (O_DIRECT staging, buffered fallback)", function () {
  this.timeout(60_000);
  const tmp = tempDir();
  after(() => tmp.cleanup());

  // piece sizes around the 16 MB staging chunk and the 4096-byte alignment; 57 MB in all, so the three
  // staging chunks are each reused
  const sizes = [5, 4096, 16 * 2 ** 20 + 3, 20 * 2 ** 20, 4095, 1, 21 * 2 ** 20 - 11];
  const rand = seededRandom(3);
  const pieces = sizes.map((n) => Uint8Array.from({ length: n }, () => (rand() * 256) | 0));
  const expected = Buffer.concat(pieces);

  for (const direct of [true, false]) {
    it(`${direct ? "direct" : "buffered"}: unaligned pieces read back byte for byte, exact size; the caller's buffer is free once write resolves`, async () => {
      const path = join(tmp.path, `out-${direct}.bin`);
      const sink = await openSink(path, { direct, syncEvery: 8 * 2 ** 20 });
      // /tmp here is ext4, which takes O_DIRECT
      assert.equal(sink.kind, direct ? "direct" : "buffered");
      const scratch = new Uint8Array(Math.max(...sizes));
      for (const p of pieces) {
        scratch.set(p);
        await sink.write(scratch.subarray(0, p.byteLength));
        scratch.fill(0xee); // reused at once, as the merge reuses its output regions
      }
      await sink.finish();
      assert.equal(statSync(path).size, expected.byteLength);
      assert.ok(readFileSync(path).equals(expected));
    });
  }

  it("direct: a full disk (a real 4 MiB tmpfs) fails with ENOSPC from write or finish", async function () {
    await onTinyTmpfs(this, tmp.path, "tiny", "4m", async (mnt) => {
      const sink = await openSink(join(mnt, "big.bin"));
      assert.equal(sink.kind, "direct"); // tmpfs takes O_DIRECT from Linux 6.6
      await assert.rejects((async () => {
        try {
          await sink.write(pieces[2]); // 16 MB into 4 MiB
          await sink.finish();
        } catch (e) {
          await sink.abort();
          throw e;
        }
      })(), (e: NodeJS.ErrnoException) => e.code === "ENOSPC");
    });
  });

  it("abort closes the file after the writes in flight", async () => {
    const path = join(tmp.path, "aborted.bin");
    const sink = await openSink(path);
    await sink.write(pieces[2]);
    await sink.abort();
    // the first full staging chunk went out; nothing was cut or padded
    assert.equal(statSync(path).size, sink.kind === "direct" ? 16 * 2 ** 20 : pieces[2].byteLength);
  });
});
