/** GGUF export: container round trip (codes and float tensors exact), llama.cpp metadata, and the same
 * greedy continuation in node-llama-cpp (llama.cpp, CPU) as in the loralab engine on the same weights. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ModelDir } from "../lib/io/model-dir.js";
import { CausalLM } from "../lib/model/causal-lm.js";
import { generate } from "../lib/model/generate.js";
import { openWeightSource } from "../lib/model/weights.js";
import { readGguf } from "../lib/quant/gguf.js";
import { ggufName, qkRowOrder } from "../lib/quant/gguf-model.js";
import { packGgml, unpackGgml } from "../lib/quant/pack.js";
import { quantizeModel } from "../lib/quant/pipeline.js";
import { quantizeRtn } from "../lib/quant/quantizer.js";
import { data, tempDir } from "./helpers/paths.js";

const MODEL = data("stories260K-hf");
const GOLDEN_GREEDY = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337];

async function llamaCppGreedy(path: string, n: number): Promise<number[]> {
  const { getLlama } = await import("node-llama-cpp");
  // one thread: llama.cpp's spinning workers crawl on a shared 2-core machine
  const llama = await getLlama({ gpu: false, build: "never", maxThreads: 1, logLevel: "warn" as never });
  const model = await llama.loadModel({ modelPath: path });
  try {
    const ctx = await model.createContext({ contextSize: 128, batchSize: 128, threads: 1 });
    const out: number[] = [];
    for await (const t of ctx.getSequence().evaluate([1 as never], { temperature: 0 })) {
      out.push(t as number);
      if (out.length >= n) break;
    }
    await ctx.dispose();
    return out;
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}

async function engineGreedy(dir: string, n: number): Promise<number[]> {
  const src = await openWeightSource(dir);
  const lm = await CausalLM.load(src, { maxContext: 128 });
  try {
    return (await generate(lm, [1], { maxNewTokens: n, stopIds: [] })).ids;
  } finally {
    await lm.release();
    await src.close();
  }
}

describe("GGUF export (SPEC §11)", function () {
  this.timeout(120_000);
  const tmp = tempDir("loralab-gguf-");
  after(() => tmp.cleanup());

  for (const bits of [4, 8] as const) {
    it(`Q${bits}_0: metadata, tensor names/shapes, and exact codes after the q/k row permutation`, async () => {
      const out = join(tmp.path, `rt${bits}`);
      await quantizeModel({ model: MODEL, out, method: "rtn", bits, groupSize: 32, sym: true, format: "gguf" });
      const g = await readGguf(join(out, "model.gguf"));
      const m = await ModelDir.open(MODEL);
      try {
        assert.equal(g.version, 3);
        assert.equal(g.kv.get("general.architecture"), "llama");
        assert.equal(g.kv.get("general.file_type"), bits === 4 ? 2 : 7);
        assert.equal(g.kv.get("llama.block_count"), 5);
        assert.equal(g.kv.get("llama.attention.head_count_kv"), 4);
        assert.equal(g.kv.get("llama.rope.dimension_count"), 8);
        assert.equal((g.kv.get("tokenizer.ggml.tokens") as string[])[403], "▁Once");
        assert.equal((g.kv.get("tokenizer.ggml.token_type") as number[])[3], 6); // <0x00> is a byte token
        assert.equal(g.tensors.length, m.names().length);
        for (const name of m.names()) {
          const info = g.tensors.find((t) => t.name === ggufName(name))!;
          const e = m.entry(name);
          assert.deepEqual(info.ne, [...e.shape].reverse());
          const W = (await m.read(name)).toF32();
          const bytes = await g.read(info.name);
          const qk = /q_proj/.test(name) ? 8 : /k_proj/.test(name) ? 4 : 0;
          if (info.type === "F32") {
            assert.ok(!qk && e.shape.length === 1 || /down_proj|embed/.test(name), `${name} should be quantized`);
            assert.deepEqual(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4), W);
            continue;
          }
          assert.equal(info.type, bits === 4 ? "Q4_0" : "Q8_0");
          const [N, K] = e.shape;
          let Wg = W;
          if (qk) {
            const order = qkRowOrder(qk, N);
            Wg = new Float32Array(W.length);
            for (let r = 0; r < N; r++) Wg.set(W.subarray(order[r] * K, (order[r] + 1) * K), r * K);
          }
          const q = quantizeRtn(Wg, N, K, { bits, groupSize: 32, sym: true, rule: "gptq" });
          assert.deepEqual(bytes, packGgml(q));
          assert.deepEqual(unpackGgml(bytes, N, K, bits).codes, q.codes);
        }
      } finally {
        await g.close();
        await m.close();
      }
    });
  }

  it("q/k permutation matches convert_hf_to_gguf (reshape(n_head, 2, hd/2).swapaxes(1, 2))", () => {
    // 2 heads, head_dim 4: HF rows [h0: a0 a1 | b0 b1, h1: ...] → llama.cpp [a0 b0 a1 b1, ...]
    assert.deepEqual(Array.from(qkRowOrder(2, 8)), [0, 2, 1, 3, 4, 6, 5, 7]);
  });

  for (const bits of [8, 4] as const) {
    it(`node-llama-cpp and the loralab engine give the same greedy continuation (Q${bits}_0)`, async () => {
      const gg = join(tmp.path, `nl${bits}`), dq = join(tmp.path, `dq${bits}`);
      const o = { model: MODEL, method: "rtn", bits, groupSize: 32, sym: true } as const;
      await quantizeModel({ ...o, out: gg, format: "gguf" });
      await quantizeModel({ ...o, out: dq, format: "dequantized" });
      const n = 40;
      const ours = await engineGreedy(dq, n);
      const theirs = await llamaCppGreedy(join(gg, "model.gguf"), n);
      assert.deepEqual(theirs, ours);
      if (bits === 8) assert.deepEqual([1, ...ours.slice(0, GOLDEN_GREEDY.length - 1)], GOLDEN_GREEDY); // 8-bit keeps the float model's story
    });
  }
});
