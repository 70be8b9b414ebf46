import { parseCommandArgs, requireOption } from "../args.js";
import { ENGINE_HELP, ENGINE_OPTIONS, loadOptions } from "../../bench/cli.js";
import { argmax } from "../../model/generate.js";
import { loadModel } from "../../model/load.js";

export const summary = "token ids and the last position's logits for a prompt";

const HELP = `usage: loralab logits --model DIR [--adapter DIR] --prompt TEXT [--json]
  --model DIR          Hugging Face model directory
  --adapter DIR        PEFT LoRA adapter applied dynamically
  --prompt TEXT        the prompt (BOS added when the tokenizer adds one)
${ENGINE_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const v = parseCommandArgs(argv, { model: { type: "string" }, adapter: { type: "string" }, prompt: { type: "string" }, ...ENGINE_OPTIONS }, HELP);
  if (!v) return 0;
  const model = requireOption(v.model as string | undefined, "model");
  const prompt = requireOption(v.prompt as string | undefined, "prompt");
  const { lm, tokenizer } = await loadModel({ model, adapter: v.adapter as string | undefined }, loadOptions(v));
  try {
    const ids = tokenizer.encode(prompt);
    const { logits } = await lm.forward([ids]);
    if (v.json) {
      process.stdout.write(JSON.stringify({ ids, logits: Array.from(logits) }) + "\n");
      return 0;
    }
    process.stdout.write(`ids: [${ids.join(", ")}]\n`);
    const top = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, 10);
    process.stdout.write(`argmax: ${argmax(logits)}\ntop 10 next tokens:\n`);
    for (const id of top) process.stdout.write(`  ${String(id).padStart(6)}  ${logits[id].toFixed(4).padStart(10)}  ${JSON.stringify(tokenizer.decode([id], false))}\n`);
    return 0;
  } finally {
    await lm.release();
  }
}
