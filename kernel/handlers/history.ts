/** history_request over the cells of this kernel session (kept in memory, like a fresh IPython session). */
import type { Handler } from "../kernelbase.js";

interface Entry {
  line: number;
  input: string;
  output: string | null;
}

const SESSION = 1;

export class History {
  private readonly entries: Entry[] = [];

  add(line: number, input: string): void {
    this.entries.push({ line, input, output: null });
  }

  setOutput(line: number, output: string): void {
    const e = this.entries.findLast((x) => x.line === line);
    if (e) e.output = output;
  }

  query(c: { hist_access_type: string; output?: boolean; n?: number; session?: number; start?: number; stop?: number; pattern?: string; unique?: boolean }): unknown[] {
    let picked: Entry[];
    if (c.hist_access_type === "tail") {
      picked = this.entries.slice(-(c.n ?? 10));
    } else if (c.hist_access_type === "range") {
      const session = c.session ?? 0;
      if (session > 0 && session !== SESSION) return [];
      const start = c.start ?? 0;
      const stop = c.stop ?? Number.POSITIVE_INFINITY;
      picked = this.entries.filter((e) => e.line >= start && e.line < stop);
    } else if (c.hist_access_type === "search") {
      const re = globToRegExp(c.pattern ?? "*");
      picked = this.entries.filter((e) => re.test(e.input));
      if (c.unique) {
        const seen = new Set<string>();
        picked = picked.reverse().filter((e) => !seen.has(e.input) && seen.add(e.input)).reverse();
      }
      if (c.n) picked = picked.slice(-c.n);
    } else {
      picked = [];
    }
    return picked.map((e) => [SESSION, e.line, c.output ? [e.input, e.output] : e.input]);
  }
}

/** sqlite GLOB semantics, as IPython's history search uses: `*`, `?` and `[...]`, case-sensitive. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i];
    if (ch === "*") re += "[\\s\\S]*";
    else if (ch === "?") re += "[\\s\\S]";
    else if (ch === "[") {
      const end = glob.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        re += `[${glob.slice(i + 1, end).replace(/^\^/, "^").replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else re += ch.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

export const historyRequest: Handler = async (kernel, ctx) => ({ status: "ok", history: kernel.history.query(ctx.msg.content as never) });
