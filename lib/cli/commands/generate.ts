import { numberOption, parseCommandArgs, requireOption, interruptSignal } from "../args.js";
import { ENGINE_HELP, ENGINE_OPTIONS, intOption, loadOptions } from "../../bench/cli.js";
import { LoralabError } from "../../errors.js";
import { generate } from "../../model/generate.js";
import { loadModel } from "../../model/load.js";
import { TextStream } from "../../model/tokenizer.js";

export const summary = "generate text (greedy or sampled), streamed to stdout";

const HELP = `usage: loralab generate --model DIR [--adapter DIR] --prompt TEXT [--max-new-tokens N] [sampling options]
  --model DIR            Hugging Face model directory
  --adapter DIR          PEFT LoRA adapter applied dynamically
  --prompt TEXT          the prompt
  --max-new-tokens N     default 64; stops earlier at EOS
  --temperature T        0 (default) = greedy
  --top-k K              sample among the K most likely tokens
  --top-p P              sample among the smallest set reaching probability P
  --seed S               sampling seed (default 0)
${ENGINE_HELP}  (with --json: {"ids", "text", "ttft_ms", "tok_per_s", "stop"} at the end instead of streaming)`;

export async function run(argv: string[]): Promise<number> {
  const v = parseCommandArgs(argv, {
    model: { type: "string" }, adapter: { type: "string" }, prompt: { type: "string" }, "max-new-tokens": { type: "string" },
    temperature: { type: "string" }, "top-k": { type: "string" }, "top-p": { type: "string" }, seed: { type: "string" }, ...ENGINE_OPTIONS,
  }, HELP);
  if (!v) return 0;
  const model = requireOption(v.model as string | undefined, "model");
  const prompt = requireOption(v.prompt as string | undefined, "prompt");
  const maxNewTokens = intOption(v["max-new-tokens"], "max-new-tokens", 64)!;
  const temperature = numberOption(v.temperature as string | undefined, "temperature", 0);
  const topK = intOption(v["top-k"], "top-k", 0, 0);
  const topP = numberOption(v["top-p"] as string | undefined, "top-p", 1);
  if (temperature < 0) throw new LoralabError("--temperature must be ≥ 0");
  if (!(topP > 0 && topP <= 1)) throw new LoralabError("--top-p must be in (0, 1]");
  const seed = intOption(v.seed, "seed", 0, 0);
  const { lm, tokenizer } = await loadModel({ model, adapter: v.adapter as string | undefined }, loadOptions(v));
  try {
    const ids = tokenizer.encode(prompt);
    if (ids.length >= lm.maxContext) throw new LoralabError(`the prompt is ${ids.length} tokens, longer than the model's context of ${lm.maxContext} tokens`);
    const stream = v.json ? undefined : new TextStream(tokenizer, ids[ids.length - 1], (s) => process.stdout.write(s));
    if (!v.json) process.stdout.write(prompt);
    const res = await generate(lm, ids, { maxNewTokens, temperature, topK, topP, seed, signal: interruptSignal(), onToken: (id) => stream?.push(id) });
    const text = tokenizer.decodeAfter(ids[ids.length - 1], res.ids);
    const decodeMs = res.tokenMs.reduce((a, b) => a + b, 0);
    const tokPerS = res.tokenMs.length ? (res.tokenMs.length * 1000) / decodeMs : null;
    if (v.json) {
      process.stdout.write(JSON.stringify({ ids: res.ids, text, prompt_tokens: ids.length, ttft_ms: res.ttftMs, tok_per_s: tokPerS, stop: res.stop }) + "\n");
    } else {
      stream!.end();
      process.stdout.write("\n");
      process.stderr.write(`[${res.ids.length} tokens, TTFT ${res.ttftMs.toFixed(1)} ms, ${tokPerS?.toFixed(1) ?? "–"} tok/s, stop: ${res.stop}]\n`);
    }
    return 0;
  } finally {
    await lm.release();
  }
}
