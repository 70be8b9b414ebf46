// Merge throughput vs plain file copy on a generated bf16 model with Llama-2-7B layer shapes (JSON on stdout).
// usage: npx tsx bench/merge.ts [--layers 4] [--repeats 3] [--dir DIR] [--dora]   (LORALAB_MERGE_THREADS=1|2 is passed on)
// --dora: a DoRA adapter instead (per tensor a norms pass, then the scaled merge)
// The machines are shared: loadAverage (1-minute, before/after) says how busy the cores were during the run.
import { execFileSync } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generateLlamaModel, generateLoraAdapter } from "../lib/fixtures/index.js";
import { defaultThreads } from "../lib/tensor/lowrank.js";

const CHILD = process.env.LORALAB_BENCH_CHILD;
if (CHILD) {
  // child: one merge, prints its wall time and peak RSS
  const { merge } = await import("../lib/lora/merge.js");
  const [base, adapter, out] = JSON.parse(CHILD) as string[];
  const t = performance.now();
  await merge({ base, adapters: [{ path: adapter, weight: 1 }], out, maxShardSize: 1e9 });
  process.stdout.write(JSON.stringify({ seconds: (performance.now() - t) / 1000, maxRssBytes: process.resourceUsage().maxRSS * 1024 }));
  process.exit(0);
}

const { values } = parseArgs({ options: { layers: { type: "string" }, repeats: { type: "string" }, dir: { type: "string" }, dora: { type: "boolean" } } });
const layers = Number(values.layers ?? 4), repeats = Number(values.repeats ?? 3);
const work = values.dir ?? (await mkdtemp(join(tmpdir(), "loralab-bench-merge-")));
const base = join(work, "base"), adapter = join(work, values.dora ? "adapter-dora" : "adapter");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  if (!(await stat(join(base, "config.json")).catch(() => undefined)))
    await generateLlamaModel(base, { hiddenSize: 4096, intermediateSize: 11008, numLayers: layers, numHeads: 32, numKvHeads: 32, vocabSize: 32000, dtype: "BF16", seed: 0, maxShardBytes: 1e9 });
  if (!(await stat(join(adapter, "adapter_config.json")).catch(() => undefined)))
    await generateLoraAdapter(adapter, base, { r: 16, alpha: 32, targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], seed: 1, dtype: "BF16", useDora: values.dora });
  const shards = (await readdir(base)).filter((f) => f.endsWith(".safetensors"));
  let bytes = 0;
  for (const f of shards) bytes += (await stat(join(base, f))).size;
  const copy: number[] = [], mergeS: number[] = [], rss: number[] = [];
  const load0 = loadavg()[0];
  for (let i = 0; i < repeats; i++) {
    const c = join(work, "copy");
    await mkdir(c, { recursive: true });
    const t = performance.now();
    for (const f of shards) await copyFile(join(base, f), join(c, f));
    execFileSync("sync");
    copy.push((performance.now() - t) / 1000);
    await rm(c, { recursive: true });
    const out = join(work, "merged");
    const r = JSON.parse(execFileSync(process.execPath, ["--import", "tsx", new URL(import.meta.url).pathname], {
      env: { ...process.env, LORALAB_BENCH_CHILD: JSON.stringify([base, adapter, out]) }, encoding: "utf8", maxBuffer: 1 << 20,
    }));
    mergeS.push(r.seconds); rss.push(r.maxRssBytes);
    await rm(out, { recursive: true });
  }
  const copyGBs = bytes / 1e9 / median(copy), mergeGBs = bytes / 1e9 / median(mergeS);
  process.stdout.write(JSON.stringify({
    modelBytes: bytes, layers, repeats, dora: !!values.dora, copySeconds: copy, mergeSeconds: mergeS, copyGBps: copyGBs, mergeGBps: mergeGBs,
    ratio: mergeGBs / copyGBs, peakRssBytes: Math.max(...rss), targets: { ratio: 0.5, peakRssBytes: 1.5e9 },
    cores: availableParallelism(), mergeThreads: defaultThreads(),
    loadAverage: [load0, loadavg()[0]],
  }, null, 2) + "\n");
} finally {
  if (!values.dir) await rm(work, { recursive: true, force: true });
}
