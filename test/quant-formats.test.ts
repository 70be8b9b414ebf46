/** Artifacts on disk: GPTQ / AWQ directories (tensors, configs, exact read-back), the ONNX model run by
 * plain onnxruntime, act-order loading, bad input refused before work with no output, the CLI report. */
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run as quantizeCommand } from "../lib/cli/commands/quantize.js";
import { ort } from "../lib/engine/session.js";
import { ModelDir } from "../lib/io/model-dir.js";
import { SafetensorsFile, saveTensors } from "../lib/io/safetensors.js";
import { CausalLM } from "../lib/model/causal-lm.js";
import { openWeightSource } from "../lib/model/weights.js";
import { unpackAwq, unpackGptq } from "../lib/quant/pack.js";
import { quantizeModel } from "../lib/quant/pipeline.js";
import { dequantize } from "../lib/quant/quantizer.js";
import { Tensor } from "../lib/tensor/tensor.js";
import { data, tempDir } from "./helpers/paths.js";

const MODEL = data("stories260K-hf");
const IDS = [1, 403, 407, 261, 378, 432, 383, 286, 261, 409, 299];

async function logitsOf(dir: string): Promise<Float32Array> {
  const src = await openWeightSource(dir);
  const lm = await CausalLM.load(src, { maxContext: 64 });
  try {
    return (await lm.forward([IDS], undefined, IDS.length)).logits;
  } finally {
    await lm.release();
    await src.close();
  }
}

function argmax(v: Float32Array): number {
  let b = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[b]) b = i;
  return b;
}

/** MatMulNBits with accuracy_level 4 quantizes activations to int8 per block: close to the float
 * dequantized model, with the same argmax everywhere (exactness of the layout: quant-pack tests). */
function closeLogits(a: Float32Array, b: Float32Array): void {
  assert.ok(maxAbsDiff(a, b) < 0.3, `max |Δlogit| ${maxAbsDiff(a, b)}`);
  for (let t = 0; t < IDS.length; t++) assert.equal(argmax(a.subarray(t * 512, (t + 1) * 512)), argmax(b.subarray(t * 512, (t + 1) * 512)));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe("quantized artifacts", function () {
  this.timeout(120_000);
  const tmp = tempDir("loralab-qfmt-");
  const calib = join(tmp.path, "calib.txt");
  before(() => writeFileSync(calib, readFileSync(data("tinyshakespeare", "tinyshakespeare.txt"), "utf8").slice(0, 60_000)));
  after(() => tmp.cleanup());
  const base = { model: MODEL, calib, calibSamples: 8, seqLen: 64 };

  it("GPTQ directory: tensors, both configs, v1 zeros, and an exact read-back of the codes", async () => {
    const out = join(tmp.path, "gptq"), deq = join(tmp.path, "gptq-deq");
    const report = await quantizeModel({ ...base, out, method: "gptq", bits: 4, groupSize: 32, format: "gptq", dequantizedTwin: deq });
    const qc = JSON.parse(readFileSync(join(out, "quantize_config.json"), "utf8"));
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    assert.deepEqual(cfg.quantization_config, qc);
    for (const k of ["bits", "group_size", "desc_act", "sym", "true_sequential", "damp_percent", "static_groups", "checkpoint_format", "model_file_base_name", "quant_method", "meta", "lm_head", "pack_dtype"]) assert.ok(k in qc, k);
    assert.equal(qc.checkpoint_format, "gptq");
    assert.deepEqual(qc.modules_to_not_convert, ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]);
    assert.deepEqual(qc.modules_in_block_to_quantize, [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]]);
    assert.equal(report.modules.length, 20);
    assert.equal(report.hessian, "int");
    assert.equal(report.skipped.length, 15);
    const f = await SafetensorsFile.open(join(out, "model.safetensors"));
    const d = await ModelDir.open(deq);
    try {
      const p = "model.layers.2.self_attn.q_proj";
      assert.ok(!f.entries.has(`${p}.weight`));
      assert.deepEqual(f.entry(`${p}.qweight`).shape, [8, 64]);
      assert.deepEqual(f.entry(`${p}.qzeros`).shape, [2, 8]);
      assert.equal(f.entry(`${p}.scales`).dtype, "F16");
      const qz = (await f.read(`${p}.qzeros`)).data as Int32Array;
      assert.ok(qz.every((w) => w >>> 0 === 0x77777777));
      const [qweight, qzeros, scales, gIdx] = await Promise.all(["qweight", "qzeros", "scales", "g_idx"].map((t) => f.read(`${p}.${t}`)));
      const q = unpackGptq({ qweight: qweight.data as Int32Array, qzeros: qzeros.data as Int32Array, scales: scales.data as Uint16Array, gIdx: gIdx.data as Int32Array }, 64, 64, 4, true);
      assert.deepEqual(dequantize(q), (await d.read(`${p}.weight`)).toF32());
      assert.equal(f.entry("model.layers.2.mlp.down_proj.weight").dtype, "F32");
    } finally {
      await f.close();
      await d.close();
    }
    // the engine runs it through MatMulNBits and matches the dequantized model
    closeLogits(await logitsOf(out), await logitsOf(deq));
  });

  it("AWQ directory: GEMM layout, config, exact read-back, scaled norms", async () => {
    const out = join(tmp.path, "awq"), deq = join(tmp.path, "awq-deq");
    await quantizeModel({ ...base, out, method: "awq", bits: 4, groupSize: 32, format: "awq", dequantizedTwin: deq });
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    assert.deepEqual(cfg.quantization_config, { quant_method: "awq", zero_point: true, group_size: 32, bits: 4, version: "gemm", modules_to_not_convert: ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"] });
    const f = await SafetensorsFile.open(join(out, "model.safetensors"));
    const d = await ModelDir.open(deq);
    const src = await ModelDir.open(MODEL);
    try {
      const p = "model.layers.1.self_attn.k_proj";
      assert.deepEqual(f.entry(`${p}.qweight`).shape, [64, 4]);
      const [qweight, qzeros, scales] = await Promise.all(["qweight", "qzeros", "scales"].map((t) => f.read(`${p}.${t}`)));
      const q = unpackAwq({ qweight: qweight.data as Int32Array, qzeros: qzeros.data as Int32Array, scales: scales.data as Uint16Array }, 32, 64);
      assert.deepEqual(dequantize(q), (await d.read(`${p}.weight`)).toF32());
      // input_layernorm carries 1/s of the q/k/v scaling
      const g0 = (await src.read("model.layers.1.input_layernorm.weight")).toF32();
      const g1 = (await f.read("model.layers.1.input_layernorm.weight")).toF32();
      assert.notDeepEqual(g1, g0);
    } finally {
      await f.close();
      await d.close();
      await src.close();
    }
    closeLogits(await logitsOf(out), await logitsOf(deq));
  });

  it("ONNX: model.onnx runs in plain onnxruntime with MatMulNBits (accuracy_level 4) and matches the engine", async () => {
    const out = join(tmp.path, "onnx"), deq = join(tmp.path, "onnx-deq");
    await quantizeModel({ model: MODEL, out, method: "rtn", bits: 4, groupSize: 32, format: "onnx", dequantizedTwin: deq });
    const onnxText = readFileSync(join(out, "model.onnx")).toString("latin1");
    assert.equal(onnxText.split("MatMulNBits").length - 1 >= 30, true);
    const s = await ort.InferenceSession.create(join(out, "model.onnx"));
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(IDS.map(BigInt)), [1, IDS.length]),
      num_logits: new ort.Tensor("int64", BigInt64Array.from([BigInt(IDS.length)]), [1]),
    };
    for (let i = 0; i < 5; i++) for (const kv of ["key", "value"]) feeds[`past_key_values.${i}.${kv}`] = new ort.Tensor("float32", new Float32Array(0), [1, 4, 0, 8]);
    const plain = (await s.run(feeds)).logits.data as Float32Array;
    await s.release();
    assert.ok(maxAbsDiff(plain, await logitsOf(out)) < 1e-4);
    closeLogits(plain, await logitsOf(deq));
  });

  it("--lm-head (RTN, ONNX): the tied lm_head becomes MatMulNBits too", async () => {
    const out = join(tmp.path, "head"), deq = join(tmp.path, "head-deq");
    const r = await quantizeModel({ model: MODEL, out, method: "rtn", bits: 8, groupSize: 64, format: "onnx", lmHead: true, dequantizedTwin: deq });
    assert.equal(r.modules.at(-1)!.module, "lm_head");
    const src = await openWeightSource(out);
    assert.equal((await src.linear("lm_head")).kind, "nbits");
    await src.close();
    closeLogits(await logitsOf(out), await logitsOf(deq));
    await assert.rejects(quantizeModel({ model: MODEL, out: join(tmp.path, "head-gptq"), method: "rtn", bits: 4, groupSize: 64, format: "gptq", lmHead: true }), /--lm-head is supported with/);
  });

  it("act-order (desc_act) GPTQ checkpoints: K reordered into groups, input gathered, MatMulNBits; ONNX too", async () => {
    const out = join(tmp.path, "actorder"), deq = join(tmp.path, "actorder-deq"), ox = join(tmp.path, "actorder-onnx"), oxd = join(tmp.path, "actorder-onnx-deq");
    const o = { ...base, method: "gptq", bits: 4, groupSize: 32, descAct: true } as const;
    await quantizeModel({ ...o, out, format: "gptq", dequantizedTwin: deq });
    const f = await SafetensorsFile.open(join(out, "model.safetensors"));
    const g = Array.from((await f.read("model.layers.0.self_attn.q_proj.g_idx")).data as Int32Array);
    await f.close();
    assert.notDeepEqual(g, g.map((_, k) => Math.floor(k / 32)));
    const src = await openWeightSource(out);
    const lin = await src.linear("model.layers.0.self_attn.q_proj");
    await src.close();
    assert.equal(lin.kind, "nbits");
    assert.ok(lin.kind === "nbits" && lin.inputPerm && lin.inputPerm.shape[0] === 64);
    closeLogits(await logitsOf(out), await logitsOf(deq));
    await quantizeModel({ ...o, out: ox, format: "onnx", dequantizedTwin: oxd });
    closeLogits(await logitsOf(ox), await logitsOf(oxd));
  });

  describe("bad input: clear errors before any work, no output directory", () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ["5 bits", { bits: 5, format: "gptq" }, /--bits must be one of 2, 3, 4, 8/],
      ["3-bit ONNX", { bits: 3, format: "onnx" }, /MatMulNBits supports 2, 4 and 8 bits/],
      ["ONNX block 48", { groupSize: 48, format: "onnx" }, /power of two/],
      ["GGUF group 64", { groupSize: 64, format: "gguf" }, /group-size 32/],
      ["AWQ format 8-bit", { bits: 8, format: "awq" }, /4-bit weights only/],
      ["AWQ with --sym", { method: "awq", sym: true, format: "gptq" }, /drop --sym/],
      ["GPTQ without calibration", { method: "gptq", format: "gptq" }, /--calib FILE/],
      ["calibration too short", { method: "gptq", format: "gptq", calibSamples: 512, seqLen: 256 }, /too short: \d+ tokens, but 512 samples/],
    ];
    for (const [label, o, re] of cases) {
      it(label, async () => {
        const out = join(tmp.path, `bad-${label.replace(/\W+/g, "-")}`);
        const calibOpt = o.method === "gptq" && label !== "GPTQ without calibration" ? { calib } : {};
        await assert.rejects(quantizeModel({ model: MODEL, out, method: "rtn", bits: 4, groupSize: 32, format: "gptq", ...calibOpt, ...o } as never), re);
        assert.ok(!existsSync(out));
        assert.ok(!readdirSync(tmp.path).some((n) => n.includes(".tmp-")));
      });
    }

    it("an already-quantized model", async () => {
      const out = join(tmp.path, "q-for-requant");
      await quantizeModel({ model: MODEL, out, method: "rtn", bits: 4, groupSize: 32, format: "gptq" });
      await assert.rejects(quantizeModel({ model: out, out: join(tmp.path, "requant"), method: "rtn", bits: 4, groupSize: 32, format: "gptq" }), /already quantized .*quant_method 'gptq'/);
    });

    it("a non-finite weight, named", async () => {
      const dir = join(tmp.path, "nan-model");
      mkdirSync(dir);
      const m = await ModelDir.open(MODEL);
      const tensors: Record<string, Tensor> = {};
      for (const n of m.names()) tensors[n] = await m.read(n);
      await m.close();
      const w = tensors["model.layers.3.mlp.up_proj.weight"].toF32(true);
      w[77] = NaN;
      tensors["model.layers.3.mlp.up_proj.weight"] = Tensor.fromF32(w, [172, 64]);
      await saveTensors(join(dir, "model.safetensors"), tensors);
      copyFileSync(join(MODEL, "config.json"), join(dir, "config.json"));
      const out = join(tmp.path, "nan-out");
      await assert.rejects(quantizeModel({ model: dir, out, method: "rtn", bits: 4, groupSize: 32, format: "onnx" }), /model\.layers\.3\.mlp\.up_proj\.weight' holds a non-finite weight/);
      assert.ok(!existsSync(out));
    });

    it("a non-empty output directory without --overwrite", async () => {
      const out = join(tmp.path, "occupied");
      mkdirSync(out);
      writeFileSync(join(out, "keep.txt"), "x");
      await assert.rejects(quantizeModel({ model: MODEL, out, method: "rtn", bits: 4, groupSize: 32, format: "gptq" }), /already exists and is not empty/);
      assert.deepEqual(readdirSync(out), ["keep.txt"]);
    });
  });

  it("CLI: --json report with per-module numbers, skipped modules and sizes; a LoralabError on bad input", async () => {
    const out = join(tmp.path, "cli");
    const chunks: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    (process.stdout as { write: unknown }).write = (s: string) => (chunks.push(String(s)), true);
    let code: number;
    try {
      code = await quantizeCommand(["--model", MODEL, "--method", "rtn", "--bits", "8", "--group-size", "64", "--format", "onnx", "--out", out, "--json", "--quiet"]);
    } finally {
      (process.stdout as { write: unknown }).write = write;
    }
    assert.equal(code, 0);
    const r = JSON.parse(chunks.join(""));
    assert.equal(r.modules.length, 30);
    assert.ok(r.modules.every((m: { bits: number; relError: number; seconds: number }) => m.bits === 8 && m.relError > 0 && m.relError < 0.01 && m.seconds >= 0));
    assert.equal(r.skipped[0].module, "model.layers.0.mlp.down_proj");
    assert.ok(r.bytesAfter < r.bytesBefore && r.seconds > 0);
    assert.equal(r.hessian, null); // GPTQ only
    // a LoralabError (main prints its message and exits 1)
    await assert.rejects(quantizeCommand(["--model", MODEL, "--method", "gptq", "--bits", "4", "--group-size", "32", "--format", "gptq", "--hessian", "int4", "--out", join(tmp.path, "cli3")]), (e: Error) => e.name === "LoralabError" && /--hessian must be int or float32, got 'int4'/.test(e.message));
    await assert.rejects(quantizeCommand(["--model", MODEL, "--method", "rtn", "--bits", "3", "--group-size", "32", "--format", "onnx", "--out", join(tmp.path, "cli2")]), (e: Error) => e.name === "LoralabError" && /MatMulNBits supports 2, 4 and 8 bits/.test(e.message));
  });

  it("an abort during GPTQ (Ctrl-C) stops between layers and leaves no output", async () => {
    const out = join(tmp.path, "aborted");
    const ctl = new AbortController();
    const events: string[] = [];
    await assert.rejects(
      quantizeModel({ ...base, out, method: "gptq", bits: 4, groupSize: 32, format: "gptq", signal: ctl.signal, onProgress: (e) => { events.push(e.label ?? ""); ctl.abort(); } }),
      (e: Error) => e.name === "AbortError",
    );
    assert.equal(events.length, 1);
    assert.match(events[0], /^model\.layers\.0\.self_attn\.k_proj \d+\.\d{3} s$/); // per module, with its time
    assert.ok(!existsSync(out));
  });

  it("AWQ reports each scale candidate and stops at the next one on abort, leaving no output", async () => {
    const out = join(tmp.path, "aborted-awq");
    const ctl = new AbortController();
    const events: string[] = [];
    await assert.rejects(
      quantizeModel({ ...base, out, method: "awq", bits: 4, groupSize: 32, format: "awq", signal: ctl.signal, onProgress: (e) => { events.push(e.label ?? ""); if (events.length === 2) ctl.abort(); } }),
      (e: Error) => e.name === "AbortError",
    );
    assert.deepEqual(events, [1, 2].map((i) => `model.layers.0: scales of self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, ${i}/20`));
    assert.ok(!existsSync(out));
  });

  it("the report displays in Jupyter as HTML and text", async () => {
    const r = await quantizeModel({ model: MODEL, out: join(tmp.path, "disp"), method: "rtn", bits: 4, groupSize: 64, format: "awq" });
    const d = await (r as unknown as Record<symbol, () => Promise<Record<string, string>>>)[Symbol.for("Jupyter.display")]();
    assert.match(d["text/html"], /<table[^>]*>.*model\.layers\.0\.self_attn\.q_proj/s);
    assert.match(d["text/plain"], /rtn 4-bit g64 asym → awq/);
  });
});
