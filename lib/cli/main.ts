import { isAbortError, isLoralabError } from "../errors.js";

/** Each command lives in its own module under ./commands and exports `run(argv): Promise<number>`. */
type CommandModule = { run(argv: string[]): Promise<number>; summary: string };

const COMMANDS = ["demo", "merge", "logits", "generate", "ppl", "bench", "compare", "quantize", "kernel", "fixture"] as const;

function loadCommand(name: string): Promise<CommandModule> {
  return import(`./commands/${name}.js`) as Promise<CommandModule>;
}

async function usage(): Promise<string> {
  const lines = ["usage: loralab <command> [options]   (loralab <command> --help for its options)", "", "commands:"];
  for (const name of COMMANDS) {
    const summary = await loadCommand(name).then((m) => m.summary, () => "(not available in this build)");
    lines.push(`  ${name.padEnd(10)} ${summary}`);
  }
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write((await usage()) + "\n");
    return name ? 0 : 2;
  }
  if (name === "--version") {
    const { createRequire } = await import("node:module");
    process.stdout.write(createRequire(import.meta.url)("../../../package.json").version + "\n");
    return 0;
  }
  if (!(COMMANDS as readonly string[]).includes(name)) {
    process.stderr.write(`loralab: unknown command '${name}'\n\n${await usage()}\n`);
    return 2;
  }
  try {
    return await (await loadCommand(name)).run(rest);
  } catch (e) {
    if (isAbortError(e)) {
      process.stderr.write("loralab: interrupted\n");
      return 130;
    }
    // not `instanceof`: under tsx the command's import may load a second copy of lib/errors
    if (isLoralabError(e)) {
      process.stderr.write(`loralab ${name}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
