/** Lazy, cached Jupyter displays for result objects. This module imports no plotting code, so a result
 * class can use it without loading vega (≈1 s) until the result is actually displayed. */

/** What a result's `[Symbol.for("Jupyter.display")]()` returns: the seed-style HTML table with the plots
 * inline (JupyterLab shows text/html first), the plots as one Vega-Lite 5 spec and its server-side SVG
 * (for frontends that prefer them, and for files), and a terminal-readable text. The Vega-Lite and SVG
 * entries are absent only when the result has nothing to plot. */
export interface ResultBundle {
  "text/plain": string;
  "text/html": string;
  "application/vnd.vegalite.v5+json"?: object;
  "image/svg+xml"?: string;
}

const cache = new WeakMap<object, { done?: ResultBundle; pending?: Promise<ResultBundle> }>();

/** Builds `owner`'s bundle once: a Promise the first time (the loralab kernel awaits it), the bundle itself
 * once built. A failed build is not cached. */
export function lazyDisplay(owner: object, build: () => Promise<ResultBundle>): ResultBundle | Promise<ResultBundle> {
  let entry = cache.get(owner);
  if (!entry) cache.set(owner, (entry = {}));
  if (entry.done) return entry.done;
  const e = entry;
  e.pending ??= build().then(
    (bundle) => (e.done = bundle),
    (err: unknown) => {
      e.pending = undefined;
      throw err;
    },
  );
  return e.pending;
}
