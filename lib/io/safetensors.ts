import { open, stat, type FileHandle } from "node:fs/promises";
import { openSink } from "./file-sink.js";
import { LoralabError } from "../errors.js";
import { type DType, DTYPE_SIZE, isDType, viewAs } from "../tensor/dtype.js";
import { Tensor, numel } from "../tensor/tensor.js";

/** One tensor's header entry, offsets absolute within the file. */
export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** absolute byte offset of the first byte in the file */
  offset: number;
  byteLength: number;
}

const MAX_HEADER = 100 * 1024 * 1024; // the reference implementation's limit

/** A safetensors file opened for lazy reads: the header is parsed and validated at open; tensor data is
 * read at its offset on demand, never the whole file. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly entries: Map<string, TensorEntry>,
    readonly metadata: Record<string, string>,
    readonly fileSize: number,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (e) {
      throw new LoralabError(`cannot open ${path}: ${(e as Error).message}`);
    }
    try {
      const size = (await fh.stat()).size;
      const { entries, metadata } = await readHeader(fh, size, path);
      return new SafetensorsFile(path, fh, entries, metadata, size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  entry(name: string): TensorEntry {
    const e = this.entries.get(name);
    if (!e) throw new LoralabError(`${this.path}: no tensor named '${name}'`);
    return e;
  }

  /** The tensor's raw bytes, read into a fresh buffer (or into `into` when it is large enough). */
  async readBytes(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const e = this.entry(name);
    const buf = into && into.byteLength >= e.byteLength ? into.subarray(0, e.byteLength) : new Uint8Array(e.byteLength);
    let done = 0;
    while (done < e.byteLength) {
      const { bytesRead } = await this.fh.read(buf, done, e.byteLength - done, e.offset + done);
      if (bytesRead === 0) throw new LoralabError(`${this.path}: file ended while reading tensor '${name}' (truncated file?)`);
      done += bytesRead;
    }
    return buf;
  }

  /** `into.byteLength` bytes of the tensor from byte `start` of its data, read into `into`. */
  async readRange(name: string, start: number, into: Uint8Array): Promise<Uint8Array> {
    const e = this.entry(name);
    if (start < 0 || start + into.byteLength > e.byteLength) throw new Error(`internal: range ${start}+${into.byteLength} outside tensor '${name}' (${e.byteLength} bytes)`);
    let done = 0;
    while (done < into.byteLength) {
      const { bytesRead } = await this.fh.read(into, done, into.byteLength - done, e.offset + start + done);
      if (bytesRead === 0) throw new LoralabError(`${this.path}: file ended while reading tensor '${name}' (truncated file?)`);
      done += bytesRead;
    }
    return into;
  }

  async read(name: string): Promise<Tensor> {
    const e = this.entry(name);
    return new Tensor(e.dtype, e.shape, viewAs(e.dtype, await this.readBytes(name)));
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

async function readHeader(fh: FileHandle, size: number, path: string) {
  if (size < 8) throw new LoralabError(`${path}: not a safetensors file (only ${size} bytes)`);
  const lenBuf = Buffer.alloc(8);
  await fh.read(lenBuf, 0, 8, 0);
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(Math.min(MAX_HEADER, size - 8)))
    throw new LoralabError(`${path}: header length ${headerLen} exceeds the file size ${size} (truncated or not a safetensors file)`);
  const n = Number(headerLen);
  const headerBuf = Buffer.alloc(n);
  await fh.read(headerBuf, 0, n, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBuf.toString("utf8"));
  } catch (e) {
    throw new LoralabError(`${path}: header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) throw new LoralabError(`${path}: header is not a JSON object`);
  const dataStart = 8 + n;
  const dataSize = size - dataStart;
  const entries = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof raw !== "object" || raw === null || Object.values(raw).some((v) => typeof v !== "string"))
        throw new LoralabError(`${path}: __metadata__ must map strings to strings`);
      metadata = raw as Record<string, string>;
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `${path}: tensor '${name}'`;
    if (typeof info !== "object" || info === null) throw new LoralabError(`${where}: header entry is not an object`);
    if (typeof info.dtype !== "string" || !isDType(info.dtype)) throw new LoralabError(`${where}: unknown dtype ${JSON.stringify(info.dtype)}`);
    if (!Array.isArray(info.shape) || !info.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new LoralabError(`${where}: invalid shape ${JSON.stringify(info.shape)}`);
    const off = info.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[0] > off[1])
      throw new LoralabError(`${where}: invalid data_offsets ${JSON.stringify(off)}`);
    const [begin, end] = off as [number, number];
    if (end > dataSize) throw new LoralabError(`${where}: data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes; truncated file?)`);
    const expected = numel(info.shape) * DTYPE_SIZE[info.dtype];
    if (end - begin !== expected)
      throw new LoralabError(`${where}: shape [${info.shape}] × ${info.dtype} needs ${expected} bytes but data_offsets span ${end - begin}`);
    entries.set(name, { name, dtype: info.dtype, shape: info.shape as number[], offset: dataStart + begin, byteLength: end - begin });
    spans.push([begin, end, name]);
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cursor = 0;
  for (const [begin, end, name] of spans) {
    if (begin !== cursor)
      throw new LoralabError(`${path}: tensor '${name}' starts at ${begin} but the previous tensor ends at ${cursor} (${begin < cursor ? "overlap" : "gap"} in data_offsets)`);
    cursor = end;
  }
  if (cursor !== dataSize) throw new LoralabError(`${path}: tensors cover ${cursor} bytes but the data section holds ${dataSize} (trailing bytes or truncated file)`);
  return { entries, metadata };
}

/** What a writer needs to know of a tensor before its data exists. */
export interface TensorPlan {
  name: string;
  dtype: DType;
  shape: readonly number[];
}

export function planBytes(t: TensorPlan): number {
  return numel(t.shape) * DTYPE_SIZE[t.dtype];
}

/** Serializes the header for `tensors` in the given order, padded with spaces to a multiple of 8. */
export function encodeHeader(tensors: readonly TensorPlan[], metadata: Record<string, string> = { format: "pt" }): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const n = planBytes(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += " ".repeat(pad);
  const body = Buffer.from(json, "utf8");
  const out = Buffer.alloc(8 + body.length);
  out.writeBigUInt64LE(BigInt(body.length), 0);
  body.copy(out, 8);
  return out;
}

/** A tensor's bytes: whole, or in chunks (streamed; e.g. a large tensor copied through a small buffer). */
export type TensorBytes = Uint8Array | AsyncIterable<Uint8Array>;

export interface WriteOptions {
  /** Overlap writing tensor (or chunk) i with producing i+1 (one write in flight). The producer must then
   * leave the bytes it returned for i untouched until it returns i+1 (two buffers used in turn). */
  pipelined?: boolean;
  /** see SinkOptions.syncEvery (file systems without O_DIRECT) */
  syncEvery?: number;
  /** Return once the last write is issued and hand over the final write-out, sync and close as a promise
   * (the caller must await it), so the next file can be produced meanwhile. */
  deferFinish?: (finish: Promise<void>) => void;
}

/** Files from this size on bypass the page cache (file-sink.ts); smaller ones stay cached for whoever reads
 * them next and need no 48 MB of staging. */
const DIRECT_MIN_BYTES = 64 * 2 ** 20;

/** Writes one safetensors file tensor by tensor: the header first (from the plan), then each tensor's
 * bytes as `produce` yields them, so only one tensor (two when pipelined) is in memory at a time. */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorPlan[],
  produce: (t: TensorPlan, index: number) => Promise<TensorBytes> | TensorBytes,
  metadata?: Record<string, string>,
  opts: WriteOptions = {},
): Promise<number> {
  const header = encodeHeader(tensors, metadata);
  const planned = header.length + tensors.reduce((a, t) => a + planBytes(t), 0);
  const sink = await openSink(path, { syncEvery: opts.syncEvery, direct: planned >= DIRECT_MIN_BYTES });
  let pending: Promise<void> = Promise.resolve();
  let total = 0;
  try {
    await sink.write(header);
    total = header.length;
    for (let i = 0; i < tensors.length; i++) {
      const produced = await produce(tensors[i], i);
      const expected = planBytes(tensors[i]);
      let n = 0;
      for await (const bytes of produced instanceof Uint8Array ? [produced] : produced) {
        n += bytes.byteLength;
        if (n > expected) break;
        await pending;
        pending = sink.write(bytes);
        pending.catch(() => {}); // rethrown by the next await; not an unhandled rejection while produce runs
        if (!opts.pipelined) await pending;
      }
      if (n !== expected) throw new Error(`internal: tensor '${tensors[i].name}' produced ${n > expected ? "more than" : n} bytes, planned ${expected}`);
      total += n;
    }
  } catch (e) {
    await pending.catch(() => {}); // never close under a write still in flight (its error is the one thrown)
    await sink.abort();
    throw e;
  }
  const finish = pending.then(() => sink.finish(), async (e) => { await sink.abort(); throw e; });
  if (opts.deferFinish) {
    finish.catch(() => {}); // the caller awaits it
    opts.deferFinish(finish);
  } else await finish;
  return total;
}

/** Convenience for tests and small artifacts: writes in-memory tensors. */
export async function saveTensors(path: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  const plan = Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }));
  await writeSafetensors(path, plan, (p) => tensors[p.name].bytes(), metadata);
}

export async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size;
}
