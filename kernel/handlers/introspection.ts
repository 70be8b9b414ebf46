/** complete_request, inspect_request (TypeScript language service) and is_complete_request (parser). */
import type * as TS from "typescript";
import { loadTypeScript } from "../executor.js";
import type { Handler } from "../kernelbase.js";

/** Jupyter counts cursor positions in Unicode code points; JavaScript strings in UTF-16 units. */
export function codePointToUtf16(text: string, pos: number): number {
  let units = 0;
  let points = 0;
  for (const ch of text) {
    if (points === pos) break;
    units += ch.length;
    points++;
  }
  return units;
}

export function utf16ToCodePoint(text: string, units: number): number {
  return [...text.slice(0, units)].length;
}

export const completeRequest: Handler = async (kernel, ctx) => {
  const { code, cursor_pos } = ctx.msg.content as { code: string; cursor_pos?: number };
  const types = await kernel.executor.typesReady();
  const pos = codePointToUtf16(code, cursor_pos ?? [...code].length);
  const r = types.completions(code, pos);
  return { status: "ok", matches: r.matches, cursor_start: utf16ToCodePoint(code, r.start), cursor_end: utf16ToCodePoint(code, r.end), metadata: {} };
};

export const inspectRequest: Handler = async (kernel, ctx) => {
  const { code, cursor_pos, detail_level } = ctx.msg.content as { code: string; cursor_pos?: number; detail_level?: number };
  const types = await kernel.executor.typesReady();
  const text = types.inspect(code, codePointToUtf16(code, cursor_pos ?? [...code].length), detail_level ?? 0);
  return { status: "ok", found: text !== undefined, data: text === undefined ? {} : { "text/plain": text }, metadata: {} };
};

/** Codes of parse errors that mean "more input would fix it" even away from the end. */
const UNTERMINATED = new Set([1010 /* '*' + '/' expected */, 1160 /* unterminated template */]);

export function isComplete(ts: typeof TS, code: string): { status: string; indent?: string } {
  if (!code.trim()) return { status: "complete" };
  const out = ts.transpileModule(code, { reportDiagnostics: true, compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, moduleDetection: ts.ModuleDetectionKind.Force } });
  const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (!errors.length) return { status: "complete" };
  const end = code.trimEnd().length;
  if (errors.every((d) => UNTERMINATED.has(d.code) || (d.start ?? 0) >= end)) {
    const depth = Math.max(0, (code.match(/[{([]/g)?.length ?? 0) - (code.match(/[})\]]/g)?.length ?? 0));
    return { status: "incomplete", indent: "  ".repeat(depth) };
  }
  return { status: "invalid" };
}

export const isCompleteRequest: Handler = async (kernel, ctx) => {
  const { code } = ctx.msg.content as { code: string };
  return isComplete(await loadTypeScript(), code);
};
