import { parseArgs, type ParseArgsConfig } from "node:util";
import { LoralabError } from "../errors.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Parses a command's options with node's util.parseArgs; unknown options and bad values become a
 * LoralabError that names the option. `--help` prints `help` and returns null. */
export type ParsedOptions = Record<string, string | boolean | string[] | boolean[] | undefined>;

export function parseCommandArgs(argv: string[], options: Options, help: string): ParsedOptions | null {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: false });
  } catch (e) {
    throw new LoralabError(`${(e as Error).message}\n${help}`);
  }
  if ((parsed.values as Record<string, unknown>).help) {
    process.stdout.write(help + "\n");
    return null;
  }
  return parsed.values as ParsedOptions;
}

export function requireOption<T>(value: T | undefined, name: string): T {
  if (value === undefined || value === "") throw new LoralabError(`missing required option --${name}`);
  return value;
}

/** Parses a number option, naming the option when it is not a finite number. */
export function numberOption(value: string | undefined, name: string, fallback: number): number;
export function numberOption(value: string | undefined, name: string): number | undefined;
export function numberOption(value: string | undefined, name: string, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new LoralabError(`--${name} must be a number, got '${value}'`);
  return n;
}

/** Parses sizes like 5GB, 500MB, 2GiB, 1048576 into bytes (decimal units as in transformers). */
export function parseByteSize(text: string, name = "max-shard-size"): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*$/i.exec(text);
  if (!m) throw new LoralabError(`--${name}: cannot read '${text}' as a size (e.g. 5GB, 500MB, 2GiB)`);
  const unit = (m[2] ?? "B").toUpperCase();
  const pow = { B: 0, KB: 1, MB: 2, GB: 3, TB: 4, KIB: 1, MIB: 2, GIB: 3, TIB: 4 }[unit];
  if (pow === undefined) throw new LoralabError(`--${name}: unknown unit in '${text}'`);
  const base = unit.includes("I") ? 1024 : 1000;
  return Math.floor(Number(m[1]) * base ** pow);
}

/** An AbortSignal that fires on the first Ctrl-C; a second Ctrl-C exits at once. */
export function interruptSignal(): AbortSignal {
  const controller = new AbortController();
  process.once("SIGINT", () => {
    controller.abort();
    process.once("SIGINT", () => process.exit(130));
  });
  return controller.signal;
}
