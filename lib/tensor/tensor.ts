import { LoralabError } from "../errors.js";
import { type DType, type TypedArray, DTYPE_SIZE, allocate } from "./dtype.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./half.js";

/** A dense row-major tensor: dtype, shape and a typed array (F16/BF16 as raw Uint16 bit patterns). */
export class Tensor {
  constructor(readonly dtype: DType, readonly shape: readonly number[], readonly data: TypedArray) {
    const n = numel(shape);
    if (data.length !== n) throw new LoralabError(`tensor data has ${data.length} elements but shape [${shape}] needs ${n}`);
  }

  static zeros(dtype: DType, shape: readonly number[]): Tensor {
    return new Tensor(dtype, shape, allocate(dtype, numel(shape)));
  }

  static fromF32(data: Float32Array, shape: readonly number[]): Tensor {
    return new Tensor("F32", shape, data);
  }

  get numel(): number { return this.data.length; }
  get byteLength(): number { return this.data.length * DTYPE_SIZE[this.dtype]; }

  /** The raw little-endian bytes (a view, no copy). */
  bytes(): Uint8Array {
    return new Uint8Array(this.data.buffer, this.data.byteOffset, this.byteLength);
  }

  /** Float32 values (a copy for every dtype but F32, which returns its own data unless `copy`). */
  toF32(copy = false): Float32Array {
    return toF32(this.dtype, this.data, copy);
  }

  /** This tensor converted to `dtype` (float dtypes round to nearest even). */
  to(dtype: DType): Tensor {
    if (dtype === this.dtype) return this;
    return new Tensor(dtype, this.shape, fromF32(dtype, this.toF32()));
  }
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function toF32(dtype: DType, data: TypedArray, copy = false): Float32Array {
  switch (dtype) {
    case "F32": return copy ? new Float32Array(data as Float32Array) : (data as Float32Array);
    case "F16": return f16ToF32(data as Uint16Array);
    case "BF16": return bf16ToF32(data as Uint16Array);
    case "I64": return Float32Array.from(data as BigInt64Array, (v) => Number(v));
    default: return Float32Array.from(data as ArrayLike<number>);
  }
}

/** Converts float32 values to `dtype` (RNE for F16/BF16; integer dtypes round and must fit). */
export function fromF32(dtype: DType, values: Float32Array, dst?: TypedArray): TypedArray {
  switch (dtype) {
    case "F32": return dst ? ((dst as Float32Array).set(values), dst) : values;
    case "F16": return f32ToF16(values, dst as Uint16Array | undefined);
    case "BF16": return f32ToBf16(values, dst as Uint16Array | undefined);
    case "I64": { const out = (dst as BigInt64Array) ?? new BigInt64Array(values.length); for (let i = 0; i < values.length; i++) out[i] = BigInt(Math.round(values[i])); return out; }
    default: {
      const out = dst ?? allocate(dtype, values.length);
      for (let i = 0; i < values.length; i++) (out as Int32Array)[i] = Math.round(values[i]);
      return out;
    }
  }
}
