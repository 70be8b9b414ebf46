import type { TopLevelSpec } from "vega-lite";
import { VEGALITE_SCHEMA_URL } from "./plot.js";

/** Properties every loralab spec starts with. Data goes into top-level `datasets` (named), which keeps the
 * spec's structure independent of its data so the renderer can reuse the compiled form. */
export function specHeader(title: string, description: string, datasets: Record<string, object[]>) {
  return {
    $schema: VEGALITE_SCHEMA_URL,
    title: chartTitle(title),
    description,
    datasets,
    config: { font: "sans-serif", view: { stroke: "#ddd" }, legend: { orient: "right" as const } },
  };
}

/** The top-level title, set apart from the titles of concatenated panels below it. */
export function chartTitle(text: string) {
  return { text, anchor: "start" as const, fontSize: 15, offset: 12 };
}

/** Shapes a spec object as a Vega-Lite top-level spec. The object is validated against the Vega-Lite 5 JSON
 * schema in the tests; typing every literal through vega-lite's deep union types would add noise only. */
export function asSpec(spec: object): TopLevelSpec {
  return spec as TopLevelSpec;
}

/** A color encoding whose order is the given series order, so series keep their colors across charts. */
export function seriesColor(field: string, title: string, domain: string[]) {
  return { field, type: "nominal" as const, title, scale: { domain }, sort: domain };
}

/** Distinct values in first-seen order. */
export function distinct<T>(values: Iterable<T>): T[] {
  return [...new Set(values)];
}
