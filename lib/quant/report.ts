/** The result of `quantizeModel`: per-module numbers, skipped modules, sizes and timings; JSON for the
 * CLI, and a table with the error plots for Jupyter (`Symbol.for("Jupyter.display")`). */
import { isAbsolute, relative } from "node:path";
import { lazyDisplay, type ResultBundle } from "../plot/display-cache.js";

export interface ModuleReport {
  module: string;
  /** [out, in] */
  shape: [number, number];
  bits: number;
  groupSize: number;
  /** ‖W − Ŵ‖ / ‖W‖ (AWQ: in the scaled basis, against the scaled weight before clipping) */
  relError: number;
  /** GPTQ: Σ (w − q)²/Hinv_ii²/2; AWQ: output MSE of the module's scaling group at the chosen scale; RTN: null */
  loss: number | null;
  seconds: number;
}

export interface SkippedModule {
  module: string;
  shape: [number, number];
  reason: string;
}

export interface QuantReportData {
  model: string;
  out: string;
  method: string;
  format: string;
  bits: number;
  groupSize: number;
  sym: boolean;
  descAct: boolean;
  damp: number | null;
  /** GPTQ: how the Hessians were summed ("int" or "float32"); null for other methods */
  hessian: string | null;
  calibration: { file: string; samples: number; seqLen: number; seed: number; tokens: number } | null;
  modules: ModuleReport[];
  skipped: SkippedModule[];
  bytesBefore: number;
  bytesAfter: number;
  seconds: number;
}

export class QuantReport implements QuantReportData {
  model!: string;
  out!: string;
  method!: string;
  format!: string;
  bits!: number;
  groupSize!: number;
  sym!: boolean;
  descAct!: boolean;
  damp!: number | null;
  hessian!: string | null;
  calibration!: QuantReportData["calibration"];
  modules!: ModuleReport[];
  skipped!: SkippedModule[];
  bytesBefore!: number;
  bytesAfter!: number;
  seconds!: number;

  constructor(data: QuantReportData) {
    Object.assign(this, data);
  }

  toJSON(): QuantReportData {
    return { ...this };
  }

  /** A few lines for the terminal. */
  summary(): string {
    const mean = this.modules.length ? this.modules.reduce((a, m) => a + m.relError, 0) / this.modules.length : 0;
    const lines = [
      `${this.method} ${this.bits}-bit g${this.groupSize}${this.sym ? " sym" : " asym"} → ${this.format}: ${shownPath(this.out)}`,
      `${this.modules.length} modules quantized (mean ‖W−Ŵ‖/‖W‖ ${mean.toExponential(3)}), ${this.skipped.length} kept in full precision`,
      `${fmtBytes(this.bytesBefore)} → ${fmtBytes(this.bytesAfter)} in ${this.seconds.toFixed(2)} s`,
    ];
    for (const s of dedupeReasons(this.skipped)) lines.push(`  not quantized: ${s}`);
    return lines.join("\n");
  }

  /** Table + relative weight error (and GPTQ/AWQ loss) per module, built in report-display.ts: a Promise
   * the first time, the bundle once built; the plotting code loads only when displayed. */
  [Symbol.for("Jupyter.display")](): ResultBundle | Promise<ResultBundle> {
    return lazyDisplay(this, () => import("./report-display.js").then((m) => m.quantReportBundle(this)));
  }
}

function dedupeReasons(skipped: SkippedModule[]): string[] {
  const byReason = new Map<string, string[]>();
  for (const s of skipped) {
    const rel = s.module.replace(/^model\.layers\.\d+\./, "");
    const list = byReason.get(`${rel}: ${s.reason}`) ?? [];
    list.push(s.module);
    byReason.set(`${rel}: ${s.reason}`, list);
  }
  return [...byReason].map(([r, l]) => `${r} (${l.length}×)`);
}

export function fmtBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

/** The output folder as shown to people: relative to the working directory when inside it (notebooks keep
 * machine paths out of their committed outputs), absolute otherwise. The JSON keeps the absolute path. */
function shownPath(out: string): string {
  const rel = relative(process.cwd(), out);
  return rel && !rel.startsWith("..") && !isAbsolute(rel) ? rel : out;
}
