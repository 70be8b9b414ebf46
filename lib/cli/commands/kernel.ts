import { LoralabError, isLoralabError } from "../../errors.js";
import { parseCommandArgs } from "../args.js";

export const summary = "Jupyter kernel for TypeScript: install | list | uninstall | start";

const HELP = `usage: loralab kernel <install|list|uninstall|start> [options]

  install    [--user | --prefix DIR | --sys-prefix] [--name NAME] [--display-name TEXT]
             write the kernelspec (default: the user's Jupyter data dir, name "loralab")
  list       list installed loralab kernelspecs (searches JUPYTER_PATH, the user and system dirs)
  uninstall  [--name NAME] [--user | --prefix DIR | --sys-prefix]
  start      --connection-file FILE   run the kernel (Jupyter calls this through the kernelspec)`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === "--help" || sub === "-h") {
    process.stdout.write(HELP + "\n");
    return sub ? 0 : 2;
  }
  if (sub === "start") {
    // Jupyter passes the connection file either as an option or, like ipykernel's `-f`, positionally.
    const file = rest[0] === "--connection-file" || rest[0] === "-f" ? rest[1] : rest[0]?.replace(/^--connection-file=/, "");
    if (!file) throw new LoralabError("start: missing --connection-file FILE");
    const { startKernel } = await import("../../../kernel/main.js");
    await startKernel(file);
    return await new Promise<number>(() => {}); // the kernel runs until shutdown_request exits the process
  }
  const install = await import("../../../kernel/install.js");
  const { packageRoot } = await import("../../../kernel/main.js");
  const options = parseCommandArgs(rest, {
    user: { type: "boolean" },
    prefix: { type: "string" },
    "sys-prefix": { type: "boolean" },
    name: { type: "string" },
    "display-name": { type: "string" },
  }, HELP);
  if (!options) return 0;
  const target = { user: Boolean(options.user), prefix: options.prefix as string | undefined, sysPrefix: Boolean(options["sys-prefix"]) };
  if ([target.user, target.prefix !== undefined, target.sysPrefix].filter(Boolean).length > 1) throw new LoralabError("give only one of --user, --prefix, --sys-prefix");
  const name = (options.name as string | undefined) ?? "loralab";
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new LoralabError(`--name '${name}' may only use letters, digits, '.', '_' and '-'`);
  try {
    if (sub === "install") {
      const dir = install.installKernelSpec(packageRoot(), { ...target, name, displayName: options["display-name"] as string | undefined });
      process.stdout.write(`installed kernelspec ${name} in ${dir}\n`);
      return 0;
    }
    if (sub === "list") {
      const specs = install.listKernelSpecs();
      if (!specs.length) process.stdout.write("no loralab kernelspecs installed\n");
      for (const s of specs) process.stdout.write(`${s.name.padEnd(20)} ${s.dir}\n`);
      return 0;
    }
    if (sub === "uninstall") {
      const removed = install.uninstallKernelSpec(name, target);
      if (!removed.length) throw new LoralabError(`uninstall: no loralab kernelspec named '${name}' found`);
      for (const dir of removed) process.stdout.write(`removed ${dir}\n`);
      return 0;
    }
  } catch (e) {
    if (isLoralabError(e)) throw e;
    throw new LoralabError(`${sub}: ${(e as Error).message}`);
  }
  throw new LoralabError(`unknown subcommand '${sub}'\n${HELP}`);
}
