/** Decodes the `mappings` of a source map (v3) and maps generated line/column back to the source. */
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const DIGIT = new Map([...B64].map((c, i) => [c, i]));

interface Segment {
  genCol: number;
  srcLine: number;
  srcCol: number;
}

export class SourceMap {
  /** Per generated line (0-based), segments sorted by generated column. */
  private readonly lines: Segment[][] = [];

  constructor(mappings: string) {
    let srcLine = 0;
    let srcCol = 0;
    let srcIdx = 0;
    let name = 0;
    for (const lineText of mappings.split(";")) {
      const segs: Segment[] = [];
      let genCol = 0;
      for (const segText of lineText.split(",")) {
        if (!segText) continue;
        const f = decodeVlq(segText);
        genCol += f[0];
        if (f.length >= 4) {
          srcIdx += f[1];
          srcLine += f[2];
          srcCol += f[3];
          if (f.length >= 5) name += f[4];
          segs.push({ genCol, srcLine, srcCol });
        }
      }
      this.lines.push(segs);
    }
    void srcIdx;
    void name;
  }

  /** 0-based generated position -> 0-based source position, or undefined when the line has no mapping. */
  lookup(line: number, col: number): { line: number; col: number } | undefined {
    const segs = this.lines[line];
    if (!segs || segs.length === 0) return undefined;
    let best = segs[0];
    for (const s of segs) {
      if (s.genCol <= col) best = s;
      else break;
    }
    // Within a mapped token, keep the offset from the token start (TS maps tokens, not every column).
    const delta = best.genCol <= col ? col - best.genCol : 0;
    return { line: best.srcLine, col: best.srcCol + delta };
  }
}

function decodeVlq(text: string): number[] {
  const out: number[] = [];
  let value = 0;
  let shift = 0;
  for (const c of text) {
    const digit = DIGIT.get(c);
    if (digit === undefined) throw new Error(`bad base64 digit '${c}' in source map`);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      out.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return out;
}
