import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { LoralabError } from "../errors.js";
import { SafetensorsFile } from "../io/safetensors.js";
import type { Tensor } from "../tensor/tensor.js";
import type { Adapter, LoraModule } from "./types.js";

/** PEFT pattern resolution (SPEC §2.4): first key k (JSON order) with `^(.*\.)?(k)$` matching the module. */
export function resolvePattern(patterns: Record<string, number> | undefined, module: string): number | undefined {
  for (const [k, v] of Object.entries(patterns ?? {})) {
    let re: RegExp;
    try { re = new RegExp(`^(.*\\.)?(${k})$`); } catch { continue; }
    if (re.test(module)) return v;
  }
  return undefined;
}

/** Strips `base_model.model.` and an inserted adapter name (`lora_A.<name>.weight`) — SPEC §2.3. */
export function normalizeKey(key: string): string {
  let k = key.startsWith("base_model.model.") ? key.slice("base_model.model.".length) : key;
  k = k.replace(/\.(lora_A|lora_B)\.[^.]+\.(weight|bias)$/, ".$1.$2");
  k = k.replace(/\.(lora_embedding_A|lora_embedding_B)\.[^.]+$/, ".$1");
  return k.replace(/\.lora_magnitude_vector(\.[^.]+)?(\.weight)?$/, ".lora_magnitude_vector");
}

type Kind = "A" | "B" | "EA" | "EB" | "M" | "Bbias" | "tokens" | "full";
const SUFFIXES: [string, Kind][] = [
  [".lora_A.weight", "A"], [".lora_B.weight", "B"], [".lora_B.bias", "Bbias"], [".lora_embedding_A", "EA"],
  [".lora_embedding_B", "EB"], [".lora_magnitude_vector", "M"], [".token_adapter.trainable_tokens_delta", "tokens"],
];

function refuse(dir: string, why: string): never {
  throw new LoralabError(`adapter ${dir}: ${why}`);
}

/** Loads a PEFT LoRA adapter directory: config + all tensors (adapters are small), resolved per module. */
export async function loadAdapter(dirIn: string): Promise<Adapter> {
  const dir = resolve(dirIn);
  const listing = await readdir(dir).catch(() => refuse(dir, "cannot read the directory"));
  if (!listing.includes("adapter_config.json")) refuse(dir, "no adapter_config.json (is this a PEFT adapter directory?)");
  let config: Record<string, unknown>;
  try { config = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8")); } catch (e) { refuse(dir, `adapter_config.json is not valid JSON (${(e as Error).message})`); }
  if (!listing.includes("adapter_model.safetensors")) {
    if (listing.includes("adapter_model.bin")) refuse(dir, "adapter_model.bin is a PyTorch pickle, which loralab does not load (it can run code); re-save with PEFT's save_pretrained(dir, safe_serialization=True)");
    refuse(dir, "no adapter_model.safetensors");
  }
  const peftType = config.peft_type ?? "LORA";
  if (peftType !== "LORA") refuse(dir, `peft_type ${String(peftType)} is not LoRA; only LoRA adapters can be merged`);
  if (config.layer_replication) refuse(dir, "layer_replication is set; PEFT forbids merging when base layers are replicated");
  if (config.target_parameters) refuse(dir, "target_parameters (LoRA on raw parameters, e.g. MoE experts) is not supported");
  const init = config.init_lora_weights;
  if (typeof init === "string" && /^(pissa|olora|corda)/i.test(init))
    refuse(dir, `init_lora_weights="${init}" mutates the base model; convert the adapter to plain LoRA first (PEFT save_pretrained(path_initial_model_for_weight_conversion=...))`);
  for (const v of ["use_qalora", "use_bdlora", "alora_invocation_tokens", "arrow_config", "kasa_config", "velora_config", "monteclora_config"])
    if (config[v]) refuse(dir, `${v} selects a LoRA variant loralab cannot merge`);

  const r0 = Number(config.r ?? 8), alpha0 = Number(config.lora_alpha ?? 8);
  const rslora = !!config.use_rslora, fif = !!config.fan_in_fan_out;
  const rankPattern = (config.rank_pattern ?? {}) as Record<string, number>;
  const alphaPattern = (config.alpha_pattern ?? {}) as Record<string, number>;
  const file = await SafetensorsFile.open(join(dir, "adapter_model.safetensors"));
  const parts = new Map<string, Partial<Record<Kind, Tensor>>>();
  const replacements = new Map<string, Tensor>();
  const tokenRows = new Map<string, Tensor>();
  try {
    for (const key of file.names()) {
      const k = normalizeKey(key);
      const hit = SUFFIXES.find(([s]) => k.endsWith(s));
      const t = await file.read(key);
      if (!hit) {
        replacements.set(k.replace(/\.base_layer\.(weight|bias)$/, ".$1").replace(/\.modules_to_save\.[^.]+\./, "."), t);
        continue;
      }
      const module = k.slice(0, -hit[0].length);
      if (hit[1] === "tokens") { tokenRows.set(`${module}.weight`, t); continue; }
      const p = parts.get(module) ?? {};
      p[hit[1]] = t;
      parts.set(module, p);
    }
  } finally {
    await file.close();
  }
  const modules = new Map<string, LoraModule>();
  for (const [module, p] of parts) {
    const embedding = !!(p.EA || p.EB);
    const A = embedding ? p.EA : p.A, B = embedding ? p.EB : p.B;
    if (!A || !B) refuse(dir, `module ${module} has only one of lora_A/lora_B`);
    const r = A.shape[0];
    if (B.shape[B.shape.length - 1] !== r) refuse(dir, `module ${module}: lora_A has rank ${r} but lora_B has shape [${B.shape}]`);
    const rConfig = resolvePattern(rankPattern, module) ?? r0;
    if (rConfig !== r) process.emitWarning(`adapter ${dir}: module ${module} has rank ${r} in lora_A but ${rConfig} in the config; using ${r}`);
    const alpha = resolvePattern(alphaPattern, module) ?? alpha0;
    modules.set(`${module}.weight`, {
      module, target: `${module}.weight`, kind: embedding ? "embedding" : "linear", A, B, r, alpha,
      scaling: rslora ? alpha / Math.sqrt(r) : alpha / r, fanInFanOut: !embedding && fif, bias: p.Bbias, magnitude: p.M,
    });
  }
  const trainableTokens = new Map<string, { indices: number[]; rows: Tensor }>();
  const tti = config.trainable_token_indices as number[] | Record<string, number[]> | null | undefined;
  for (const [target, rows] of tokenRows) {
    let indices: number[] | undefined;
    if (Array.isArray(tti)) indices = tti;
    else if (tti) indices = Object.entries(tti).find(([k]) => resolvePattern({ [k]: 1 }, target.slice(0, -".weight".length)))?.[1];
    if (!indices) refuse(dir, `trainable token rows for ${target} but no trainable_token_indices for it in the config`);
    if (indices.length !== rows.shape[0]) refuse(dir, `${target}: ${indices.length} trainable token indices but ${rows.shape[0]} rows`);
    trainableTokens.set(target, { indices, rows });
  }
  return { dir, config, modules, replacements, trainableTokens };
}
