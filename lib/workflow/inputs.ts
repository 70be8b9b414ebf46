import { existsSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateLlamaModel, generateLoraAdapter, rng } from "../fixtures/index.js";

/** The notebooks' inputs: LORALAB_MODEL / LORALAB_ADAPTER / LORALAB_TEXT / LORALAB_CALIB, or generated
 * fixtures (a tiny seeded Llama with a character tokenizer, a LoRA adapter, seeded text) when unset. */
export interface NotebookInputs {
  model: string;
  adapter: string;
  /** evaluation text (contents) */
  text: string;
  /** calibration text file path */
  calib: string;
  generated: boolean;
}

const CHARS = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'\n";

/** A character-level tokenizer.json (BPE without merges) with <unk>=0, <s>=1 prepended as BOS. */
function charTokenizer(vocabSize: number): object {
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (const c of CHARS) if (Object.keys(vocab).length < vocabSize) vocab[c] = Object.keys(vocab).length;
  return {
    version: "1.0",
    added_tokens: ["<unk>", "<s>", "</s>"].map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: null,
    post_processor: { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }], pair: [{ Sequence: { id: "A", type_id: 0 } }], special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } } },
    decoder: null,
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}

function seededText(seed: number, words: number): string {
  const r = rng(seed);
  const lexicon = ["the", "king", "queen", "lord", "my", "thou", "art", "and", "love", "night", "speak", "good", "sir", "what", "is", "not", "to", "be", "of", "heart"];
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(lexicon[Math.floor(r() * lexicon.length)] + (r() < 0.1 ? ".\n" : ""));
  return out.join(" ");
}

export async function notebookInputs(env: Record<string, string | undefined> = process.env): Promise<NotebookInputs> {
  if (env.LORALAB_MODEL) {
    const calib = env.LORALAB_CALIB ?? env.LORALAB_TEXT;
    if (!env.LORALAB_TEXT || !calib) throw new Error("LORALAB_MODEL is set: set LORALAB_TEXT (and LORALAB_CALIB) too");
    return { model: env.LORALAB_MODEL, adapter: env.LORALAB_ADAPTER ?? "", text: await readFile(env.LORALAB_TEXT, "utf8"), calib, generated: false };
  }
  const dir = await mkdtemp(join(tmpdir(), "loralab-notebook-"));
  const model = join(dir, "model"), adapter = join(dir, "adapter");
  await generateLlamaModel(model, { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 64, dtype: "F32", seed: 1, maxPositionEmbeddings: 256 });
  await writeFile(join(model, "tokenizer.json"), JSON.stringify(charTokenizer(64)));
  await generateLoraAdapter(adapter, model, { r: 8, alpha: 16, targets: ["q_proj", "v_proj", "o_proj", "down_proj"], seed: 2 });
  const calib = join(dir, "calib.txt");
  await writeFile(calib, seededText(3, 4000));
  return { model, adapter: env.LORALAB_ADAPTER ?? adapter, text: seededText(4, 1500), calib: existsSync(calib) ? calib : "", generated: true };
}
