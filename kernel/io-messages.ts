import type { Header, Message } from "./wire.js";

export type Channel = "shell" | "control" | "stdin";

/** Messages from the I/O thread to the main thread. */
export type FromIo =
  | { t: "ready" }
  | { t: "msg"; channel: Channel; msg: Message }
  | { t: "synced"; id: number }
  | { t: "interrupt"; generation: number }
  | { t: "shutdown"; restart: boolean };

/** Messages from the main thread to the I/O thread. */
export type ToIo =
  | {
      t: "send";
      channel: Channel | "iopub";
      msgType: string;
      content: unknown;
      parent?: Partial<Header>;
      identities?: Uint8Array[];
      metadata?: Record<string, unknown>;
      buffers?: Uint8Array[];
    }
  | { t: "sync"; id: number };
