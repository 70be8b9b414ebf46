import { readFile } from "node:fs/promises";
import { isAbsolute, relative } from "node:path";
import { compareTables } from "../../bench/compare.js";
import { LoralabError } from "../../errors.js";
import { parseMethod } from "../../quant/formats.js";
import { runPipeline } from "../../workflow/pipeline.js";
import { interruptSignal, numberOption, parseCommandArgs } from "../args.js";
import { terminalProgress } from "../progress-bar.js";

export const summary = "run the main job: merge → quantize (GPTQ 4-bit) → compare the four configurations → report";

const HELP = `usage: loralab demo [--base DIR] [--adapter DIR] [--text FILE] [--calib FILE] [--out DIR] [options]

Merges the adapter into the base, quantizes the merged model (GPTQ 4-bit, group size 128 by default),
measures base, base + dynamic LoRA, merged and merged + quantized side by side, prints the comparison
table and writes the report (report.html with the plots, plots/*.svg, results.json) to OUT/report.
Without a base model (flag or LORALAB_MODEL) it generates a small seeded Llama model, adapter and
texts in OUT, so it runs offline on a fresh machine.

  --base DIR         base model (default: LORALAB_MODEL, else generated)
  --adapter DIR      PEFT adapter (default: LORALAB_ADAPTER, else generated)
  --text FILE        evaluation text for perplexity (default: LORALAB_TEXT, else generated)
  --calib FILE       calibration text (default: LORALAB_CALIB, else the evaluation text file or generated)
  --out DIR          working folder: merged/, quantized/, report/ are replaced there (default: loralab-demo)
  --method M         gptq (default), awq or rtn
  --bits B           default 4
  --group-size G     default 128 (modules whose width it does not divide stay unquantized and are listed)
  --calib-samples N  calibration windows (default 32)
  --seq-len L        tokens per calibration window (default 128)
  --prompt TEXT      benchmark prompt (default "Once upon a time")
  --max-new-tokens N default 32
  --repeats R        default 3
  --max-tokens T     perplexity tokens scored at most (default 4096)
  --threads N        ONNX Runtime intra-op threads
  --json             print all results as one JSON object on stdout
  --quiet            no progress on stderr`;

/** `p` relative to the working directory when inside it, else absolute. */
function shortPath(p: string): string {
  const rel = relative(process.cwd(), p);
  return rel === "" ? "." : rel.startsWith("..") || isAbsolute(rel) ? p : rel;
}

export async function run(argv: string[]): Promise<number> {
  const o = parseCommandArgs(argv, {
    base: { type: "string" }, adapter: { type: "string" }, text: { type: "string" }, calib: { type: "string" }, out: { type: "string" },
    method: { type: "string" }, bits: { type: "string" }, "group-size": { type: "string" }, "calib-samples": { type: "string" },
    "seq-len": { type: "string" }, prompt: { type: "string" }, "max-new-tokens": { type: "string" }, repeats: { type: "string" },
    "max-tokens": { type: "string" }, threads: { type: "string" }, json: { type: "boolean" }, quiet: { type: "boolean" },
  }, HELP);
  if (!o) return 0;
  const env = process.env;
  const base = (o.base as string | undefined) ?? env.LORALAB_MODEL;
  const adapter = (o.adapter as string | undefined) ?? env.LORALAB_ADAPTER;
  if (adapter && !base) throw new LoralabError("--adapter needs --base (or LORALAB_MODEL)");
  const textFile = (o.text as string | undefined) ?? env.LORALAB_TEXT;
  if (base && !textFile) throw new LoralabError("with a base model of your own, give --text FILE (or LORALAB_TEXT) for perplexity");
  const text = textFile ? await readFile(textFile, "utf8") : undefined;
  const calib = (o.calib as string | undefined) ?? env.LORALAB_CALIB ?? textFile;
  const progress = terminalProgress(!!o.quiet);
  const say = (line: string) => { if (!o.quiet) process.stderr.write(line + "\n"); };
  try {
    const r = await runPipeline({
      base, adapter, text, calib, out: (o.out as string | undefined) ?? "loralab-demo",
      method: o.method === undefined ? undefined : parseMethod(o.method as string),
      bits: numberOption(o.bits as string | undefined, "bits"),
      groupSize: numberOption(o["group-size"] as string | undefined, "group-size"),
      calibSamples: numberOption(o["calib-samples"] as string | undefined, "calib-samples"),
      seqLen: numberOption(o["seq-len"] as string | undefined, "seq-len"),
      prompt: o.prompt as string | undefined,
      maxNewTokens: numberOption(o["max-new-tokens"] as string | undefined, "max-new-tokens"),
      repeats: numberOption(o.repeats as string | undefined, "repeats"),
      maxTokens: numberOption(o["max-tokens"] as string | undefined, "max-tokens"),
      threads: numberOption(o.threads as string | undefined, "threads"),
      signal: interruptSignal(),
      onProgress: progress.onProgress,
      onStep: (s) => { progress.stop(); say(`== ${s}`); },
    });
    progress.stop();
    if (o.json) {
      process.stdout.write(JSON.stringify({ inputs: r.inputs, merge: r.merge, quantize: r.quantize, compare: r.compare, report: r.report }, null, 2) + "\n");
    } else {
      process.stdout.write(`${r.quantize.summary()}\n\n${compareTables(r.compare).text}\n\nreport: ${shortPath(r.report)}/report.html\n`);
    }
    return 0;
  } finally {
    progress.stop();
  }
}
