/** GGUF v3 container (SPEC §11.1): a streaming writer and a reader. Tensor data are written in order,
 * each aligned to `general.alignment` (32). ne[0] is the fastest dimension (the reverse of a PyTorch shape). */
import { open, type FileHandle } from "node:fs/promises";
import { LoralabError } from "../errors.js";

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGML_TYPE = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;
export type GgmlTypeName = keyof typeof GGML_TYPE;
export const GGUF_VALUE = { UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12 } as const;
const ALIGN = 32;

export type GgufValue =
  | { type: "u32" | "i32" | "f32" | "u64" | "u8"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "string[]"; value: string[] }
  | { type: "f32[]" | "i32[]" | "u32[]"; value: ArrayLike<number> };

export interface GgufTensorInfo {
  name: string;
  /** ggml dims, ne[0] fastest */
  ne: number[];
  type: GgmlTypeName;
}

/** Bytes of a tensor with `ne` elements in a ggml type. */
export function ggmlBytes(type: GgmlTypeName, ne: number[]): number {
  const n = ne.reduce((a, b) => a * b, 1);
  switch (type) {
    case "F32": return 4 * n;
    case "F16": return 2 * n;
    case "Q4_0": return (n / 32) * 18;
    case "Q8_0": return (n / 32) * 34;
  }
}

class ByteWriter {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); this.push(b); }
  i32(v: number): void { const b = Buffer.alloc(4); b.writeInt32LE(v); this.push(b); }
  u64(v: number): void { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.push(b); }
  f32(v: number): void { const b = Buffer.alloc(4); b.writeFloatLE(v); this.push(b); }
  u8(v: number): void { this.push(Buffer.from([v & 0xff])); }
  str(s: string): void { const b = Buffer.from(s, "utf8"); this.u64(b.length); this.push(b); }
  concat(): Buffer { return Buffer.concat(this.chunks); }
}

function writeValue(w: ByteWriter, v: GgufValue): void {
  switch (v.type) {
    case "u8": w.u32(GGUF_VALUE.UINT8); w.u8(v.value); break;
    case "u32": w.u32(GGUF_VALUE.UINT32); w.u32(v.value); break;
    case "i32": w.u32(GGUF_VALUE.INT32); w.i32(v.value); break;
    case "u64": w.u32(GGUF_VALUE.UINT64); w.u64(v.value); break;
    case "f32": w.u32(GGUF_VALUE.FLOAT32); w.f32(v.value); break;
    case "bool": w.u32(GGUF_VALUE.BOOL); w.u8(v.value ? 1 : 0); break;
    case "string": w.u32(GGUF_VALUE.STRING); w.str(v.value); break;
    case "string[]": w.u32(GGUF_VALUE.ARRAY); w.u32(GGUF_VALUE.STRING); w.u64(v.value.length); for (const s of v.value) w.str(s); break;
    case "f32[]": w.u32(GGUF_VALUE.ARRAY); w.u32(GGUF_VALUE.FLOAT32); w.u64(v.value.length); for (let i = 0; i < v.value.length; i++) w.f32(v.value[i]); break;
    case "i32[]": w.u32(GGUF_VALUE.ARRAY); w.u32(GGUF_VALUE.INT32); w.u64(v.value.length); for (let i = 0; i < v.value.length; i++) w.i32(v.value[i]); break;
    case "u32[]": w.u32(GGUF_VALUE.ARRAY); w.u32(GGUF_VALUE.UINT32); w.u64(v.value.length); for (let i = 0; i < v.value.length; i++) w.u32(v.value[i]); break;
  }
}

/** Writes a GGUF v3 file: metadata, tensor infos, then each tensor's bytes from `produce` (one at a time). */
export async function writeGguf(path: string, kv: [string, GgufValue][], tensors: GgufTensorInfo[], produce: (t: GgufTensorInfo, i: number) => Promise<Uint8Array> | Uint8Array): Promise<void> {
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(tensors.length);
  w.u64(kv.length);
  for (const [k, v] of kv) {
    w.str(k);
    writeValue(w, v);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.ne.length);
    for (const d of t.ne) w.u64(d);
    w.u32(GGML_TYPE[t.type]);
    w.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(ggmlBytes(t.type, t.ne) / ALIGN) * ALIGN;
  }
  const headerPad = (ALIGN - (w.length % ALIGN)) % ALIGN;
  w.push(Buffer.alloc(headerPad));
  const fh = await open(path, "w");
  try {
    let pos = 0;
    const put = async (b: Uint8Array) => {
      for (let done = 0; done < b.byteLength; ) done += (await fh.write(b, done, b.byteLength - done, pos + done)).bytesWritten;
      pos += b.byteLength;
    };
    await put(w.concat());
    for (let i = 0; i < tensors.length; i++) {
      const bytes = await produce(tensors[i], i);
      const want = ggmlBytes(tensors[i].type, tensors[i].ne);
      if (bytes.byteLength !== want) throw new Error(`internal: GGUF tensor ${tensors[i].name} has ${bytes.byteLength} bytes, expected ${want}`);
      await put(bytes);
      const pad = (ALIGN - (bytes.byteLength % ALIGN)) % ALIGN;
      if (pad) await put(new Uint8Array(pad));
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface GgufFile {
  version: number;
  kv: Map<string, unknown>;
  tensors: (GgufTensorInfo & { offset: number; bytes: number })[];
  dataStart: number;
  read(name: string): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** Reads a GGUF v2/v3 header (all metadata, tensor infos); tensor bytes on demand. */
export async function readGguf(path: string): Promise<GgufFile> {
  const fh: FileHandle = await open(path, "r");
  const size = (await fh.stat()).size;
  const head = Buffer.alloc(Math.min(size, 64 << 20));
  await fh.read(head, 0, head.length, 0);
  let p = 0;
  const need = (n: number) => { if (p + n > head.length) throw new LoralabError(`${path}: GGUF header truncated`); };
  const u32 = () => { need(4); const v = head.readUInt32LE(p); p += 4; return v; };
  const u64 = () => { need(8); const v = Number(head.readBigUInt64LE(p)); p += 8; return v; };
  const str = () => { const n = u64(); need(n); const s = head.toString("utf8", p, p + n); p += n; return s; };
  const scalar = (t: number): unknown => {
    switch (t) {
      case 0: need(1); return head.readUInt8(p++);
      case 1: need(1); return head.readInt8(p++);
      case 2: need(2); p += 2; return head.readUInt16LE(p - 2);
      case 3: need(2); p += 2; return head.readInt16LE(p - 2);
      case 4: return u32();
      case 5: need(4); p += 4; return head.readInt32LE(p - 4);
      case 6: need(4); p += 4; return head.readFloatLE(p - 4);
      case 7: need(1); return head.readUInt8(p++) !== 0;
      case 8: return str();
      case 10: return u64();
      case 11: need(8); p += 8; return Number(head.readBigInt64LE(p - 8));
      case 12: need(8); p += 8; return head.readDoubleLE(p - 8);
      default: throw new LoralabError(`${path}: unknown GGUF value type ${t}`);
    }
  };
  if (u32() !== GGUF_MAGIC) throw new LoralabError(`${path}: not a GGUF file (bad magic)`);
  const version = u32();
  if (version < 2) throw new LoralabError(`${path}: GGUF version ${version} is not supported (v2/v3)`);
  const nt = u64();
  const nkv = u64();
  const kv = new Map<string, unknown>();
  for (let i = 0; i < nkv; i++) {
    const k = str();
    const t = u32();
    if (t === 9) {
      const et = u32();
      const n = u64();
      const arr: unknown[] = [];
      for (let j = 0; j < n; j++) arr.push(scalar(et));
      kv.set(k, arr);
    } else kv.set(k, scalar(t));
  }
  const byCode = new Map(Object.entries(GGML_TYPE).map(([k, v]) => [v, k as GgmlTypeName]));
  const infos: (GgufTensorInfo & { offset: number; bytes: number })[] = [];
  for (let i = 0; i < nt; i++) {
    const name = str();
    const nd = u32();
    const ne: number[] = [];
    for (let j = 0; j < nd; j++) ne.push(u64());
    const code = u32();
    const type = byCode.get(code as 0);
    if (!type) throw new LoralabError(`${path}: tensor ${name} has ggml type ${code}, which this reader does not decode`);
    infos.push({ name, ne, type, offset: u64(), bytes: ggmlBytes(type, ne) });
  }
  const align = Number(kv.get("general.alignment") ?? ALIGN);
  const dataStart = Math.ceil(p / align) * align;
  return {
    version, kv, tensors: infos, dataStart,
    async read(name: string) {
      const t = infos.find((x) => x.name === name);
      if (!t) throw new LoralabError(`${path}: no tensor ${name}`);
      const b = new Uint8Array(t.bytes);
      await fh.read(b, 0, t.bytes, dataStart + t.offset);
      return b;
    },
    close: () => fh.close(),
  };
}
