import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import type * as Vega from "vega";
import type { TopLevelSpec } from "vega-lite";
import { LoralabError } from "../errors.js";

/** Parsed Vega runtimes keyed by the spec without its inline `datasets`: a plot that only changes its data
 * (a histogram re-drawn for another group size, a widget update) skips the Vega-Lite compile and Vega
 * parse and only re-runs the dataflow. */
const runtimeCache = new Map<string, Vega.Runtime>();
const RUNTIME_CACHE_SIZE = 64;

// vega + vega-lite take ~0.5 s to load: only when the first plot is rendered, not with the package
let libraries: Promise<[typeof import("vega"), typeof import("vega-lite")]> | undefined;
const loadVega = () => (libraries ??= Promise.all([import("vega"), import("vega-lite")]));

async function runtimeFor(spec: TopLevelSpec): Promise<{ runtime: Vega.Runtime; datasets: Record<string, unknown[]>; vega: typeof import("vega") }> {
  const [vega, vl] = await loadVega();
  const { datasets = {}, ...structure } = spec as TopLevelSpec & { datasets?: Record<string, unknown[]> };
  const empty = Object.fromEntries(Object.keys(datasets).map((name) => [name, []]));
  const shape = { ...structure, datasets: empty } as TopLevelSpec;
  const key = JSON.stringify(shape);
  let runtime = runtimeCache.get(key);
  if (runtime) runtimeCache.delete(key); // re-inserted below as most recently used
  else runtime = vega.parse(vl.compile(shape).spec);
  runtimeCache.set(key, runtime);
  if (runtimeCache.size > RUNTIME_CACHE_SIZE) runtimeCache.delete(runtimeCache.keys().next().value!);
  return { runtime, datasets, vega };
}

/** Renders a Vega-Lite spec to a self-contained SVG string, server-side (no browser, no canvas). Data must
 * be given inline, preferably as top-level `datasets` so the compiled spec can be reused. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const { runtime, datasets, vega } = await runtimeFor(spec);
  const view = new vega.View(runtime, { renderer: "none", logLevel: 1 /* vega.Error: keep warnings out of notebook output */ });
  try {
    // vega tags the row objects it ingests: give it copies so the plot's spec stays plain data
    for (const [name, rows] of Object.entries(datasets)) view.data(name, rows.map((r) => ({ ...(r as object) })));
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

let rasterizer: string | null | undefined;

/** The path of Debian's `rsvg-convert` (package librsvg2-bin) when it is on PATH, else null. PNG output
 * needs it: vega's own PNG path needs node-canvas, which loralab does not depend on. */
export function pngRasterizer(): string | null {
  if (rasterizer !== undefined) return rasterizer;
  rasterizer = null;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const candidate = join(dir, "rsvg-convert");
    try {
      accessSync(candidate, constants.X_OK);
      rasterizer = candidate;
      break;
    } catch {
      // not in this PATH entry
    }
  }
  return rasterizer;
}

/** Rasterizes an SVG string to PNG with rsvg-convert; `scale` multiplies the SVG's pixel size. */
export async function svgToPng(svg: string, scale = 2): Promise<Buffer> {
  const exe = pngRasterizer();
  if (!exe) throw new LoralabError("PNG output needs rsvg-convert (Debian package librsvg2-bin), which is not on PATH; SVG output works without it");
  return new Promise((resolve, reject) => {
    const child = spawn(exe, ["--format=png", `--zoom=${scale}`], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new LoralabError(`rsvg-convert failed (exit ${code}): ${Buffer.concat(err).toString().trim()}`));
    });
    child.stdin.end(svg);
  });
}
