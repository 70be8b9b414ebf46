/** Runs TypeScript cells: type-check against the earlier cells, transform (see transform.ts), run as a
 * vm.Script in the kernel's own global scope (so values cross into library code with no realm
 * boundary) with `breakOnSigint`, and map errors back to the cell. TypeScript is loaded on first use. */
import { existsSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import vm from "node:vm";
import type * as TS from "typescript";
import { SLOT } from "./interrupt-state.js";
import { SourceMap } from "./sourcemap.js";
import { INTERRUPT_CHECK, transformCell } from "./transform.js";
import { runtimeErrorContent, typeErrorContent, type CellRecord, type ErrorContent } from "./traceback.js";
import { typescript, saveTypeScriptCodeCache } from "./ts-loader.js";
import { NotebookTypes } from "./typecheck.js";

export class CellError extends Error {
  constructor(readonly content: ErrorContent) {
    super(content.evalue);
  }
}

export class InterruptedError extends Error {
  override name = "Interrupted";
  constructor(readonly via = "") {
    super("the cell was interrupted");
    if (process.env.LORALAB_KERNEL_DEBUG) writeSync(2, `[loralab kernel] interrupted via ${via}\n`);
  }
}

export interface ExecuteOptions {
  label: string;
  signal: AbortSignal;
  /** Skip the type check (user_expressions, or cells the user opted out of checking). */
  typecheck?: boolean;
}

export class Executor {
  private ts?: typeof TS;
  private types?: NotebookTypes;
  private loading?: Promise<void>;
  private readonly cells = new Map<string, CellRecord>();
  private serial = 0;

  constructor(
    private readonly notebookDir: string,
    private readonly kernelRoot: string,
    private readonly interruptFlag: Int32Array,
  ) {
    const g = globalThis as Record<string, unknown>;
    Object.defineProperty(g, INTERRUPT_CHECK, {
      value: () => {
        if (Atomics.load(interruptFlag, SLOT.LOOP_FLAG) !== 0) throw new InterruptedError("loop check");
      },
      enumerable: false,
    });
    g.require = createRequire(join(notebookDir, "notebook.cjs"));
  }

  /** Loads TypeScript and builds the light checker (lib files only, a fraction of a second), enough
   * for cells that need no @types/node; later calls return at once. */
  load(): Promise<void> {
    this.loading ??= (async () => {
      this.ts = await loadTypeScript();
      this.types = new NotebookTypes(this.ts, this.notebookDir, this.kernelRoot);
      this.types.warmLight();
    })();
    return this.loading;
  }

  /** Builds the full checker (with @types/node: seconds), synchronously; meant for idle time. */
  warmFull(): void {
    this.types?.warmFull();
    saveTypeScriptCodeCache();
  }

  get fullyWarm(): boolean {
    return this.types?.fullReady ?? false;
  }

  async typesReady(): Promise<NotebookTypes> {
    await this.load();
    return this.types!;
  }

  /** Resolves `loralab` to the kernel's own package when the notebook directory does not install it. */
  private rewriteSpecifier = (spec: string): string => {
    if (spec !== "loralab" && !spec.startsWith("loralab/")) return spec;
    if (existsSync(join(this.notebookDir, "node_modules/loralab"))) return spec;
    try {
      return import.meta.resolve(spec);
    } catch {
      return spec;
    }
  };

  /** Runs a cell; resolves to `[value]` when the cell ends in an expression, else undefined. */
  async execute(code: string, options: ExecuteOptions): Promise<[unknown] | undefined> {
    await this.load();
    const ts = this.ts!;
    if (options.typecheck !== false) {
      const diagnostics = this.types!.check(code);
      if (diagnostics.length) throw new CellError(typeErrorContent(options.label, code, diagnostics));
    }
    const filename = join(this.notebookDir, `__cell_${++this.serial}__.ts`);
    const cell = transformCell(ts, code, filename, this.rewriteSpecifier);
    if (cell.syntaxErrors.length) {
      const d = cell.syntaxErrors[0];
      throw new CellError(typeErrorContent(options.label, code, [{ code: d.code, message: ts.flattenDiagnosticMessageText(d.messageText, "\n"), start: d.start ?? 0, length: d.length ?? 0 }]));
    }
    this.cells.set(filename, { label: options.label, code, map: new SourceMap(JSON.parse(cell.sourceMap).mappings) });
    if (options.typecheck !== false) this.types!.commit(code);

    let running: Promise<[unknown] | undefined>;
    try {
      const script = new vm.Script(cell.js, { filename, importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER as never });
      Atomics.store(this.interruptFlag, SLOT.IN_SCRIPT, 1);
      try {
        running = script.runInThisContext({ breakOnSigint: true, displayErrors: false }) as Promise<[unknown] | undefined>;
      } finally {
        Atomics.store(this.interruptFlag, SLOT.IN_SCRIPT, 0);
      }
    } catch (e) {
      throw this.toCellError((e as { code?: string }).code === "ERR_SCRIPT_EXECUTION_INTERRUPTED" ? new InterruptedError("breakOnSigint") : e);
    }
    return this.settle(running, options.signal);
  }

  /** Awaits a value the cell produced (its completion, an async display bundle); an interrupt rejects
   * even while it never settles. Errors come back as CellError. */
  async settle<T>(value: T | Promise<T>, signal: AbortSignal): Promise<T> {
    if (!(value instanceof Promise)) return value;
    let onAbort = () => {};
    const interrupted = new Promise<never>((_, reject) => {
      onAbort = () => reject(new InterruptedError("abort signal"));
      if (signal.aborted) reject(new InterruptedError("aborted before start"));
      else signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([value, interrupted]);
    } catch (e) {
      throw this.toCellError(e);
    } finally {
      signal.removeEventListener("abort", onAbort); // one request may settle many values
    }
  }

  toCellError(e: unknown): CellError {
    if (e instanceof InterruptedError) return new CellError({ ename: "Interrupted", evalue: "the cell was interrupted", traceback: ["\x1b[31m\x1b[1mInterrupted\x1b[0m: the cell was interrupted (kernel state is kept)"] });
    return new CellError(runtimeErrorContent(e, this.cells));
  }
}

/** The `typescript` module (see ts-loader.ts). */
export async function loadTypeScript(): Promise<typeof TS> {
  return typescript();
}
