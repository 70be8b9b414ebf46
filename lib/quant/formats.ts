/** What each output format can express, checked before any long work (bits/group/sym per format) and
 * per module (shapes that a layout cannot pack stay unquantized and are reported). */
import { LoralabError } from "../errors.js";
import { isMatMulNBitsBlock } from "./pack.js";
import { SUPPORTED_BITS } from "./quantizer.js";

export const FORMATS = ["gptq", "awq", "onnx", "gguf", "dequantized"] as const;
export type Format = (typeof FORMATS)[number];
export const METHODS = ["rtn", "gptq", "awq"] as const;
export type Method = (typeof METHODS)[number];

export function parseFormat(s: string | undefined): Format {
  if (!s) throw new LoralabError("missing required option --format (gptq, awq, onnx or gguf)");
  if (!(FORMATS as readonly string[]).includes(s)) throw new LoralabError(`--format must be gptq, awq, onnx or gguf, got '${s}'`);
  return s as Format;
}

export function parseMethod(s: string | undefined): Method {
  if (!s) throw new LoralabError("missing required option --method (rtn, gptq or awq)");
  if (!(METHODS as readonly string[]).includes(s)) throw new LoralabError(`--method must be rtn, gptq or awq, got '${s}'`);
  return s as Method;
}

/** Refuses method/format/bits/group/sym combinations a format cannot express. */
export function checkCombination(method: Method, format: Format, bits: number, groupSize: number, sym: boolean): void {
  if (!(SUPPORTED_BITS as readonly number[]).includes(bits)) throw new LoralabError(`--bits must be one of ${SUPPORTED_BITS.join(", ")}, got ${bits}`);
  if (!(groupSize === -1 || (Number.isInteger(groupSize) && groupSize > 0))) throw new LoralabError(`--group-size must be -1 or a positive integer, got ${groupSize}`);
  if (method === "awq" && sym) throw new LoralabError("--method awq quantizes with asymmetric min-max groups (SPEC §6); drop --sym");
  switch (format) {
    case "awq":
      if (bits !== 4) throw new LoralabError(`--format awq (AutoAWQ GEMM) holds 4-bit weights only, got --bits ${bits}`);
      break;
    case "onnx":
      if (bits === 3) throw new LoralabError("--format onnx: MatMulNBits supports 2, 4 and 8 bits, not 3 (use --format gptq for 3-bit)");
      if (groupSize !== -1 && !isMatMulNBitsBlock(groupSize)) throw new LoralabError(`--format onnx: MatMulNBits needs a block size that is a power of two ≥ 16, got --group-size ${groupSize}`);
      break;
    case "gguf":
      if (bits !== 4 && bits !== 8) throw new LoralabError(`--format gguf writes Q4_0 (--bits 4) or Q8_0 (--bits 8), got --bits ${bits}`);
      if (groupSize !== 32) throw new LoralabError(`--format gguf: Q4_0/Q8_0 blocks hold 32 weights; use --group-size 32 (got ${groupSize})`);
      if (!sym) throw new LoralabError("--format gguf: Q4_0/Q8_0 are symmetric; use --sym (and --method rtn or gptq)");
      break;
    default:
  }
}

/** Why a (N×K) linear cannot be written in `format` with these bits and group size, or null when it can. */
export function moduleMisfit(format: Format, bits: number, groupSize: number, N: number, K: number): string | null {
  const G = groupSize === -1 ? K : groupSize;
  if (K % G !== 0) return `in_features ${K} is not a multiple of the group size ${G}`;
  switch (format) {
    case "gptq":
      if ((K * bits) % 32 !== 0) return `in_features ${K} × ${bits} bits does not fill whole int32 words (qweight packs along K)`;
      if ((N * bits) % 32 !== 0) return `out_features ${N} × ${bits} bits does not fill whole int32 words (qzeros pack along N)`;
      return null;
    case "awq":
      if (N % 8 !== 0) return `out_features ${N} is not a multiple of 8 (AWQ packs 8 output channels per int32)`;
      return null;
    case "onnx":
      if (!isMatMulNBitsBlock(G)) return `MatMulNBits needs a power-of-two block ≥ 16; this module's group is ${G}`;
      return null;
    case "gguf":
      return null;
    case "dequantized":
      return null;
  }
}
