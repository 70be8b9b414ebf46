import { lazyDisplay, type ResultBundle } from "../plot/display-cache.js";
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
