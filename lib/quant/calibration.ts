/** Calibration windows from a text file: tokenized once (the model's tokenizer, no BOS inside the
 * stream), `samples` windows at seeded random offsets, each run as its own sequence with the
 * tokenizer's BOS first when it has one (the condition the model sees at inference). */
import { readFile } from "node:fs/promises";
import { LoralabError } from "../errors.js";
import { seededRandom } from "../random.js";
import { TextTokenizer } from "../model/tokenizer.js";

export interface CalibrationOptions {
  samples: number;
  /** tokens per window, BOS included */
  seqLen: number;
  seed: number;
}


export async function readCalibrationText(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    throw new LoralabError(`cannot read calibration file ${file}: ${(e as Error).message}`);
  }
}

/** Token windows for calibration; refuses a text too short for `samples` non-overlapping windows. */
export function calibrationWindows(tok: TextTokenizer, text: string, file: string, opts: CalibrationOptions): number[][] {
  const { samples, seqLen, seed } = opts;
  if (!(Number.isInteger(samples) && samples >= 1)) throw new LoralabError(`--calib-samples must be a positive integer, got ${samples}`);
  if (!(Number.isInteger(seqLen) && seqLen >= 2)) throw new LoralabError(`--seq-len must be an integer ≥ 2, got ${seqLen}`);
  const bos = tok.bosId;
  const body = bos === null ? seqLen : seqLen - 1;
  const stream = tok.encode(text, { bos: false });
  const need = samples * body;
  if (stream.length < need)
    throw new LoralabError(`calibration file ${file} is too short: ${stream.length} tokens, but ${samples} samples × ${body} tokens need ${need} (lower --calib-samples or --seq-len, or give a longer text)`);
  const random = seededRandom(seed);
  const windows: number[][] = [];
  for (let i = 0; i < samples; i++) {
    const start = Math.floor(random() * (stream.length - body + 1));
    const w = stream.slice(start, start + body);
    windows.push(bos === null ? w : [bos, ...w]);
  }
  return windows;
}
