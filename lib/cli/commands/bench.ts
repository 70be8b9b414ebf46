import { interruptSignal, parseCommandArgs, requireOption } from "../args.js";
import { terminalProgress } from "../progress-bar.js";
import { plotHelp, preparePlotDir, savePlotOption } from "../plot-option.js";
import { benchmark, formatBench } from "../../bench/benchmark.js";
import { ENGINE_HELP, ENGINE_OPTIONS, intOption, loadOptions } from "../../bench/cli.js";

export const summary = "load time, TTFT, decode tok/s, latency percentiles and memory of one model";

const HELP = `usage: loralab bench --model DIR [--adapter DIR] --prompt TEXT [--max-new-tokens N] [--repeats R] [--json]
  --model DIR          Hugging Face model directory
  --adapter DIR        PEFT LoRA adapter applied dynamically
  --prompt TEXT        the prompt
  --max-new-tokens N   tokens generated per run (default 32; never stops early)
  --repeats R          measured runs (default 5), after --warmup W runs (default 1)
${ENGINE_HELP}
${plotHelp("bench-latency (TTFT, decode tok/s, memory, per-token latency over the generation)")}`;

export async function run(argv: string[]): Promise<number> {
  const v = parseCommandArgs(argv, {
    model: { type: "string" }, adapter: { type: "string" }, prompt: { type: "string" }, "max-new-tokens": { type: "string" },
    repeats: { type: "string" }, warmup: { type: "string" }, plot: { type: "string" }, ...ENGINE_OPTIONS,
  }, HELP);
  if (!v) return 0;
  const model = requireOption(v.model as string | undefined, "model");
  const prompt = requireOption(v.prompt as string | undefined, "prompt");
  await preparePlotDir(v.plot as string | undefined);
  const bar = terminalProgress(Boolean(v.json));
  try {
    const r = await benchmark({ model, adapter: v.adapter as string | undefined }, {
      ...loadOptions(v), prompt, maxNewTokens: intOption(v["max-new-tokens"], "max-new-tokens", 32, 2), repeats: intOption(v.repeats, "repeats", 5),
      warmup: intOption(v.warmup, "warmup", 1, 0), signal: interruptSignal(), onProgress: bar.onProgress,
    });
    bar.stop();
    process.stdout.write(v.json ? JSON.stringify(r) + "\n" : formatBench(r) + "\n");
    await savePlotOption(v.plot as string | undefined, async () => (await import("../../bench/display.js")).benchPlots(r));
    return 0;
  } finally {
    bar.stop();
  }
}
