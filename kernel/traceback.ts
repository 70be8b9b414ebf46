/** Error reports for cells: stack frames in generated code are mapped back through each cell's source
 * map to "Cell In[n], line L, column C", with a code frame of the cell; kernel-internal frames are hidden. */
import { fileURLToPath } from "node:url";
import { inspect } from "node:util";
import type { SourceMap } from "./sourcemap.js";
import type { CellDiagnostic } from "./typecheck.js";

export interface ErrorContent {
  ename: string;
  evalue: string;
  traceback: string[];
}

export interface CellRecord {
  label: string;
  code: string;
  map: SourceMap;
}

const KERNEL_DIR = fileURLToPath(new URL(".", import.meta.url));
const RED = "\x1b[31m";
const BOLD = "\x1b[1m";
const RESET = "\x1b[0m";

/** A few lines of the cell around `line` (1-based) with a caret under `col` (1-based). */
export function codeFrame(code: string, line: number, col: number): string {
  const lines = code.split("\n");
  const first = Math.max(1, line - 2);
  const last = Math.min(lines.length, line + 1);
  const width = String(last).length;
  const out: string[] = [];
  for (let n = first; n <= last; n++) {
    const mark = n === line ? `${RED}---->${RESET}` : "     ";
    out.push(`${mark} ${String(n).padStart(width)} | ${lines[n - 1]}`);
    if (n === line) out.push(`      ${" ".repeat(width)} | ${" ".repeat(Math.max(0, col - 1))}${RED}^${RESET}`);
  }
  return out.join("\n");
}

function lineCol(code: string, offset: number): { line: number; col: number } {
  const before = code.slice(0, offset).split("\n");
  return { line: before.length, col: before[before.length - 1].length + 1 };
}

export function typeErrorContent(label: string, code: string, diagnostics: CellDiagnostic[]): ErrorContent {
  const traceback: string[] = [];
  for (const d of diagnostics) {
    const { line, col } = lineCol(code, d.start);
    traceback.push(`${RED}${BOLD}TSError${RESET}: Cell ${label}, line ${line}, column ${col}: error TS${d.code}: ${d.message}`, codeFrame(code, line, col));
  }
  const first = diagnostics[0];
  const { line, col } = lineCol(code, first.start);
  return { ename: "TSError", evalue: `line ${line}, column ${col}: ${first.message}${diagnostics.length > 1 ? ` (and ${diagnostics.length - 1} more)` : ""}`, traceback };
}

const FRAME = /^\s*at (?:(.*?) \()?(.*?):(\d+):(\d+)\)?$/;

/** Maps a thrown value to Jupyter's error content, with frames pointing into the cells. */
export function runtimeErrorContent(err: unknown, cells: Map<string, CellRecord>): ErrorContent {
  if (!(err instanceof Error) && !(err && typeof err === "object" && "stack" in err)) {
    return { ename: "Uncaught", evalue: inspect(err), traceback: [`${RED}${BOLD}Uncaught${RESET} ${inspect(err)}`] };
  }
  const e = err as Error;
  const ename = e.name || "Error";
  const evalue = e.message ?? "";
  const frames: string[] = [];
  let frame: string | undefined;
  for (const raw of String(e.stack ?? "").split("\n").slice(1)) {
    const m = FRAME.exec(raw);
    if (!m) continue;
    const [, fn, file, l, c] = m;
    const cell = cells.get(file);
    if (cell) {
      const pos = cell.map.lookup(Number(l) - 1, Number(c) - 1);
      if (!pos) continue;
      const where = `Cell ${cell.label}, line ${pos.line + 1}, column ${pos.col + 1}`;
      const name = fn && !/^async\b/.test(fn) && fn !== "async" ? fn.replace(/^async /, "") : "";
      frames.push(`    at ${name ? `${name} (${where})` : where}`);
      frame ??= `${where}\n${codeFrame(cell.code, pos.line + 1, pos.col + 1)}`;
    } else if (!file.replace(/^file:\/\//, "").startsWith(KERNEL_DIR) && !file.startsWith("node:vm") && !file.startsWith("node:internal/vm")) {
      frames.push(raw.replace(/^\s*/, "    "));
    }
  }
  const head = `${RED}${BOLD}${ename}${RESET}: ${evalue}`;
  return { ename, evalue, traceback: [head, ...(frame ? [frame] : []), ...frames] };
}
