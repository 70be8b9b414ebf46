import { formatNumber, textTable } from "./format.js";
import { JUPYTER_DISPLAY } from "./plot.js";

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** A piece of HTML that is safe to insert as it is (built by the helpers here, which escape all data).
 * It displays itself in a notebook as text/html, with a text/plain fallback. */
export class HtmlFragment {
  constructor(readonly html: string, readonly text: string) {}

  toString(): string {
    return this.html;
  }

  [JUPYTER_DISPLAY](): { "text/html": string; "text/plain": string } {
    return { "text/html": this.html, "text/plain": this.text };
  }
}

/** Wraps HTML the caller vouches for (no escaping). Prefer `htmlTable` and plain strings in reports. */
export function trustedHtml(html: string, text = html.replace(/<[^>]*>/g, "")): HtmlFragment {
  return new HtmlFragment(html, text);
}

export interface TableColumn {
  /** Property of each row. */
  key: string;
  /** Header text (default: the key). */
  label?: string;
  /** Cell text (default: numbers with 4 significant digits, null/undefined empty, anything else String()). */
  format?: (value: unknown, row: Record<string, unknown>) => string;
  /** Default: right for numbers, left otherwise. */
  align?: "left" | "right";
}

export interface TableOptions {
  /** Which columns, in order (default: the keys of the first row). */
  columns?: (string | TableColumn)[];
  caption?: string;
}

function defaultFormat(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return formatNumber(value);
  return String(value);
}

/** An HTML table of result rows; every header, cell and the caption is escaped. */
export function htmlTable(rows: Record<string, unknown>[], opts: TableOptions = {}): HtmlFragment {
  const columns: TableColumn[] = (opts.columns ?? Object.keys(rows[0] ?? {})).map((c) => (typeof c === "string" ? { key: c } : c));
  const cells = rows.map((row) => columns.map((c) => (c.format ?? defaultFormat)(row[c.key], row)));
  const align = columns.map((c) => c.align ?? (rows.some((r) => typeof r[c.key] === "number") ? "right" : "left"));
  const th = columns.map((c, i) => `<th style="text-align:${align[i]}">${escapeHtml(c.label ?? c.key)}</th>`).join("");
  const body = cells.map((row) => `<tr>${row.map((cell, i) => `<td style="text-align:${align[i]}">${escapeHtml(cell)}</td>`).join("")}</tr>`).join("\n");
  const caption = opts.caption ? `<caption>${escapeHtml(opts.caption)}</caption>` : "";
  const html = `<table class="loralab-table">${caption}<thead><tr>${th}</tr></thead>\n<tbody>\n${body}\n</tbody></table>`;
  const text = (opts.caption ? `${opts.caption}\n` : "") + textTable(columns.map((c) => c.label ?? c.key), cells);
  return new HtmlFragment(html, text);
}
