import { LoralabError } from "../../errors.js";
import { generateGpt2Model, generateLlamaModel, generateLoraAdapter, type FixtureDType } from "../../fixtures/index.js";
import { AtomicOutputDir } from "../../io/output-dir.js";
import { numberOption, parseByteSize, parseCommandArgs, requireOption } from "../args.js";

export const summary = "generate a seeded synthetic model or LoRA adapter (Hugging Face / PEFT formats)";

const HELP = `usage: loralab fixture model --out DIR [options]
       loralab fixture adapter --base DIR --out DIR [options]

model:
  --preset P           tiny (default: hidden 64, 2 layers, vocab 256) | llama2-7b-layers (7B shapes; set --layers)
  --arch A             llama (default) | mistral | qwen2 | gpt2 (Conv1D)
  --hidden N --intermediate N --layers N --heads N --kv-heads N --vocab N   override the preset
  --dtype D            f32 | f16 | bf16 (default f32)
  --tie                tie_word_embeddings (no lm_head.weight)
  --attention-bias     q/k/v biases
  --max-shard-size S   shard the weights (e.g. 500MB); default one file
adapter:
  --base DIR           base model the adapter fits
  --r N --alpha A      rank (default 8) and lora_alpha (default 16)
  --targets LIST       comma-separated module names (default q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj; gpt2: c_attn)
  --rslora --dora --lora-bias --embedding
  --modules-to-save LIST   e.g. lm_head
  --trainable-tokens LIST  token indices, e.g. 3,5,7
  --dtype D            f32 (default) | f16 | bf16
common:
  --seed S             default 0
  --overwrite          replace a non-empty --out`;

const PRESETS = {
  tiny: { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 256 },
  "llama2-7b-layers": { hiddenSize: 4096, intermediateSize: 11008, numLayers: 2, numHeads: 32, numKvHeads: 32, vocabSize: 32000 },
};

function dtypeOption(s: string | undefined): FixtureDType {
  const d = (s ?? "f32").toUpperCase();
  if (d !== "F32" && d !== "F16" && d !== "BF16") throw new LoralabError(`--dtype must be f32, f16 or bf16, got '${s}'`);
  return d;
}

const list = (s: string | undefined) => (s ? s.split(",").map((x) => x.trim()).filter(Boolean) : undefined);

export async function run(argv: string[]): Promise<number> {
  const [what, ...rest] = argv;
  if (what !== "model" && what !== "adapter") {
    if (what === "--help" || what === "-h") { process.stdout.write(HELP + "\n"); return 0; }
    throw new LoralabError(`fixture: say 'model' or 'adapter'\n${HELP}`);
  }
  const s = { type: "string" } as const, b = { type: "boolean" } as const;
  const o = parseCommandArgs(rest, {
    out: s, preset: s, arch: s, hidden: s, intermediate: s, layers: s, heads: s, "kv-heads": s, vocab: s, dtype: s, tie: b,
    "attention-bias": b, "max-shard-size": s, base: s, r: s, alpha: s, targets: s, rslora: b, dora: b, "lora-bias": b,
    embedding: b, "modules-to-save": s, "trainable-tokens": s, seed: s, overwrite: b,
  }, HELP);
  if (!o) return 0;
  const out = requireOption(o.out as string | undefined, "out");
  const seed = numberOption(o.seed as string | undefined, "seed", 0);
  const str = (k: string) => o[k] as string | undefined;
  await AtomicOutputDir.write(out, { overwrite: !!o.overwrite }, async (dir) => {
    if (what === "model") {
      const presetName = str("preset") ?? "tiny";
      const p = PRESETS[presetName as keyof typeof PRESETS];
      if (!p) throw new LoralabError(`--preset must be one of ${Object.keys(PRESETS).join(", ")}, got '${presetName}'`);
      const shape = {
        hiddenSize: numberOption(str("hidden"), "hidden", p.hiddenSize), intermediateSize: numberOption(str("intermediate"), "intermediate", p.intermediateSize),
        numLayers: numberOption(str("layers"), "layers", p.numLayers), numHeads: numberOption(str("heads"), "heads", p.numHeads),
        numKvHeads: numberOption(str("kv-heads"), "kv-heads", p.numKvHeads), vocabSize: numberOption(str("vocab"), "vocab", p.vocabSize),
      };
      const dtype = dtypeOption(str("dtype"));
      const maxShardBytes = str("max-shard-size") ? parseByteSize(str("max-shard-size")!) : undefined;
      const arch = str("arch") ?? "llama";
      if (arch === "gpt2") await generateGpt2Model(dir.path, { ...shape, dtype, seed, maxShardBytes });
      else if (arch === "llama" || arch === "mistral" || arch === "qwen2")
        await generateLlamaModel(dir.path, { ...shape, dtype, seed, maxShardBytes, modelType: arch, tieWordEmbeddings: !!o.tie, attentionBias: o["attention-bias"] ? true : undefined });
      else throw new LoralabError(`--arch must be llama, mistral, qwen2 or gpt2, got '${arch}'`);
    } else {
      const base = requireOption(str("base"), "base");
      const targets = list(str("targets"));
      await generateLoraAdapter(dir.path, base, {
        r: numberOption(str("r"), "r", 8), alpha: numberOption(str("alpha"), "alpha", 16), seed,
        targets: targets ?? ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "c_attn"],
        useRslora: !!o.rslora, useDora: !!o.dora, loraBias: !!o["lora-bias"], embedding: !!o.embedding,
        modulesToSave: list(str("modules-to-save")), trainableTokenIndices: list(str("trainable-tokens"))?.map(Number),
        dtype: dtypeOption(str("dtype")),
      });
    }
  });
  process.stderr.write(`wrote ${what} to ${out}\n`);
  return 0;
}
