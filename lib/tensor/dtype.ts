/** safetensors dtype names this library reads and writes. */
export type DType = "F32" | "F16" | "BF16" | "I8" | "U8" | "I32" | "I64" | "BOOL";

export type TypedArray = Float32Array | Uint16Array | Int8Array | Uint8Array | Int32Array | BigInt64Array;

export const DTYPE_SIZE: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, I8: 1, U8: 1, I32: 4, I64: 8, BOOL: 1 };

export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

export function isFloatDType(d: DType): boolean {
  return d === "F32" || d === "F16" || d === "BF16";
}

/** A typed-array view over `bytes` for a dtype (copies only when the offset is misaligned). F16/BF16 are
 * raw 16-bit patterns in a Uint16Array. */
export function viewAs(dtype: DType, bytes: Uint8Array): TypedArray {
  const size = DTYPE_SIZE[dtype];
  let buf = bytes;
  if (buf.byteOffset % size !== 0) buf = new Uint8Array(bytes); // realign
  const n = buf.byteLength / size;
  switch (dtype) {
    case "F32": return new Float32Array(buf.buffer, buf.byteOffset, n);
    case "F16": case "BF16": return new Uint16Array(buf.buffer, buf.byteOffset, n);
    case "I8": return new Int8Array(buf.buffer, buf.byteOffset, n);
    case "U8": case "BOOL": return new Uint8Array(buf.buffer, buf.byteOffset, n);
    case "I32": return new Int32Array(buf.buffer, buf.byteOffset, n);
    case "I64": return new BigInt64Array(buf.buffer, buf.byteOffset, n);
  }
}

export function allocate(dtype: DType, n: number): TypedArray {
  return viewAs(dtype, new Uint8Array(n * DTYPE_SIZE[dtype]));
}

/** Maps config.json `torch_dtype`/`dtype` strings to safetensors names. */
export function dtypeFromTorch(name: string | undefined): DType | undefined {
  switch (name) {
    case "float32": return "F32";
    case "float16": return "F16";
    case "bfloat16": return "BF16";
    default: return undefined;
  }
}

export function dtypeToTorch(d: DType): string {
  return { F32: "float32", F16: "float16", BF16: "bfloat16", I8: "int8", U8: "uint8", I32: "int32", I64: "int64", BOOL: "bool" }[d];
}
