import { lazyDisplay, type ResultBundle } from "../plot/display-cache.js";
import { escapeHtml } from "../plot/html.js";
import { JUPYTER_DISPLAY } from "../plot/plot.js";

/** Summary of repeated measurements: the median and the spread around it. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  /** interquartile range */
  iqr: number;
  n: number;
}

/** Linear-interpolated percentile (q in 0..100) of unsorted values. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = ((s.length - 1) * q) / 100;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export function summarize(values: readonly number[]): Summary {
  return {
    median: percentile(values, 50),
    min: values.length ? Math.min(...values) : NaN,
    max: values.length ? Math.max(...values) : NaN,
    iqr: percentile(values, 75) - percentile(values, 25),
    n: values.length,
  };
}


export interface Displayable {
  /** The result's MIME bundle (table + plots): a Promise the first time, the bundle once built. */
  [JUPYTER_DISPLAY](): ResultBundle | Promise<ResultBundle>;
}

/** Adds the kernel's rich-display hook to a result (a symbol key: JSON.stringify leaves it out). The
 * bundle is built once, on the first display. */
export function withDisplay<T extends object>(result: T, build: (r: T) => Promise<ResultBundle>): T & Displayable {
  Object.defineProperty(result, JUPYTER_DISPLAY, {
    value: () => lazyDisplay(result, () => build(result)),
    enumerable: false,
  });
  return result as T & Displayable;
}

/** A plain-text and an HTML table from the same rows. */
export function tables(header: string[], rows: string[][]): { html: string; text: string } {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  const text = [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
  const html = `<table><thead><tr>${header.map((h) => `<th>${escapeHtml(h)}</th>`).join("")}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c, i) => `<td style="text-align:${i ? "right" : "left"}">${escapeHtml(c)}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
  return { html, text };
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) { n /= 1024; u++; }
  return `${n.toFixed(u ? 1 : 0)} ${units[u]}`;
}
