import { writeFile } from "node:fs/promises";
import { interruptSignal, parseCommandArgs, requireOption } from "../args.js";
import { terminalProgress } from "../progress-bar.js";
import { plotHelp, preparePlotDir, savePlotOption } from "../plot-option.js";
import { ENGINE_HELP, ENGINE_OPTIONS, intOption, loadOptions, readTextFile } from "../../bench/cli.js";
import { compare, compareTables } from "../../bench/compare.js";

export const summary = "base / base+dynamic LoRA / merged / merged+quantized side by side";

const HELP = `usage: loralab compare --base DIR [--adapter DIR] [--merged DIR] [--quantized DIR] --prompt TEXT [--text FILE] [--json]
  --base DIR           base model (with --adapter: also "base + dynamic LoRA")
  --adapter DIR        PEFT LoRA adapter
  --merged DIR         merged model directory
  --quantized DIR      merged + quantized model directory
  --prompt TEXT        prompt for TTFT / decode speed
  --text FILE          text for perplexity (same windows for every configuration)
  --max-new-tokens N   default 32;  --repeats R default 5;  --warmup W default 1
  --ctx N  --stride S  --max-tokens T   perplexity windows (as in loralab ppl)
  --out FILE           also write the JSON result to FILE
${ENGINE_HELP}
${plotHelp("compare-latency (TTFT, tok/s, memory, per-token latency), compare-perplexity (with --text)")}`;

export async function run(argv: string[]): Promise<number> {
  const v = parseCommandArgs(argv, {
    base: { type: "string" }, adapter: { type: "string" }, merged: { type: "string" }, quantized: { type: "string" }, prompt: { type: "string" },
    text: { type: "string" }, "max-new-tokens": { type: "string" }, repeats: { type: "string" }, warmup: { type: "string" },
    ctx: { type: "string" }, stride: { type: "string" }, "max-tokens": { type: "string" }, out: { type: "string" }, plot: { type: "string" }, ...ENGINE_OPTIONS,
  }, HELP);
  if (!v) return 0;
  const prompt = requireOption(v.prompt as string | undefined, "prompt");
  const text = v.text ? await readTextFile(v.text as string) : undefined;
  await preparePlotDir(v.plot as string | undefined);
  const bar = terminalProgress(Boolean(v.json));
  try {
    const r = await compare({
      ...loadOptions(v), base: v.base as string | undefined, adapter: v.adapter as string | undefined, merged: v.merged as string | undefined,
      quantized: v.quantized as string | undefined, prompt, text,
      maxNewTokens: intOption(v["max-new-tokens"], "max-new-tokens", 32, 2), repeats: intOption(v.repeats, "repeats", 5), warmup: intOption(v.warmup, "warmup", 1, 0),
      ctx: intOption(v.ctx, "ctx", undefined, 2), stride: intOption(v.stride, "stride"), maxTokens: intOption(v["max-tokens"], "max-tokens", undefined, 2),
      signal: interruptSignal(), onProgress: bar.onProgress,
    });
    bar.stop();
    const json = JSON.stringify(r);
    if (v.out) await writeFile(v.out as string, json + "\n");
    process.stdout.write(v.json ? json + "\n" : compareTables(r).text + "\n");
    await savePlotOption(v.plot as string | undefined, async () => (await import("../../bench/display.js")).comparePlots(r));
    return 0;
  } finally {
    bar.stop();
  }
}
