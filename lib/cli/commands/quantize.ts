import { LoralabError } from "../../errors.js";
import { parseFormat, parseMethod } from "../../quant/formats.js";
import type { HessianArithmetic } from "../../quant/gptq.js";
import { quantizeModel } from "../../quant/pipeline.js";
import type { QuantRule } from "../../quant/quantizer.js";
import { interruptSignal, numberOption, parseCommandArgs, requireOption } from "../args.js";
import { terminalProgress } from "../progress-bar.js";
import { plotHelp, preparePlotDir, savePlotOption } from "../plot-option.js";

export const summary = "quantize a model with RTN, GPTQ or AWQ and write GPTQ, AWQ, ONNX or GGUF";

const HELP = `usage: loralab quantize --model DIR --method rtn|gptq|awq --bits B --group-size G --format gptq|awq|onnx|gguf --out DIR [options]

  --model DIR          float Hugging Face model directory (e.g. a merged model)
  --method M           rtn (no calibration), gptq or awq
  --bits B             2, 3, 4 or 8
  --group-size G       -1 (one group per row), 32, 64, 128 or any divisor of in_features
  --sym | --asym       symmetric (default for rtn/gptq) or asymmetric (always for awq)
  --rule R             rtn only: gptq (range includes 0, default) or minmax (AWQ's RTN)
  --desc-act           GPTQ act-order
  --static-groups      GPTQ static groups (act-order with trivial g_idx)
  --no-true-sequential GPTQ: quantize all linears of a layer on the same inputs
  --damp X             GPTQ damp_percent (default 0.01)
  --hessian A          GPTQ: int (exact integer products of the inputs on a 14-bit grid per
                       column, default; float32 where the CPU lacks exact int8 products) or float32
  --calib FILE         calibration text (gptq, awq)
  --calib-samples N    windows (default 128)
  --seq-len L          tokens per window, BOS included (default min(512, context))
  --seed S             window sampling seed (default 0)
  --format F           gptq | awq | onnx | gguf
  --out DIR            output directory (written atomically)
  --lm-head            also quantize lm_head (rtn, --format onnx)
  --overwrite          replace a non-empty --out
  --threads N          ONNX Runtime intra-op threads
  --json               print the report as JSON on stdout
  --quiet              no progress on stderr
${plotHelp("quant-error (‖W−Ŵ‖/‖W‖ and the GPTQ/AWQ loss per module)")}`;

export async function run(argv: string[]): Promise<number> {
  const o = parseCommandArgs(argv, {
    model: { type: "string" }, method: { type: "string" }, bits: { type: "string" }, "group-size": { type: "string" },
    sym: { type: "boolean" }, asym: { type: "boolean" }, rule: { type: "string" }, "desc-act": { type: "boolean" },
    "static-groups": { type: "boolean" }, "no-true-sequential": { type: "boolean" }, damp: { type: "string" }, hessian: { type: "string" },
    calib: { type: "string" }, "calib-samples": { type: "string" }, "seq-len": { type: "string" }, seed: { type: "string" },
    format: { type: "string" }, out: { type: "string" }, "lm-head": { type: "boolean" }, overwrite: { type: "boolean" }, threads: { type: "string" },
    json: { type: "boolean" }, quiet: { type: "boolean" }, plot: { type: "string" },
  }, HELP);
  if (!o) return 0;
  if (o.sym && o.asym) throw new LoralabError("--sym and --asym exclude each other");
  const rule = o.rule as string | undefined;
  if (rule !== undefined && rule !== "gptq" && rule !== "minmax") throw new LoralabError(`--rule must be gptq or minmax, got '${rule}'`);
  await preparePlotDir(o.plot as string | undefined);
  const progress = terminalProgress(!!o.quiet);
  try {
    const report = await quantizeModel({
      model: requireOption(o.model as string | undefined, "model"),
      out: requireOption(o.out as string | undefined, "out"),
      method: parseMethod(o.method as string | undefined),
      format: parseFormat(o.format as string | undefined),
      bits: numberOption(requireOption(o.bits as string | undefined, "bits"), "bits", NaN),
      groupSize: numberOption(requireOption(o["group-size"] as string | undefined, "group-size"), "group-size", NaN),
      sym: o.sym ? true : o.asym ? false : undefined,
      rule: rule as QuantRule | undefined,
      descAct: !!o["desc-act"],
      staticGroups: !!o["static-groups"],
      trueSequential: !o["no-true-sequential"],
      damp: numberOption(o.damp as string | undefined, "damp"),
      hessian: o.hessian as HessianArithmetic | undefined,
      calib: o.calib as string | undefined,
      calibSamples: numberOption(o["calib-samples"] as string | undefined, "calib-samples"),
      seqLen: numberOption(o["seq-len"] as string | undefined, "seq-len"),
      seed: numberOption(o.seed as string | undefined, "seed"),
      overwrite: !!o.overwrite,
      lmHead: !!o["lm-head"],
      threads: numberOption(o.threads as string | undefined, "threads"),
      signal: interruptSignal(),
      onProgress: progress.onProgress,
    });
    progress.stop();
    if (o.json) process.stdout.write(JSON.stringify(report, null, 2) + "\n");
    else process.stdout.write(report.summary() + "\n");
    await savePlotOption(o.plot as string | undefined, async () => (await import("../../quant/report-display.js")).quantPlots(report));
    return 0;
  } finally {
    progress.stop();
  }
}
