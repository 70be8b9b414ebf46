/** `--plot DIR` of merge, quantize, bench, compare and ppl: saves the result's plots as files. */
import { mkdir } from "node:fs/promises";
import { LoralabError } from "../errors.js";
import type { Plot } from "../plot/plot.js";

/** The --plot help lines, the description starting at column `column` like the command's other options. */
export function plotHelp(plots: string, column = 23): string {
  const pad = " ".repeat(column);
  return [
    "  --plot DIR".padEnd(column) + "also save the result's plots into DIR (created if missing) as <name>.svg,",
    `${pad}<name>.png (needs rsvg-convert, Debian librsvg2-bin) and <name>.vl.json (Vega-Lite);`,
    `${pad}plots: ${plots}`,
  ].join("\n");
}

/** Creates DIR before the work starts, so that a bad path fails at once rather than after a long run. */
export async function preparePlotDir(dir: string | undefined): Promise<void> {
  if (dir === undefined) return;
  if (dir === "") throw new LoralabError("--plot needs a directory");
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new LoralabError(`--plot ${dir}: cannot create the directory: ${(e as Error).message}`, { cause: e });
  }
}

/** Saves the plots (the plotting libraries load only here) and lists the files on stderr. Without
 * rsvg-convert the PNGs are left out with a warning; SVG and the spec are always written. */
export async function savePlotOption(dir: string | undefined, plots: () => Promise<Plot[]>): Promise<string[]> {
  if (dir === undefined) return [];
  const { savePlots, pngRasterizer } = await import("../plot/index.js");
  const list = await plots();
  const png = pngRasterizer() !== null;
  if (!png) process.stderr.write("loralab: rsvg-convert is not on PATH (Debian package librsvg2-bin): plots saved as SVG and Vega-Lite JSON only, no PNG\n");
  const written = await savePlots(dir, list, { formats: png ? ["svg", "png", "vl.json"] : ["svg", "vl.json"] });
  process.stderr.write(`plots: ${written.join(", ")}\n`);
  return written;
}
