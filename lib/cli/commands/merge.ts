import { LoralabError } from "../../errors.js";
import { merge } from "../../lora/merge.js";
import { interruptSignal, numberOption, parseByteSize, parseCommandArgs, requireOption } from "../args.js";
import { terminalProgress } from "../progress-bar.js";
import { plotHelp, preparePlotDir, savePlotOption } from "../plot-option.js";

export const summary = "merge PEFT LoRA adapters into a Hugging Face model (exact, streaming)";

const HELP = `usage: loralab merge --base DIR --adapter DIR [--weight W] [--adapter DIR --weight W ...] --out DIR [options]

  --base DIR             Hugging Face model directory (safetensors, single or sharded)
  --adapter DIR          PEFT LoRA adapter directory (repeatable)
  --weight W             multiplier of the preceding --adapter (default 1)
  --out DIR              output directory (written atomically)
  --dtype D              auto (base dtype) | f32 | f16 | bf16
  --max-shard-size S     default 5GB
  --overwrite            replace a non-empty --out
  --json                 print the report as one JSON object on stdout
  --quiet                no progress bar
${plotHelp("merge-delta (‖ΔW‖/‖W‖ per module)", 25)}`;

/** Pairs each --weight with the --adapter before it (parseArgs loses the interleaving). */
function adapterArgs(argv: string[]): { path: string; weight: number }[] {
  const out: { path: string; weight: number }[] = [];
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => inline ?? argv[++i];
    if (flag === "--adapter") out.push({ path: value(), weight: 1 });
    else if (flag === "--weight") {
      if (out.length === 0) throw new LoralabError("--weight must follow the --adapter it applies to");
      out[out.length - 1].weight = numberOption(value(), "weight", 1);
    }
  }
  return out;
}

export async function run(argv: string[]): Promise<number> {
  const s = { type: "string" } as const;
  const o = parseCommandArgs(argv, {
    base: s, adapter: { type: "string", multiple: true }, weight: { type: "string", multiple: true }, out: s, dtype: s,
    "max-shard-size": s, overwrite: { type: "boolean" }, json: { type: "boolean" }, quiet: { type: "boolean" }, plot: s,
  }, HELP);
  if (!o) return 0;
  const adapters = adapterArgs(argv);
  if (adapters.length === 0) throw new LoralabError("missing required option --adapter");
  const dtype = (o.dtype as string | undefined) ?? "auto";
  if (!["auto", "f32", "f16", "bf16"].includes(dtype)) throw new LoralabError(`--dtype must be auto, f32, f16 or bf16, got '${dtype}'`);
  await preparePlotDir(o.plot as string | undefined);
  const progress = terminalProgress(!!o.quiet);
  try {
    const report = await merge({
      base: requireOption(o.base as string | undefined, "base"), adapters, out: requireOption(o.out as string | undefined, "out"),
      dtype: dtype as "auto", maxShardSize: parseByteSize((o["max-shard-size"] as string | undefined) ?? "5GB"),
      overwrite: !!o.overwrite, signal: interruptSignal(), onProgress: progress.onProgress,
    });
    progress.stop();
    process.stdout.write(o.json ? JSON.stringify(report) + "\n" : report.table() + "\n");
    await savePlotOption(o.plot as string | undefined, async () => (await import("../../lora/merge-display.js")).mergePlots(report));
    return 0;
  } finally {
    progress.stop();
  }
}
