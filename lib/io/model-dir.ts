import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { LoralabError } from "../errors.js";
import type { Tensor } from "../tensor/tensor.js";
import { type ModelConfig, loadConfig } from "./hf-config.js";
import { SafetensorsFile, type TensorEntry } from "./safetensors.js";

/** Files beside the weights that a derived model directory keeps unchanged. */
const AUX_FILE = /^(tokenizer.*|special_tokens_map\.json|generation_config\.json|added_tokens\.json|vocab\.json|merges\.txt|chat_template\.(json|jinja)|.*\.model|.*\.tiktoken)$/;

/** A Hugging Face model directory opened lazily: config.json parsed, every safetensors header read
 * (single file or sharded through model.safetensors.index.json), tensors read one at a time. */
export class ModelDir {
  private constructor(
    readonly dir: string,
    readonly config: ModelConfig,
    readonly files: SafetensorsFile[],
    private readonly where: Map<string, SafetensorsFile>,
    readonly auxFiles: string[],
  ) {}

  static async open(dir: string): Promise<ModelDir> {
    dir = resolve(dir);
    const config = await loadConfig(dir);
    const listing = await readdir(dir).catch(() => {
      throw new LoralabError(`cannot read model directory ${dir}`);
    });
    const names = new Set(listing);
    let shardNames: string[];
    let weightMap: Record<string, string> | undefined;
    if (names.has("model.safetensors.index.json")) {
      const indexPath = join(dir, "model.safetensors.index.json");
      let index: { weight_map?: Record<string, string> };
      try {
        index = JSON.parse(await readFile(indexPath, "utf8"));
      } catch (e) {
        throw new LoralabError(`${indexPath}: not valid JSON (${(e as Error).message})`);
      }
      if (!index.weight_map || typeof index.weight_map !== "object") throw new LoralabError(`${indexPath}: no weight_map`);
      weightMap = index.weight_map;
      shardNames = [...new Set(Object.values(weightMap))];
      for (const s of shardNames) if (!names.has(s)) throw new LoralabError(`${indexPath} names shard ${s}, which is missing from ${dir}`);
    } else if (names.has("model.safetensors")) {
      shardNames = ["model.safetensors"];
    } else {
      shardNames = listing.filter((n) => n.endsWith(".safetensors")).sort();
      if (shardNames.length === 0) {
        const bin = listing.find((n) => n.endsWith(".bin"));
        throw new LoralabError(bin
          ? `${dir} holds PyTorch pickle weights (${bin}); convert them to safetensors first (transformers: model.save_pretrained(dir, safe_serialization=True))`
          : `${dir} holds no *.safetensors weights`);
      }
    }
    const files: SafetensorsFile[] = [];
    const where = new Map<string, SafetensorsFile>();
    try {
      for (const s of shardNames) {
        const f = await SafetensorsFile.open(join(dir, s));
        files.push(f);
        for (const name of f.names()) {
          if (where.has(name)) throw new LoralabError(`tensor '${name}' appears in both ${where.get(name)!.path} and ${f.path}`);
          if (weightMap && weightMap[name] !== s) throw new LoralabError(`tensor '${name}' is in ${s} but the index maps it to ${weightMap[name] ?? "nothing"}`);
          where.set(name, f);
        }
      }
      if (weightMap) for (const name of Object.keys(weightMap)) if (!where.has(name)) throw new LoralabError(`the index lists tensor '${name}' but ${weightMap[name]} does not hold it`);
    } catch (e) {
      await Promise.all(files.map((f) => f.close()));
      throw e;
    }
    const auxFiles = listing.filter((n) => AUX_FILE.test(n)).sort();
    return new ModelDir(dir, config, files, where, auxFiles);
  }

  /** Tensor names in storage order (shard by shard, offset order within a shard). */
  names(): string[] {
    return this.files.flatMap((f) => [...f.entries.values()].sort((a, b) => a.offset - b.offset).map((e) => e.name));
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  entry(name: string): TensorEntry {
    const f = this.where.get(name);
    if (!f) throw new LoralabError(`model ${this.dir} has no tensor '${name}'`);
    return f.entry(name);
  }

  fileOf(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new LoralabError(`model ${this.dir} has no tensor '${name}'`);
    return f;
  }

  async read(name: string): Promise<Tensor> {
    return this.fileOf(name).read(name);
  }

  async readBytes(name: string, into?: Uint8Array): Promise<Uint8Array> {
    return this.fileOf(name).readBytes(name, into);
  }

  /** The output projection's tensor name: `lm_head.weight`, or the embedding when tied and absent. */
  lmHeadName(): string {
    if (this.has("lm_head.weight")) return "lm_head.weight";
    for (const n of ["model.embed_tokens.weight", "transformer.wte.weight"]) if (this.has(n)) return n;
    throw new LoralabError(`model ${this.dir} has neither lm_head.weight nor an embedding to tie it to`);
  }

  /** Total bytes of tensor data. */
  totalBytes(): number {
    let n = 0;
    for (const f of this.files) for (const e of f.entries.values()) n += e.byteLength;
    return n;
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}

export async function openModel(dir: string): Promise<ModelDir> {
  return ModelDir.open(dir);
}
