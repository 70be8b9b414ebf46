/** `loralab/kernel`: rich display, input and widgets for notebook cells and for library code.
 * Inside the loralab kernel these publish Jupyter messages; elsewhere they fall back to the console,
 * so library code may call them unconditionally. */
import { createInterface } from "node:readline/promises";
import { inspect } from "node:util";
import { kernelHost, type MimeBundle } from "./host.js";
import { mimeBundle } from "./mime.js";
import { widgets } from "./widgets.js";

export type { MimeBundle } from "./host.js";
export { widgets };
export { DISPLAY, mimeBundle } from "./mime.js";

export interface DisplayOptions {
  /** Give the output an id to replace it later with `updateDisplay(id, ...)`. */
  displayId?: string;
  metadata?: Record<string, unknown>;
}

function show(bundle: MimeBundle | Promise<MimeBundle>, options: DisplayOptions = {}, update = false): void {
  if (bundle instanceof Promise) {
    // Rendered asynchronously: shown when ready; the kernel holds the cell's reply until then.
    const shown = bundle.then((b) => show(b, options, update)).catch((e: unknown) => {
      process.stderr.write(`display: ${e instanceof Error ? e.message : String(e)}\n`);
    });
    kernelHost()?.track?.(shown);
    return;
  }
  const host = kernelHost();
  if (host) return host.display(bundle, { displayId: options.displayId, metadata: options.metadata, update });
  const text = bundle["text/plain"];
  process.stdout.write(`${typeof text === "string" ? text : inspect(bundle)}\n`);
}

const pngBase64 = (data: Uint8Array | string) => (typeof data === "string" ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64"));

export interface Display {
  /** Shows a value: its `[Symbol.for("Jupyter.display")]()` bundle (awaited when that returns a
   * Promise; the cell's reply waits for it), else its text. */
  (value: unknown, options?: DisplayOptions): void;
  html(html: string, options?: DisplayOptions): void;
  markdown(markdown: string, options?: DisplayOptions): void;
  svg(svg: string, options?: DisplayOptions): void;
  /** PNG bytes or their base64 text. */
  png(data: Uint8Array | string, options?: DisplayOptions): void;
  jpeg(data: Uint8Array | string, options?: DisplayOptions): void;
  json(value: unknown, options?: DisplayOptions): void;
  /** A Vega-Lite v5 spec, rendered by JupyterLab. */
  vegalite(spec: Record<string, unknown>, options?: DisplayOptions): void;
  /** A ready MIME bundle, e.g. `{ "text/latex": "$x^2$" }`. */
  mime(bundle: MimeBundle, options?: DisplayOptions): void;
}

export const display: Display = Object.assign((value: unknown, options?: DisplayOptions) => show(mimeBundle(value), options), {
  html: (html: string, o?: DisplayOptions) => show({ "text/html": html, "text/plain": "<HTML>" }, o),
  markdown: (md: string, o?: DisplayOptions) => show({ "text/markdown": md, "text/plain": md }, o),
  svg: (svg: string, o?: DisplayOptions) => show({ "image/svg+xml": svg, "text/plain": "<SVG>" }, o),
  png: (data: Uint8Array | string, o?: DisplayOptions) => show({ "image/png": pngBase64(data), "text/plain": "<PNG image>" }, o),
  jpeg: (data: Uint8Array | string, o?: DisplayOptions) => show({ "image/jpeg": pngBase64(data), "text/plain": "<JPEG image>" }, o),
  json: (value: unknown, o?: DisplayOptions) => show({ "application/json": value, "text/plain": inspect(value, { depth: 4 }) }, o),
  vegalite: (spec: Record<string, unknown>, o?: DisplayOptions) =>
    show({ "application/vnd.vegalite.v5+json": spec, "text/plain": "<Vega-Lite chart>" }, o),
  mime: (bundle: MimeBundle, o?: DisplayOptions) => show({ "text/plain": "<output>", ...bundle }, o),
});

/** Replaces the output shown with `display(..., { displayId })` (an update_display_data message). */
export function updateDisplay(displayId: string, value: unknown, options: { metadata?: Record<string, unknown>; mime?: boolean } = {}): void {
  const bundle = options.mime ? { "text/plain": "<output>", ...(value as MimeBundle) } : mimeBundle(value);
  show(bundle, { displayId, metadata: options.metadata }, true);
}

/** Clears the cell's output; with `wait`, only when the next output arrives (no flicker). */
export function clearOutput(options: { wait?: boolean } = {}): void {
  kernelHost()?.clearOutput(Boolean(options.wait));
}

/** Asks the user for a line of text over the stdin channel (the terminal outside the kernel). */
export async function input(prompt = "", options: { password?: boolean } = {}): Promise<string> {
  const host = kernelHost();
  if (host) return host.input(prompt, Boolean(options.password));
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return await rl.question(prompt);
  } finally {
    rl.close();
  }
}

/** The running cell's AbortSignal inside the kernel (fires on interrupt); undefined elsewhere. */
export function abortSignal(): AbortSignal | undefined {
  return kernelHost()?.abortSignal();
}

/** True when running inside the loralab kernel. */
export function inKernel(): boolean {
  return kernelHost() !== undefined;
}

/** One progress event of a long operation (the shape loralab's `onProgress` callbacks receive). */
export interface ProgressUpdate {
  phase: string;
  done: number;
  total: number;
  unit: string;
  label?: string;
}

let progressDisplays = 0;

/** A live progress bar for a long operation: pass the returned function as its `onProgress`. In the kernel it
 * shows one output (HTML bar + text) and replaces it with update_display_data — at most every 100 ms, and at
 * every phase change and completion, so a fast loop does not flood the frontend; elsewhere it writes a line
 * per phase to stderr. */
export function progress(title = ""): (event: ProgressUpdate) => void {
  const displayId = `loralab-progress-${process.pid}-${++progressDisplays}`;
  let shown = false, phase = "", last = 0;
  return (e) => {
    const now = Date.now();
    const finished = e.done >= e.total;
    if (shown && e.phase === phase && !finished && now - last < 100) return;
    const host = kernelHost();
    if (!host) {
      if (e.phase !== phase) process.stderr.write(`${title ? `${title}: ` : ""}${e.phase}...\n`);
      phase = e.phase;
      return;
    }
    phase = e.phase;
    last = now;
    const pct = e.total > 0 ? Math.min(100, (100 * e.done) / e.total) : 0;
    const what = `${title && title !== e.phase ? `${title} — ` : ""}${e.phase}: ${e.done.toLocaleString("en-US")}/${e.total.toLocaleString("en-US")} ${e.unit}${e.label ? ` (${e.label})` : ""}`;
    const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
    const bundle = {
      "text/plain": `${what} ${pct.toFixed(0)}%`,
      "text/html": `<div><progress value="${pct.toFixed(1)}" max="100" style="width:30em"></progress> ${pct.toFixed(0)}% <code>${esc(what)}</code></div>`,
    };
    host.display(bundle, { displayId, update: shown });
    shown = true;
  };
}
