/** Kernel entry: `loralab kernel start --connection-file F`. Starts the I/O thread (sockets) at once and
 * warms up TypeScript on the main thread meanwhile, so kernel_info is answered in ~0.2 s. */
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { readConnectionFile } from "./connection.js";
import { clearOutput, display, input, updateDisplay, widgets } from "./display-api.js";
import { commClose, commInfoRequest, commMsg, commOpen } from "./handlers/comms.js";
import { executeRequest } from "./handlers/execute.js";
import { historyRequest } from "./handlers/history.js";
import { completeRequest, inspectRequest, isCompleteRequest } from "./handlers/introspection.js";
import { createInterruptState } from "./interrupt-state.js";
import { Kernel } from "./kernelbase.js";
import { PROTOCOL_VERSION } from "./wire.js";
import { allWidgetStates } from "./widgets.js";

/** The loralab package root (holds package.json), from dist/kernel or from kernel/ under tsx. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) || JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).name !== "loralab") {
    const up = dirname(dir);
    if (up === dir) throw new Error("cannot find the loralab package root");
    dir = up;
  }
  return dir;
}

function kernelInfo(root: string): Record<string, unknown> {
  const version = (rel: string) => {
    try {
      return JSON.parse(readFileSync(join(root, rel), "utf8")).version as string;
    } catch {
      return "unknown";
    }
  };
  const tsVersion = version("node_modules/typescript/package.json");
  return {
    status: "ok",
    protocol_version: PROTOCOL_VERSION,
    implementation: "loralab",
    implementation_version: version("package.json"),
    language_info: {
      name: "typescript",
      version: tsVersion,
      mimetype: "text/typescript",
      file_extension: ".ts",
      pygments_lexer: "typescript",
      codemirror_mode: { name: "javascript", typescript: true },
    },
    banner: `loralab kernel — TypeScript ${tsVersion} on Node.js ${process.version}\nGlobals: display, updateDisplay, clearOutput, input, widgets, abortSignal`,
    help_links: [
      { text: "loralab kernel", url: "https://github.com/loralab/loralab/blob/main/docs/kernel.md" },
      { text: "TypeScript handbook", url: "https://www.typescriptlang.org/docs/handbook/intro.html" },
      { text: "Node.js API", url: "https://nodejs.org/api/" },
    ],
    debugger: false,
  };
}

export async function startKernel(connectionFile: string): Promise<void> {
  const connection = readConnectionFile(connectionFile);
  const root = packageRoot();
  const interruptFlag = createInterruptState();
  const info = kernelInfo(root);
  const io = new Worker(new URL("./io-thread.js", import.meta.url), {
    workerData: { connection, session: randomUUID(), interruptFlag, kernelInfo: info },
  });
  io.on("error", (e) => {
    process.stderr.write(`loralab kernel: I/O thread failed: ${e.stack ?? e}\n`);
    process.exit(1);
  });
  // Node's notice about vm's experimental loader (which cells use for import) is the kernel's business;
  // other warnings go to the cell's stderr.
  process.removeAllListeners("warning");
  process.on("warning", (w) => {
    if (w.name === "ExperimentalWarning" && /USE_MAIN_CONTEXT_DEFAULT_LOADER/.test(w.message)) return;
    process.stderr.write(`${w.name}: ${w.message}\n`);
  });

  const kernel = new Kernel(io, interruptFlag, process.cwd(), root);
  kernel.register("kernel_info_request", async () => info);
  kernel.register("execute_request", executeRequest);
  kernel.register("complete_request", completeRequest);
  kernel.register("inspect_request", inspectRequest);
  kernel.register("is_complete_request", isCompleteRequest);
  kernel.register("history_request", historyRequest);
  kernel.register("comm_info_request", commInfoRequest);
  kernel.register("comm_open", commOpen);
  kernel.register("comm_msg", commMsg);
  kernel.register("comm_close", commClose);
  kernel.comms.registerTarget("jupyter.widget.control", (comm) => {
    comm.onMessage((data) => {
      if (data.method === "request_states") comm.send({ method: "update_states", states: allWidgetStates(), buffer_paths: {} });
    });
  });
  kernel.install();
  Object.assign(globalThis, { display, updateDisplay, clearOutput, input, widgets });

  // Warm up TypeScript at once, while the I/O thread binds its sockets (it answers kernel_info on its
  // own, so startup stays fast): the light checker first (execute requests queue behind it), then the
  // full one with @types/node once the kernel has been idle a while: its seconds of synchronous work
  // should not hold up a first request that the light checker can answer (a frontend that runs all
  // cells sends it right after kernel_info). A cell that needs the full checker builds it at once.
  const ready = new Promise<void>((resolve) => io.once("message", () => resolve()));
  await kernel.executor.load().catch(() => undefined); // a failure surfaces in the first execute
  await ready;
  const warmFull = () => {
    if (kernel.executor.fullyWarm) return;
    const wait = FULL_WARMUP_IDLE_MS - kernel.idleMs();
    if (wait <= 0) kernel.executor.warmFull();
    else setTimeout(warmFull, Math.max(wait, 50));
  };
  setTimeout(warmFull, FULL_WARMUP_IDLE_MS);
}

/** Idle time after which the full type checker is built. */
const FULL_WARMUP_IDLE_MS = 1000;
