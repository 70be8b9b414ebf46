/** MIME bundles for values: the display convention shared by display(), execute results and widgets. */
import { inspect } from "node:util";
import type { MimeBundle } from "./host.js";

/** Objects with this method render richly (the convention Deno's kernel uses): return a MIME bundle. */
export const DISPLAY = Symbol.for("Jupyter.display");

/** The MIME bundle for a value: its `[Symbol.for("Jupyter.display")]()` bundle, else `text/plain`. */
export function mimeBundle(value: unknown): MimeBundle {
  const custom = (value as { [DISPLAY]?: () => unknown } | null | undefined)?.[DISPLAY];
  if (typeof custom === "function") {
    const bundle = custom.call(value);
    if (bundle && typeof bundle === "object") {
      const b = { ...(bundle as MimeBundle) };
      if (!("text/plain" in b)) b["text/plain"] = inspect(value, { depth: 1 });
      return b;
    }
  }
  return { "text/plain": typeof value === "string" ? value : inspect(value, { depth: 4, maxArrayLength: 50, breakLength: 100 }) };
}

