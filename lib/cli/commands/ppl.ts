import { interruptSignal, parseCommandArgs, requireOption } from "../args.js";
import { terminalProgress } from "../progress-bar.js";
import { plotHelp, preparePlotDir, savePlotOption } from "../plot-option.js";
import { ENGINE_HELP, ENGINE_OPTIONS, intOption, loadOptions, readTextFile } from "../../bench/cli.js";
import { perplexity } from "../../bench/perplexity.js";
import { loadModel } from "../../model/load.js";

export const summary = "perplexity of a text file (strided windows, exact token count)";

const HELP = `usage: loralab ppl --model DIR [--adapter DIR] --text FILE [--ctx N] [--stride S] [--max-tokens T] [--json]
  --model DIR       Hugging Face model directory
  --adapter DIR     PEFT LoRA adapter applied dynamically
  --text FILE       UTF-8 text, tokenized as one string (no BOS inside)
  --ctx N           tokens per window (default: model context, less one for BOS)
  --stride S        window advance (default N: non-overlapping windows)
  --max-tokens T    use only the first T tokens of the text
  --no-bos          do not put BOS before every window (default: BOS when the tokenizer has one)
  --drop-partial    drop a trailing window shorter than N
${ENGINE_HELP}
${plotHelp("perplexity-windows (perplexity of each window)")}`;

export async function run(argv: string[]): Promise<number> {
  const v = parseCommandArgs(argv, {
    model: { type: "string" }, adapter: { type: "string" }, text: { type: "string" }, ctx: { type: "string" }, stride: { type: "string" },
    "max-tokens": { type: "string" }, "no-bos": { type: "boolean" }, "drop-partial": { type: "boolean" }, plot: { type: "string" }, ...ENGINE_OPTIONS,
  }, HELP);
  if (!v) return 0;
  const model = requireOption(v.model as string | undefined, "model");
  const textPath = requireOption(v.text as string | undefined, "text");
  const text = await readTextFile(textPath);
  await preparePlotDir(v.plot as string | undefined);
  const ctx = intOption(v.ctx, "ctx", undefined, 2), stride = intOption(v.stride, "stride"), maxTokens = intOption(v["max-tokens"], "max-tokens", undefined, 2);
  const { lm, tokenizer, source } = await loadModel({ model, adapter: v.adapter as string | undefined }, loadOptions(v));
  const bar = terminalProgress(Boolean(v.json));
  try {
    const stream = tokenizer.encode(text, { bos: false });
    const bos = v["no-bos"] ? null : tokenizer.bosId;
    const r = await perplexity(lm, stream, { ctx, stride, maxTokens, bos, dropPartial: Boolean(v["drop-partial"]), signal: interruptSignal(), onProgress: bar.onProgress });
    bar.stop();
    const out = { ppl: r.ppl, nll: r.nll, tokens: r.tokens, ppl_stderr: r.pplStderr, windows: r.windows, ctx: r.ctx, stride: r.stride, bos: r.bos, stream_tokens: r.streamTokens, method: r.method, text: textPath, model: source };
    if (v.json) process.stdout.write(JSON.stringify(out) + "\n");
    else process.stdout.write(`perplexity ${r.ppl.toFixed(4)} ± ${r.pplStderr.toFixed(4)}  (mean NLL ${r.nll.toFixed(6)}, ${r.tokens} tokens scored in ${r.windows} windows; ${r.method})\n`);
    await savePlotOption(v.plot as string | undefined, async () => (await import("../../bench/display.js")).perplexityPlots(r));
    return 0;
  } finally {
    bar.stop();
    await lm.release();
  }
}
