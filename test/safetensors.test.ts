import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SafetensorsFile, encodeHeader, saveTensors } from "../lib/io/safetensors.js";
import { ModelDir } from "../lib/io/model-dir.js";
import { Tensor } from "../lib/tensor/tensor.js";
import { data, tempDir } from "./helpers/paths.js";

describe("safetensors", () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it("reads the real stories260K file lazily and matches its declared shapes", async () => {
    const f = await SafetensorsFile.open(data("stories260K-hf/model.safetensors"));
    try {
      assert.equal(f.metadata.format, "pt");
      const emb = await f.read("model.embed_tokens.weight");
      assert.deepEqual(emb.shape, [512, 64]);
      assert.equal(emb.dtype, "F32");
      assert.equal(f.names().length, 5 * 9 + 2);
    } finally {
      await f.close();
    }
  });

  it("sharded and single-file copies hold identical tensors", async () => {
    const a = await ModelDir.open(data("stories260K-hf"));
    const b = await ModelDir.open(data("stories260K-hf/sharded"));
    try {
      assert.equal(b.files.length, 2);
      assert.deepEqual([...a.names()].sort(), [...b.names()].sort());
      for (const n of a.names()) assert.deepEqual(await a.readBytes(n), await b.readBytes(n), n);
      assert.equal(a.lmHeadName(), "model.embed_tokens.weight");
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("writes the header padded to 8 bytes with format=pt and round-trips every dtype", async () => {
    const tensors = {
      f32: new Tensor("F32", [2, 3], Float32Array.from([1, -2, 3.5, 0, 1e-8, -0])),
      f16: new Tensor("F16", [2], Uint16Array.from([0x3c00, 0xc000])),
      bf16: new Tensor("BF16", [1, 2], Uint16Array.from([0x3f80, 0x4000])),
      i8: new Tensor("I8", [3], Int8Array.from([-128, 0, 127])),
      u8: new Tensor("U8", [1], Uint8Array.from([255])),
      i32: new Tensor("I32", [2], Int32Array.from([-1, 2 ** 31 - 1])),
      i64: new Tensor("I64", [1], BigInt64Array.from([-5n])),
      bool: new Tensor("BOOL", [2], Uint8Array.from([1, 0])),
    };
    const path = join(tmp.path, "all.safetensors");
    await saveTensors(path, tensors);
    const raw = await readFile(path);
    const n = Number(raw.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    const header = JSON.parse(raw.subarray(8, 8 + n).toString());
    assert.deepEqual(header.__metadata__, { format: "pt" });
    assert.deepEqual(header.f32.data_offsets, [0, 24]);
    const f = await SafetensorsFile.open(path);
    for (const [name, t] of Object.entries(tensors)) {
      const back = await f.read(name);
      assert.equal(back.dtype, t.dtype);
      assert.deepEqual(back.shape, t.shape);
      assert.deepEqual(Buffer.from(back.bytes()), Buffer.from(t.bytes()), name);
    }
    await f.close();
    assert.equal(createHash("sha256").update(raw).digest("hex").length, 64);
  });

  const corrupt: [string, (b: Buffer) => Buffer, RegExp][] = [
    ["truncated data", (b) => b.subarray(0, b.length - 4), /truncated|run past|cover/],
    ["header length beyond the file", (b) => { const c = Buffer.from(b); c.writeBigUInt64LE(10n ** 9n, 0); return c; }, /exceeds the file size/],
    ["header not JSON", (b) => { const c = Buffer.from(b); c.write("!", 8); return c; }, /not valid JSON/],
    ["file shorter than 8 bytes", () => Buffer.from([1, 2, 3]), /not a safetensors file/],
  ];
  for (const [what, damage, message] of corrupt) {
    it(`rejects a file with ${what}, naming the file`, async () => {
      const good = join(tmp.path, "good.safetensors");
      await saveTensors(good, { w: new Tensor("F32", [4], new Float32Array(4)) });
      const bad = join(tmp.path, `bad-${what.replace(/\W/g, "_")}.safetensors`);
      await writeFile(bad, damage(await readFile(good)));
      await assert.rejects(SafetensorsFile.open(bad), (e: Error) => message.test(e.message) && e.message.includes(bad));
    });
  }

  it("rejects headers that lie about offsets: overlap, gap and shape mismatch", async () => {
    const make = async (name: string, header: object, dataBytes: number) => {
      const json = Buffer.from(JSON.stringify(header));
      const buf = Buffer.alloc(8 + json.length + dataBytes);
      buf.writeBigUInt64LE(BigInt(json.length), 0);
      json.copy(buf, 8);
      const p = join(tmp.path, name);
      await writeFile(p, buf);
      return p;
    };
    const overlap = await make("overlap.safetensors", { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }, 12);
    await assert.rejects(SafetensorsFile.open(overlap), /overlap/);
    const gap = await make("gap.safetensors", { a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, 8);
    await assert.rejects(SafetensorsFile.open(gap), /gap/);
    const shape = await make("shape.safetensors", { a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 8);
    await assert.rejects(SafetensorsFile.open(shape), /needs 12 bytes/);
    const dtype = await make("dtype.safetensors", { a: { dtype: "F8", shape: [1], data_offsets: [0, 1] } }, 1);
    await assert.rejects(SafetensorsFile.open(dtype), /unknown dtype/);
  });

  it("encodes the header exactly as the reference layout", () => {
    const h = encodeHeader([{ name: "x", dtype: "F16", shape: [3] }]);
    const n = Number(h.readBigUInt64LE(0));
    assert.equal(h.length, 8 + n);
    assert.equal(n % 8, 0);
    assert.deepEqual(JSON.parse(h.subarray(8).toString()).x, { dtype: "F16", shape: [3], data_offsets: [0, 6] });
  });
});
