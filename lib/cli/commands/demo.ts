import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateLlamaModel, generateLoraAdapter } from "../../fixtures/index.js";
import { merge, type MergeReport } from "../../lora/merge.js";
import { interruptSignal, parseCommandArgs } from "../args.js";
import { terminalProgress } from "../progress-bar.js";

export const summary = "run the main job end to end (synthetic model + adapter when no paths are given)";

const HELP = `usage: loralab demo [--base DIR --adapter DIR] [--out DIR] [--quiet]

Without --base/--adapter (or LORALAB_MODEL / LORALAB_ADAPTER) it generates a small synthetic Llama model and
LoRA adapter in a temporary folder, merges them and prints the merge report. --out keeps the results there.`;

interface DemoContext { base: string; adapter: string; work: string; signal: AbortSignal; quiet: boolean; merged?: string; report?: MergeReport }

/** Steps run in order; later steps (quantize, compare) plug in here. */
const STEPS: { name: string; run(c: DemoContext): Promise<void> }[] = [
  {
    name: "merge",
    async run(c) {
      const progress = terminalProgress(c.quiet);
      try {
        c.merged = join(c.work, "merged");
        c.report = await merge({ base: c.base, adapters: [{ path: c.adapter, weight: 1 }], out: c.merged, overwrite: true, signal: c.signal, onProgress: progress.onProgress });
      } finally { progress.stop(); }
      process.stdout.write(c.report.table() + "\n");
    },
  },
];

export async function run(argv: string[]): Promise<number> {
  const o = parseCommandArgs(argv, { base: { type: "string" }, adapter: { type: "string" }, out: { type: "string" }, quiet: { type: "boolean" } }, HELP);
  if (!o) return 0;
  const keep = o.out as string | undefined;
  const work = keep ?? (await mkdtemp(join(tmpdir(), "loralab-demo-")));
  try {
    let base = (o.base as string | undefined) ?? process.env.LORALAB_MODEL;
    let adapter = (o.adapter as string | undefined) ?? process.env.LORALAB_ADAPTER;
    if (!base) {
      base = join(work, "base");
      process.stderr.write(`generating a synthetic Llama model in ${base}\n`);
      await generateLlamaModel(base, { hiddenSize: 256, intermediateSize: 688, numLayers: 4, numHeads: 8, numKvHeads: 4, vocabSize: 1024, dtype: "BF16", seed: 0 });
      adapter = undefined;
    }
    if (!adapter) {
      adapter = join(work, "adapter");
      process.stderr.write(`generating a LoRA adapter (r=8, all linear layers) in ${adapter}\n`);
      await generateLoraAdapter(adapter, base, { r: 8, alpha: 16, targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], seed: 1 });
    }
    const ctx: DemoContext = { base, adapter, work, signal: interruptSignal(), quiet: !!o.quiet };
    for (const s of STEPS) {
      process.stderr.write(`== ${s.name}\n`);
      await s.run(ctx);
    }
    return 0;
  } finally {
    if (!keep) await rm(work, { recursive: true, force: true });
  }
}
