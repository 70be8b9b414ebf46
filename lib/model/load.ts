import { LoralabError } from "../errors.js";
import type { Adapter } from "../lora/types.js";
import { type LoadOptions, CausalLM } from "./causal-lm.js";
import { TextTokenizer } from "./tokenizer.js";
import { AdapterWeightSource, type WeightSource, openWeightSource } from "./weights.js";

export interface ModelSpec {
  /** HF model directory (float or quantized) */
  model: string;
  /** PEFT adapter directory, applied dynamically */
  adapter?: string;
  /** user multiplier on the adapter scaling (PEFT set_scale) */
  adapterScale?: number;
}

export interface LoadedModel {
  lm: CausalLM;
  tokenizer: TextTokenizer;
  source: string;
}

// a variable keeps tsc from resolving a module another part of the project provides
const ADAPTER_MODULE = "../lora/adapter.js";

export async function loadAdapterDir(dir: string): Promise<Adapter> {
  let mod: { loadAdapter?: (dir: string) => Promise<Adapter> };
  try {
    mod = await import(ADAPTER_MODULE);
  } catch (e) {
    throw new LoralabError(`cannot load adapters in this build (lib/lora/adapter: ${(e as Error).message})`);
  }
  if (!mod.loadAdapter) throw new LoralabError("lib/lora/adapter does not export loadAdapter");
  return mod.loadAdapter(dir);
}

/** The weight source of a spec: the model, with the adapter on top when given. */
export async function openSpec(spec: ModelSpec): Promise<WeightSource> {
  const base = await openWeightSource(spec.model);
  if (!spec.adapter) return base;
  try {
    return new AdapterWeightSource(base, await loadAdapterDir(spec.adapter), spec.adapterScale ?? 1);
  } catch (e) {
    await base.close();
    throw e;
  }
}

/** Opens, builds the session and closes the files again (weights live in the session afterwards). */
export async function loadModel(spec: ModelSpec, opts: LoadOptions = {}): Promise<LoadedModel> {
  const source = await openSpec(spec);
  try {
    const [lm, tokenizer] = await Promise.all([CausalLM.load(source, opts), TextTokenizer.load(source.tokenizerDir)]);
    return { lm, tokenizer, source: source.description };
  } finally {
    await source.close();
  }
}
