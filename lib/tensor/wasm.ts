/** A minimal WebAssembly binary emitter: one module, an imported memory, functions written as opcode
 * bytes. Enough to build small SIMD kernels at run time without a toolchain (no clang/wabt on the
 * machines; JS loops are ~50x slower than native for the per-element work these kernels do). */

export const I32 = 0x7f, I64 = 0x7e, F32 = 0x7d, F64 = 0x7c, V128 = 0x7b;

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7; // callers pass 32-bit values
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { out.push(b); return out; }
    out.push(b | 0x80);
  }
}

/** Opcodes used by the kernels (core and 0xfd-prefixed SIMD). */
export const op = {
  block: [0x02, 0x40], loop: [0x03, 0x40], end: [0x0b], br: (d: number) => [0x0c, ...uleb(d)], brIf: (d: number) => [0x0d, ...uleb(d)],
  get: (i: number) => [0x20, ...uleb(i)], set: (i: number) => [0x21, ...uleb(i)], tee: (i: number) => [0x22, ...uleb(i)],
  i32: (v: number) => [0x41, ...sleb(v | 0)],
  i32Add: [0x6a], i32Sub: [0x6b], i32Mul: [0x6c], i32Ne: [0x47], i32LtU: [0x49], i32GeU: [0x4f], i32ShrU: [0x76],
  f32Load: (offset = 0) => [0x2a, 2, ...uleb(offset)],
  f64Load: (offset = 0) => [0x2b, 3, ...uleb(offset)],
  f64Store: (offset = 0) => [0x39, 3, ...uleb(offset)],
  f64Add: [0xa0], f64Max: [0xa5], f64PromoteF32: [0xbb], f32Min: [0x96], f32Max: [0x97], f32Neg: [0x8c],
  f32Store: (offset = 0) => [0x38, 2, ...uleb(offset)],
  simd: (code: number, ...imm: number[]) => [0xfd, ...uleb(code), ...imm],
};

/** SIMD opcodes (after the 0xfd prefix). */
export const S = {
  load: 0x00, load16x4U: 0x04, load32Splat: 0x09, store: 0x0b, const: 0x0c, shuffle: 0x0d,
  i32x4Splat: 0x11, f32x4Splat: 0x13, f64x2Splat: 0x14, f32x4Extract: 0x1f, f64x2Extract: 0x21,
  i32x4LtS: 0x39, i32x4GtS: 0x3b, i32x4GeS: 0x3f,
  and: 0x4e, or: 0x50, xor: 0x51, bitselect: 0x52, store16Lane: 0x59, store64Lane: 0x5b, load64Zero: 0x5d,
  f32x4DemoteF64x2Zero: 0x5e, f64x2PromoteLow: 0x5f, i8x16NarrowI16x8S: 0x65, i8x16NarrowI16x8U: 0x66, f32x4Nearest: 0x6a, i16x8NarrowI32x4S: 0x85, i16x8NarrowI32x4U: 0x86,
  f64x2Nearest: 0x94, i32x4Shl: 0xab, i32x4ShrS: 0xac, i32x4ShrU: 0xad, i32x4Add: 0xae, i32x4Sub: 0xb1,
  f32x4Abs: 0xe0, f32x4Add: 0xe4, f32x4Sub: 0xe5, f32x4Mul: 0xe6, f32x4Div: 0xe7,
  f32x4Pmin: 0xea, f32x4Pmax: 0xeb, f64x2Add: 0xf0, f64x2Sub: 0xf1, f64x2Mul: 0xf2, f64x2Div: 0xf3,
  f64x2Pmin: 0xf6, f64x2Pmax: 0xf7, i32x4TruncSatF32x4S: 0xf8, i32x4TruncSatF32x4U: 0xf9, f64x2ConvertLowI32x4S: 0xfe,
};

/** v128.load/store with alignment log2 and a constant offset. */
export const vload = (offset = 0, align = 4) => op.simd(S.load, align, ...uleb(offset));
export const vstore = (offset = 0, align = 4) => op.simd(S.store, align, ...uleb(offset));
export const vconstI32 = (a: number, b = a, c = a, d = a) => {
  const u = new Uint8Array(new Int32Array([a, b, c, d]).buffer);
  return op.simd(S.const, ...u);
};

export interface FuncDef {
  params: number[];
  results: number[];
  /** extra locals, in order after the params */
  locals: number[];
  body: number[];
  export: string;
}

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

const name = (s: string) => { const b = [...new TextEncoder().encode(s)]; return [...uleb(b.length), ...b]; };

/** Encodes a module that imports `env.memory` (at least `minPages` 64 KiB pages; shared with at most
 * `sharedMaxPages` when given, so worker threads can run on the same memory) and exports `funcs`. */
export function encodeModule(funcs: FuncDef[], minPages = 1, sharedMaxPages?: number): Uint8Array {
  const types = funcs.map((f) => [0x60, ...vec(f.params.map((p) => [p])), ...vec(f.results.map((r) => [r]))]);
  const limits = sharedMaxPages === undefined ? [0x00, ...uleb(minPages)] : [0x03, ...uleb(minPages), ...uleb(sharedMaxPages)];
  const imports = [[...name("env"), ...name("memory"), 0x02, ...limits]];
  const fnIdx = funcs.map((_, i) => uleb(i));
  const exports = funcs.map((f, i) => [...name(f.export), 0x00, ...uleb(i)]);
  const codes = funcs.map((f) => {
    const runs: number[][] = [];
    for (const t of f.locals) {
      const last = runs[runs.length - 1];
      if (last && last[1] === t) last[0]++;
      else runs.push([1, t]);
    }
    const body = [...vec(runs.map(([n, t]) => [...uleb(n), t])), ...f.body, 0x0b];
    return [...uleb(body.length), ...body];
  });
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec(imports)),
    ...section(3, vec(fnIdx)),
    ...section(7, vec(exports)),
    ...section(10, vec(codes)),
  ]);
}
