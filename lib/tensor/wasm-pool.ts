/** One shared WebAssembly memory with helper threads that run kernels on it: the caller lays its data
 * out in the memory, builds kernels (modules exporting `run`) and runs them over disjoint parts of the
 * data, this thread taking the first part. Used by the fused merge kernel and the GPTQ column kernel. */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { LoralabError } from "../errors.js";

/** The few WebAssembly JS-API members used here (the project's lib setting has no DOM typings). */
export interface WasmMemory { readonly buffer: ArrayBufferLike; grow(pages: number): number }
declare const WebAssembly: {
  Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
};

/** 4 GiB, the 32-bit limit; a shared memory must declare its maximum (kernels import it with this maximum). */
export const MAX_PAGES = 65536;
export const MAX_THREADS = 16;

/** Kernel threads: `env` (a variable name) when set to 1–16, else one per core up to 8. */
export function defaultThreads(env?: string): number {
  const v = Number(env ? process.env[env] : undefined);
  return v >= 1 ? Math.min(MAX_THREADS, Math.floor(v)) : Math.min(availableParallelism(), 8);
}

/** A helper thread: instantiates each kernel module on the shared memory and runs it. A plain JS module
 * from a data: URL, so it loads the same way from sources, from dist/ and under any --input-type. */
const HELPER_SRC = `
import { parentPort, workerData } from "node:worker_threads";
const fns = new Map();
parentPort.on("message", (m) => {
  let f = fns.get(m.key);
  if (!f) { f = new WebAssembly.Instance(m.module, { env: { memory: workerData.memory } }).exports.run; fns.set(m.key, f); }
  f(...m.args);
  parentPort.postMessage(0);
});`;

type RunFn = (...args: number[]) => void;

export class WasmPool {
  readonly memory: WasmMemory = new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
  private readonly kernels = new Map<string, { module: object; run: RunFn }>();
  private readonly helpers: Worker[] = [];

  /** `threads`: 1 to 16, this one included. */
  constructor(readonly threads: number) {
    if (!(threads >= 1 && threads <= MAX_THREADS)) throw new Error(`internal: ${threads} kernel threads (1–${MAX_THREADS})`);
  }

  /** Makes the memory at least `bytes` long (views taken before must be taken again). */
  reserve(bytes: number, what = "kernel"): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) {
      if (bytes > MAX_PAGES * 65536) throw new LoralabError(`${what} data too large for the 4 GiB WebAssembly buffer (${bytes} bytes)`);
      this.memory.grow(Math.ceil((bytes - have) / 65536));
    }
  }

  bytes(offset: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, offset, length);
  }

  f32(offset: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, length);
  }

  f64(offset: number, length: number): Float64Array {
    return new Float64Array(this.memory.buffer, offset, length);
  }

  /** Compiles (once per key) the module `build()` returns. */
  kernel(key: string, build: () => Uint8Array): void {
    if (this.kernels.has(key)) return;
    const module = new WebAssembly.Module(build());
    this.kernels.set(key, { module, run: new WebAssembly.Instance(module, { env: { memory: this.memory } }).exports.run as RunFn });
  }

  /** Runs kernel `key` once per argument list, at most `threads` lists: the first here, the others on
   * helper threads; resolves when all are done. */
  async run(key: string, parts: readonly (readonly number[])[]): Promise<void> {
    const k = this.kernels.get(key);
    if (!k) throw new Error(`internal: kernel ${key} not built`);
    if (parts.length > this.threads) throw new Error(`internal: ${parts.length} parts for ${this.threads} threads`);
    const done = parts.slice(1).map((args, i) => this.runOnHelper(i, key, k.module, args));
    if (parts.length > 0) k.run(...parts[0]);
    await Promise.all(done);
  }

  private runOnHelper(i: number, key: string, module: object, args: readonly number[]): Promise<void> {
    const helper = (this.helpers[i] ??= new Worker(new URL(`data:text/javascript,${encodeURIComponent(HELPER_SRC)}`), { workerData: { memory: this.memory } }));
    const done = new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => { helper.off("message", onDone); reject(e); };
      const onDone = () => { helper.off("error", onError); resolve(); };
      helper.once("message", onDone).once("error", onError);
    });
    helper.ref();
    helper.postMessage({ key, module, args });
    return done.finally(() => helper.unref());
  }

  /** Stops the helper threads (the memory stays usable from this thread). */
  async close(): Promise<void> {
    const hs = this.helpers.splice(0);
    await Promise.all(hs.map((h) => h.terminate()));
  }
}

const idle: WasmPool[] = [];

/** An idle pool with `threads` threads (helpers already started) or a new one; hand it back with
 * `returnPool` when done. Kernels that run once per weight (GPTQ, AWQ) reuse pools this way. */
export function borrowPool(threads = defaultThreads()): WasmPool {
  const i = idle.findIndex((p) => p.threads === threads);
  return i >= 0 ? idle.splice(i, 1)[0] : new WasmPool(threads);
}

/** Idle pools kept, and the largest memory one may keep (a WebAssembly memory never shrinks): a pool that
 * held an lm_head-sized weight is dropped rather than kept for the next small one. */
const MAX_IDLE = 2;
const MAX_IDLE_BYTES = 512 * 2 ** 20;

export function returnPool(pool: WasmPool): void {
  if (idle.length < MAX_IDLE && pool.memory.buffer.byteLength <= MAX_IDLE_BYTES) idle.push(pool);
  else void pool.close();
}
