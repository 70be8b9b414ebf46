import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { TopLevelSpec } from "vega-lite";
import { LoralabError, throwIfAborted } from "../errors.js";
import type { LongTaskOptions } from "../progress.js";
import { pngRasterizer, renderSvg, svgToPng } from "./render.js";

export const VEGALITE_MIME = "application/vnd.vegalite.v5+json";
export const VEGALITE_SCHEMA_URL = "https://vega.github.io/schema/vega-lite/v5.json";
/** The method name the loralab kernel (and Deno's) calls to display an object richly. */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display");

/** What a notebook frontend receives: JupyterLab renders the Vega-Lite spec natively, classic viewers and
 * GitHub show the SVG, terminals the text. */
export interface MimeBundle {
  "application/vnd.vegalite.v5+json": TopLevelSpec;
  "image/svg+xml": string;
  "text/plain": string;
}

export type PlotFormat = "svg" | "png" | "vl.json";

export interface SaveOptions {
  /** Files to write (default svg and vl.json); "png" needs rsvg-convert (see `pngRasterizer`). */
  formats?: PlotFormat[];
  /** PNG pixels per SVG pixel (default 2). */
  pngScale?: number;
}

/** One chart: a Vega-Lite 5 spec with its data inline, rendered to SVG on demand (once; cached). */
export class Plot {
  private svgPromise?: Promise<string>;
  private svgText?: string;

  /** `name` is a file-name-safe id (used by `save` and reports), `text` the text/plain summary. */
  constructor(readonly name: string, readonly spec: TopLevelSpec, readonly text: string) {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new LoralabError(`plot name '${name}' must use only letters, digits, '.', '_' and '-'`);
  }

  get title(): string {
    const t = (this.spec as { title?: unknown }).title;
    return typeof t === "string" ? t : typeof (t as { text?: unknown })?.text === "string" ? (t as { text: string }).text : this.name;
  }

  /** The SVG, rendered server-side by vega at the first call and cached. */
  svg(): Promise<string> {
    this.svgPromise ??= renderSvg(this.spec).then((svg) => (this.svgText = svg));
    return this.svgPromise;
  }

  /** Renders now so that the Jupyter display method can answer synchronously; returns the plot. */
  async render(): Promise<this> {
    await this.svg();
    return this;
  }

  /** PNG bytes rasterized from the SVG by rsvg-convert; a LoralabError when it is not installed. */
  async png(scale = 2): Promise<Buffer> {
    return svgToPng(await this.svg(), scale);
  }

  async bundle(): Promise<MimeBundle> {
    return this.bundleOf(await this.svg());
  }

  /** The MIME bundle: synchronously once the plot has been rendered (`await plot.render()`), else a Promise
   * of it (the loralab kernel awaits it). */
  [JUPYTER_DISPLAY](): MimeBundle | Promise<MimeBundle> {
    return this.svgText !== undefined ? this.bundleOf(this.svgText) : this.bundle();
  }

  toString(): string {
    return this.text;
  }

  /** Writes `<name>.svg` / `.vl.json` / `.png` into `dir` (created if missing), each file atomically
   * (temporary name, then rename). Returns the paths written. */
  async save(dir: string, name = this.name, opts: SaveOptions = {}): Promise<string[]> {
    const formats = opts.formats ?? ["svg", "vl.json"];
    if (formats.includes("png") && !pngRasterizer())
      throw new LoralabError(`cannot save ${join(dir, name)}.png: PNG output needs rsvg-convert (Debian package librsvg2-bin)`);
    await mkdir(dir, { recursive: true });
    const written: string[] = [];
    for (const format of formats) {
      const content = format === "svg" ? await this.svg() : format === "png" ? await this.png(opts.pngScale) : JSON.stringify(this.spec, null, 1);
      written.push(await writeAtomically(join(dir, `${name}.${format}`), content));
    }
    return written;
  }

  private bundleOf(svg: string): MimeBundle {
    return { [VEGALITE_MIME]: this.spec, "image/svg+xml": svg, "text/plain": this.text } as MimeBundle;
  }
}

async function writeAtomically(path: string, content: string | Uint8Array): Promise<string> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    await writeFile(tmp, content);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new LoralabError(`cannot write plot ${path}: ${(e as Error).message}`, { cause: e });
  }
  return path;
}

/** Saves each plot into `dir` under its name (a repeated name gets `-2`, `-3`, ...), e.g. for a CLI
 * `--plot DIR`. Returns the paths written. */
export async function savePlots(dir: string, plots: Plot[], opts: SaveOptions & LongTaskOptions = {}): Promise<string[]> {
  const used = new Map<string, number>();
  const written: string[] = [];
  for (const [i, plot] of plots.entries()) {
    throwIfAborted(opts.signal);
    const n = (used.get(plot.name) ?? 0) + 1;
    used.set(plot.name, n);
    written.push(...(await plot.save(dir, n === 1 ? plot.name : `${plot.name}-${n}`, opts)));
    opts.onProgress?.({ phase: "plots", done: i + 1, total: plots.length, unit: "plots", label: plot.name });
  }
  return written;
}

/** Renders plots one after another, so that each one's Jupyter display method answers synchronously. */
export async function renderAll(plots: Iterable<Plot>): Promise<void> {
  for (const p of plots) await p.render();
}
