import { rmSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LoralabError } from "../errors.js";
import { generateLlamaModel, generateLoraAdapter, seededText, writeCharTokenizer } from "../fixtures/index.js";

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

export async function notebookInputs(env: Record<string, string | undefined> = process.env): Promise<NotebookInputs> {
  if (env.LORALAB_MODEL) {
    const calib = env.LORALAB_CALIB ?? env.LORALAB_TEXT;
    if (!env.LORALAB_TEXT || !calib) throw new LoralabError("LORALAB_MODEL is set: set LORALAB_TEXT (and LORALAB_CALIB) too");
    return { model: env.LORALAB_MODEL, adapter: env.LORALAB_ADAPTER ?? "", text: await readFile(env.LORALAB_TEXT, "utf8"), calib, generated: false };
  }
  const dir = await mkdtemp(join(tmpdir(), "loralab-notebook-"));
  // the kernel (or script) owns the fixtures: gone when it exits
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const model = join(dir, "model"), adapter = join(dir, "adapter");
  await generateLlamaModel(model, { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 64, dtype: "F32", seed: 1, maxPositionEmbeddings: 256 });
  await writeCharTokenizer(model, 64);
  await generateLoraAdapter(adapter, model, { r: 8, alpha: 16, targets: ["q_proj", "v_proj", "o_proj", "down_proj"], seed: 2 });
  const calib = join(dir, "calib.txt");
  await writeFile(calib, seededText(3, 4000));
  // an adapter of the user's would not fit the generated model: both are generated together
  return { model, adapter, text: seededText(4, 1500), calib, generated: true };
}
