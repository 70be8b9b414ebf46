/** MIME bundles for values: the display convention shared by display(), execute results and widgets. */
import { inspect } from "node:util";
import type { MimeBundle } from "./host.js";

/** Objects with this method render richly (the convention Deno's kernel uses): return a MIME bundle,
 * or a Promise of one (e.g. a plot that renders its SVG asynchronously). */
export const DISPLAY = Symbol.for("Jupyter.display");

/** The MIME bundle for a value: its `[Symbol.for("Jupyter.display")]()` bundle, else `text/plain`.
 * A Promise only when the display method returns one. A display method that throws or rejects does
 * not fail the caller: the value shows as `text/plain`, and the error is noted on stderr. */
export function mimeBundle(value: unknown): MimeBundle | Promise<MimeBundle> {
  const custom = (value as { [DISPLAY]?: () => unknown } | null | undefined)?.[DISPLAY];
  if (typeof custom !== "function") return plain(value);
  let bundle: unknown;
  try {
    bundle = custom.call(value);
  } catch (e) {
    return failed(value, e);
  }
  if (isThenable(bundle)) return Promise.resolve(bundle).then((b) => withPlainText(b, value), (e) => failed(value, e));
  return withPlainText(bundle, value);
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return (typeof x === "object" || typeof x === "function") && x !== null && typeof (x as { then?: unknown }).then === "function";
}

function withPlainText(bundle: unknown, value: unknown): MimeBundle {
  if (!bundle || typeof bundle !== "object") return plain(value);
  const b = { ...(bundle as MimeBundle) };
  if (!("text/plain" in b)) b["text/plain"] = inspect(value, { depth: 1 });
  return b;
}

function failed(value: unknown, e: unknown): MimeBundle {
  process.stderr.write(`[Symbol.for("Jupyter.display")]() failed: ${e instanceof Error ? e.message : String(e)}; showing text/plain\n`);
  return plain(value);
}

function plain(value: unknown): MimeBundle {
  return { "text/plain": typeof value === "string" ? value : inspect(value, { depth: 4, maxArrayLength: 50, breakLength: 100 }) };
}
