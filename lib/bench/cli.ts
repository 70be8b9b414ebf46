import { readFile } from "node:fs/promises";
import { numberOption } from "../cli/args.js";
import { parseDevice } from "../engine/session.js";
import { LoralabError } from "../errors.js";
import type { LoadOptions } from "../model/causal-lm.js";

/** Options shared by the engine commands (logits, generate, ppl, bench, compare). */
export const ENGINE_OPTIONS = {
  device: { type: "string" },
  threads: { type: "string" },
  json: { type: "boolean" },
} as const;

export const ENGINE_HELP = "  --device cpu|cuda    execution provider (default cpu; cuda never falls back to the CPU)\n  --threads N          intra-op threads (default: ORT's choice)\n  --json               print one JSON object on stdout";

type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

export function loadOptions(v: Values): LoadOptions {
  const threads = numberOption(v.threads as string | undefined, "threads");
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) throw new LoralabError(`--threads must be a positive integer, got ${threads}`);
  return { device: parseDevice(v.device as string | undefined), threads };
}

export function intOption(value: unknown, name: string, fallback?: number, min = 1): number | undefined {
  const n = numberOption(value as string | undefined, name, fallback as number);
  if (n !== undefined && !(Number.isInteger(n) && n >= min)) throw new LoralabError(`--${name} must be an integer ≥ ${min}, got ${value}`);
  return n;
}

/** Reads a text file for perplexity; an empty file is an error naming it. */
export async function readTextFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new LoralabError(`cannot read text file ${path}: ${(e as Error).message}`);
  }
  if (text.trim() === "") throw new LoralabError(`text file ${path} is empty`);
  return text;
}
