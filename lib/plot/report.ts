import { writeFile } from "node:fs/promises";
import { AtomicOutputDir } from "../io/output-dir.js";
import type { LongTaskOptions } from "../progress.js";
import { LoralabError } from "../errors.js";
import { escapeHtml, HtmlFragment } from "./html.js";
import { Plot, savePlots, type PlotFormat } from "./plot.js";

/** A report section's content, in order: a string is a paragraph (escaped), an HtmlFragment (e.g. from
 * `htmlTable`) is inserted as it is, a Plot is embedded as inline SVG with its text as a caption. */
export type ReportContent = string | HtmlFragment | Plot;

export interface ReportSection {
  title: string;
  content: ReportContent[];
}

export interface ReportOptions {
  title: string;
  /** Shown under the title (escaped), e.g. the command line or the model paths. */
  subtitle?: string;
}

const STYLE = `body{font-family:sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.subtitle{color:#555}figure{margin:1em 0;overflow-x:auto}figcaption{font-size:.85em;color:#555}
figcaption pre{margin:.3em 0}table.loralab-table{border-collapse:collapse;margin:1em 0;font-size:.9em}
table.loralab-table th,table.loralab-table td{border:1px solid #ccc;padding:.25em .6em}
table.loralab-table thead{background:#f4f4f4}table.loralab-table caption{text-align:left;font-weight:bold;padding:.3em 0}`;

/** Gives the ids inside one SVG a unique prefix, so that several inline SVGs in one page cannot clash. */
function scopeSvgIds(svg: string, prefix: string): string {
  return svg.replace(/\bid="([^"]+)"/g, `id="${prefix}$1"`).replace(/url\(#([^)]+)\)/g, `url(#${prefix}$1)`).replace(/href="#([^"]+)"/g, `href="#${prefix}$1"`);
}

/** Renders content items to HTML; `figure` numbers the plots (after `prefix`) so that their SVG ids stay
 * unique in a page. */
async function contentHtml(items: ReportContent[], figure: { prefix: string; n: number }, captions = true): Promise<string[]> {
  const parts: string[] = [];
  for (const item of items) {
    if (typeof item === "string") parts.push(`<p>${escapeHtml(item)}</p>`);
    else if (item instanceof HtmlFragment) parts.push(item.html);
    else {
      figure.n++;
      const id = `${figure.prefix}f${figure.n}-`;
      const svg = scopeSvgIds(await item.svg(), id);
      const caption = captions ? `\n<figcaption><pre>${escapeHtml(item.text)}</pre></figcaption>` : "";
      parts.push(`<figure id="${id}${escapeHtml(item.name)}">\n${svg}${caption}\n</figure>`);
    }
  }
  return parts;
}

let composed = 0;

/** Tables, paragraphs and plots (as inline SVG) in one HtmlFragment, e.g. for a result's notebook display
 * (a single output can carry only one text/html). `captions: false` leaves out the plots' text captions
 * (when a table beside them already gives the numbers). */
export async function composeHtml(items: ReportContent[], opts: { captions?: boolean } = {}): Promise<HtmlFragment> {
  // a distinct prefix per fragment: several fragments end up in one notebook page
  const figure = { prefix: `r${++composed}-`, n: 0 };
  const text = items.map((i) => (typeof i === "string" ? i : i.text)).join("\n\n");
  return new HtmlFragment(`<div class="loralab-result">\n${(await contentHtml(items, figure, opts.captions ?? true)).join("\n")}\n</div>`, text);
}

/** A self-contained HTML page (inline CSS and SVG, no scripts, no external resources). */
export async function reportHtml(sections: ReportSection[], opts: ReportOptions): Promise<string> {
  const parts: string[] = [];
  const figure = { prefix: "", n: 0 };
  for (const section of sections) {
    parts.push(`<section>\n<h2>${escapeHtml(section.title)}</h2>`, ...(await contentHtml(section.content, figure)), "</section>");
  }
  const subtitle = opts.subtitle ? `<p class="subtitle">${escapeHtml(opts.subtitle)}</p>\n` : "";
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(opts.title)}</title>
<style>
${STYLE}
</style>
</head>
<body>
<h1>${escapeHtml(opts.title)}</h1>
${subtitle}${parts.join("\n")}
</body>
</html>
`;
}

export interface WriteReportOptions extends ReportOptions, LongTaskOptions {
  overwrite?: boolean;
  /** Formats each plot is also saved in under `plots/` (default svg and vl.json; "png" needs rsvg-convert). */
  plotFormats?: PlotFormat[];
  /** Further files to write beside report.html, e.g. `{ "results.json": JSON.stringify(results) }`. */
  files?: Record<string, string | Uint8Array>;
}

/** Writes `out/report.html`, each plot as `out/plots/<name>.<format>` and the extra files, atomically
 * (the folder appears complete or not at all). Returns the paths written, relative to `out`. */
export async function writeReport(out: string, sections: ReportSection[], opts: WriteReportOptions): Promise<string[]> {
  const plots = sections.flatMap((s) => s.content.filter((c): c is Plot => c instanceof Plot));
  for (const name of Object.keys(opts.files ?? {}))
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name === "report.html" || name === "plots")
      throw new LoralabError(`report file name '${name}' must be a plain file name (letters, digits, '.', '_', '-') other than report.html and plots`);
  return AtomicOutputDir.write(out, { overwrite: opts.overwrite }, async (dir) => {
    const saved = await savePlots(dir.file("plots"), plots, { formats: opts.plotFormats, signal: opts.signal, onProgress: opts.onProgress });
    const written = saved.map((p) => p.slice(dir.path.length + 1));
    for (const [name, content] of Object.entries(opts.files ?? {})) {
      await writeFile(dir.file(name), content);
      written.push(name);
    }
    await writeFile(dir.file("report.html"), await reportHtml(sections, opts));
    written.push("report.html");
    return written;
  });
}
