/** Sends process.stdout / process.stderr writes (console.* included) as `stream` messages to the
 * request they belong to. Writes are batched, and flushed before any other iopub message (so output
 * keeps its order), at the end of the event-loop turn, or every 50 ms during a long synchronous cell. */
import process from "node:process";
import { StringDecoder } from "node:string_decoder";
import { currentRequest } from "./context.js";
import type { Header } from "./wire.js";

type StreamName = "stdout" | "stderr";
export type StreamSink = (name: StreamName, text: string, parent: Partial<Header>) => void;

const FLUSH_MS = 50;
const FLUSH_BYTES = 64 * 1024;

export class OutputStreams {
  private pending: { name: StreamName; parent: Partial<Header>; text: string } | undefined;
  private lastFlush = Date.now();
  private scheduled = false;
  private readonly decoders = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };

  constructor(private readonly sink: StreamSink) {}

  install(): void {
    for (const name of ["stdout", "stderr"] as const) {
      const stream = process[name];
      // console.* and direct writes both end in stream.write.
      stream.write = ((chunk: unknown, encoding?: unknown, cb?: unknown) => {
        const callback = typeof encoding === "function" ? encoding : cb;
        const text =
          typeof chunk !== "string"
            ? this.decoders[name].write(Buffer.from(chunk as Uint8Array))
            : typeof encoding === "string" && !/^utf-?8$/i.test(encoding)
              ? Buffer.from(chunk, encoding as BufferEncoding).toString("utf8")
              : chunk;
        this.write(name, text);
        if (typeof callback === "function") queueMicrotask(() => (callback as () => void)());
        return true;
      }) as typeof stream.write;
    }
  }

  write(name: StreamName, text: string): void {
    if (!text) return;
    const parent: Partial<Header> = currentRequest()?.msg.header ?? {};
    const p = this.pending;
    if (p && (p.name !== name || p.parent.msg_id !== parent.msg_id)) this.flush();
    if (this.pending) this.pending.text += text;
    else this.pending = { name, parent, text };
    if (this.pending.text.length > FLUSH_BYTES || Date.now() - this.lastFlush > FLUSH_MS) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  flush(): void {
    const p = this.pending;
    this.pending = undefined;
    this.lastFlush = Date.now();
    if (p) this.sink(p.name, p.text, p.parent);
  }
}
