import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type TensorBytes, type TensorPlan, type WriteOptions, planBytes, writeSafetensors } from "./safetensors.js";

export interface ShardPlan {
  file: string;
  tensors: TensorPlan[];
  bytes: number;
}

/** Splits tensors (kept in order) into shards of at most `maxShardBytes` of tensor data, the way
 * transformers' `save_pretrained` does: a tensor larger than the limit gets a shard of its own. One shard is
 * named `model.safetensors`; several are `model-0000i-of-0000N.safetensors`. */
export function planShards(tensors: readonly TensorPlan[], maxShardBytes: number, prefix = "model"): ShardPlan[] {
  const groups: { tensors: TensorPlan[]; bytes: number }[] = [];
  let cur: { tensors: TensorPlan[]; bytes: number } | undefined;
  for (const t of tensors) {
    const n = planBytes(t);
    if (!cur || (cur.tensors.length > 0 && cur.bytes + n > maxShardBytes)) {
      cur = { tensors: [], bytes: 0 };
      groups.push(cur);
    }
    cur.tensors.push(t);
    cur.bytes += n;
  }
  if (groups.length === 0) groups.push({ tensors: [], bytes: 0 });
  const total = groups.length;
  const pad = (i: number) => String(i).padStart(5, "0");
  return groups.map((g, i) => ({
    file: total === 1 ? `${prefix}.safetensors` : `${prefix}-${pad(i + 1)}-of-${pad(total)}.safetensors`,
    ...g,
  }));
}

/** Writes the shards (and the index when there are several) into `dir`, streaming each tensor from
 * `produce`. */
export async function writeShardedModel(
  dir: string,
  shards: ShardPlan[],
  produce: (t: TensorPlan) => Promise<TensorBytes> | TensorBytes,
  opts: WriteOptions = {},
): Promise<void> {
  // pipelined: each shard's final sync and close run while the next shard is produced
  const finishing: Promise<void>[] = [];
  const defer = opts.pipelined ? { deferFinish: (p: Promise<void>) => void finishing.push(p) } : {};
  try {
    for (const shard of shards) await writeSafetensors(join(dir, shard.file), shard.tensors, produce, { format: "pt" }, { ...opts, ...defer });
    await Promise.all(finishing);
  } finally {
    await Promise.allSettled(finishing);
  }
  if (shards.length > 1) {
    const weightMap: Record<string, string> = {};
    const names: [string, string][] = [];
    for (const s of shards) for (const t of s.tensors) names.push([t.name, s.file]);
    names.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    for (const [n, f] of names) weightMap[n] = f;
    const totalSize = shards.reduce((a, s) => a + s.bytes, 0);
    await writeFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + "\n");
  }
}
