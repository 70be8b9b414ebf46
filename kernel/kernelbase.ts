/** The kernel's main-thread half: a queue of shell requests handled one at a time, each wrapped in
 * busy/idle status messages and run inside its request context; replies and iopub messages are handed
 * to the I/O thread. Handlers live in ./handlers, one module per group of message types. */
import { writeSync } from "node:fs";
import { performance } from "node:perf_hooks";
import process from "node:process";
import type { Worker } from "node:worker_threads";
import { CommManager } from "./comm.js";
import { currentRequest, requests, setLatestRequest, type RequestContext } from "./context.js";
import { Executor } from "./executor.js";
import { History } from "./handlers/history.js";
import { installKernelHost, type KernelHost } from "./host.js";
import type { Channel, FromIo, ToIo } from "./io-messages.js";
import { SLOT } from "./interrupt-state.js";
import { OutputStreams } from "./iostream.js";
import type { Message } from "./wire.js";

export type Handler = (kernel: Kernel, ctx: RequestContext) => Promise<Record<string, unknown> | null>;

type QueueItem = { msg: Message } | { stopAborting: true };

export class Kernel {
  executionCount = 0;
  readonly history = new History();
  readonly streams: OutputStreams;
  readonly comms: CommManager;
  readonly executor: Executor;
  private readonly handlers = new Map<string, Handler>();
  private readonly queue: QueueItem[] = [];
  private draining = false;
  private aborting = false;
  private syncSerial = 0;
  private current: RequestContext | undefined;
  /** interrupt_request count when the current request started, and the count last acted on. */
  private currentStartGeneration = 0;
  private handledGeneration = 0;
  private readonly inputWaiters = new Map<string, { resolve: (v: string) => void; reject: (e: Error) => void }>();
  /** Outputs still rendering (async display bundles), per request. */
  private readonly pendingOutputs = new Map<RequestContext, Set<Promise<unknown>>>();

  constructor(
    private readonly io: Worker,
    readonly interruptFlag: Int32Array,
    notebookDir: string,
    kernelRoot: string,
  ) {
    this.streams = new OutputStreams((name, text, parent) => this.post({ t: "send", channel: "iopub", msgType: "stream", content: { name, text }, parent }));
    this.comms = new CommManager({ publish: (type, content, extra) => this.publish(type, content, extra) });
    this.executor = new Executor(notebookDir, kernelRoot, interruptFlag);
    io.on("message", (m: FromIo) => this.fromIo(m));
  }

  private lastActivity = performance.now();

  /** How long no request has been running or queued (0 while one is). */
  idleMs(): number {
    return this.draining || this.queue.length ? 0 : performance.now() - this.lastActivity;
  }

  register(msgType: string, handler: Handler): void {
    this.handlers.set(msgType, handler);
  }

  private post(m: ToIo): void {
    this.io.postMessage(m);
  }

  /** Publishes on iopub with the calling code's request as parent (streams flushed first, to keep order). */
  publish(msgType: string, content: Record<string, unknown>, extra: { metadata?: Record<string, unknown>; buffers?: Uint8Array[]; parent?: Message } = {}): void {
    this.streams.flush();
    const parent = extra.parent ?? currentRequest()?.msg;
    this.post({ t: "send", channel: "iopub", msgType, content, parent: parent?.header ?? {}, metadata: extra.metadata, buffers: extra.buffers });
  }

  reply(channel: Channel, to: Message, msgType: string, content: Record<string, unknown>, metadata: Record<string, unknown> = {}): void {
    this.streams.flush();
    this.post({ t: "send", channel, msgType, content, parent: to.header, identities: to.identities, metadata });
  }

  /** After an error with stop_on_error: abort every execute_request received so far. */
  abortQueued(): void {
    this.aborting = true;
    const id = ++this.syncSerial;
    this.post({ t: "sync", id });
  }

  /** Interrupt (SIGINT, or interrupt_request through the I/O thread): rejects the running request. */
  interrupt(): void {
    const ctx = this.current;
    if (ctx && !ctx.abort.signal.aborted) ctx.abort.abort();
  }

  /** An interrupt_request (generation n) interrupts the running request if it started before it. */
  private interruptFor(generation: number): void {
    if (generation <= this.handledGeneration) return;
    this.handledGeneration = generation;
    if (this.currentStartGeneration < generation) this.interrupt();
  }

  /** SIGINT: sent for an interrupt_request (it may reach this listener late, even after that request
   * ended — see interrupt-state.ts), or from outside (interrupt mode "signal", Ctrl-C), which always
   * interrupts the running request. */
  private onSigint(): void {
    const generation = Atomics.load(this.interruptFlag, SLOT.GENERATION);
    if (process.env.LORALAB_KERNEL_DEBUG) writeSync(2, `[loralab kernel] SIGINT gen=${generation} handled=${this.handledGeneration} start=${this.currentStartGeneration}\n`);
    if (generation > this.handledGeneration) this.interruptFor(generation);
    else this.interrupt();
  }

  /** Asks the frontend for a line of input on the stdin channel. */
  input(prompt: string, password: boolean): Promise<string> {
    const ctx = currentRequest();
    if (!ctx || !ctx.allowStdin) return Promise.reject(new Error("input() is not available: this frontend does not allow stdin for the request"));
    return new Promise<string>((resolve, reject) => {
      const key = ctx.msg.header.msg_id;
      this.inputWaiters.set(key, { resolve, reject });
      ctx.abort.signal.addEventListener("abort", () => {
        this.inputWaiters.delete(key);
        reject(new Error("input() was interrupted"));
      }, { once: true });
      this.reply("stdin", ctx.msg, "input_request", { prompt, password });
    });
  }

  private track(pending: Promise<unknown>): void {
    const ctx = currentRequest();
    if (!ctx) return;
    let set = this.pendingOutputs.get(ctx);
    if (!set) this.pendingOutputs.set(ctx, (set = new Set()));
    const done = pending.then(
      () => undefined,
      () => undefined,
    ).then(() => {
      set.delete(done);
      if (!set.size && this.pendingOutputs.get(ctx) === set) this.pendingOutputs.delete(ctx);
    });
    set.add(done);
  }

  /** Waits until the outputs a request is still rendering are published (including ones they start),
   * or until the request is interrupted. */
  async settleOutputs(ctx: RequestContext): Promise<void> {
    if (!this.pendingOutputs.get(ctx)?.size) return;
    const aborted = new Promise<void>((resolve) => {
      if (ctx.abort.signal.aborted) resolve();
      ctx.abort.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    for (let set = this.pendingOutputs.get(ctx); set?.size && !ctx.abort.signal.aborted; set = this.pendingOutputs.get(ctx)) {
      await Promise.race([Promise.all([...set]), aborted]);
    }
  }

  host(): KernelHost {
    return {
      display: (data, o) => {
        const transient = o.displayId ? { display_id: o.displayId } : {};
        if (o.update && !o.displayId) throw new Error("updateDisplay needs the displayId given to display()");
        this.publish(o.update ? "update_display_data" : "display_data", { data, metadata: o.metadata ?? {}, transient });
      },
      clearOutput: (wait) => this.publish("clear_output", { wait }),
      input: (prompt, password) => this.input(prompt, password),
      abortSignal: () => currentRequest()?.abort.signal,
      openComm: (target, data, metadata, buffers) => this.comms.open(target, data, metadata, buffers),
      currentMessageId: () => currentRequest()?.msg.header.msg_id,
      track: (pending) => this.track(pending),
    };
  }

  install(): void {
    installKernelHost(this.host());
    this.streams.install();
    Object.defineProperty(globalThis, "abortSignal", { get: () => currentRequest()?.abort.signal, configurable: true });
    process.on("SIGINT", () => this.onSigint());
  }

  private fromIo(m: FromIo): void {
    if (m.t === "msg") {
      if (m.channel === "stdin") return this.onStdin(m.msg);
      this.queue.push({ msg: m.msg });
      void this.drain();
    } else if (m.t === "interrupt") {
      this.interruptFor(m.generation);
    } else if (m.t === "synced") {
      if (m.id === this.syncSerial) {
        this.queue.push({ stopAborting: true });
        void this.drain();
      }
    } else if (m.t === "shutdown") {
      this.streams.flush();
      process.exit(0);
    }
  }

  private onStdin(msg: Message): void {
    if (msg.header.msg_type !== "input_reply") return;
    const key = msg.parent_header.msg_id ?? "";
    const waiter = this.inputWaiters.get(key) ?? [...this.inputWaiters.values()][0];
    if (!waiter) return;
    this.inputWaiters.delete(key);
    waiter.resolve(String((msg.content as { value?: unknown }).value ?? ""));
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length) {
        const item = this.queue.shift()!;
        if ("stopAborting" in item) this.aborting = false;
        else await this.handle(item.msg);
      }
    } finally {
      this.draining = false;
    }
  }

  private async handle(msg: Message): Promise<void> {
    const type = msg.header.msg_type;
    const ctx: RequestContext = { msg, abort: new AbortController(), allowStdin: Boolean((msg.content as { allow_stdin?: boolean }).allow_stdin) };
    Atomics.store(this.interruptFlag, SLOT.HANDLING, 1);
    Atomics.add(this.interruptFlag, SLOT.REQUEST_SERIAL, 1);
    Atomics.store(this.interruptFlag, SLOT.LOOP_FLAG, 0);
    this.currentStartGeneration = Atomics.load(this.interruptFlag, SLOT.GENERATION);
    this.current = ctx;
    this.lastActivity = performance.now();
    setLatestRequest(ctx);
    this.publish("status", { execution_state: "busy" }, { parent: msg });
    try {
      if (this.aborting && type === "execute_request") {
        this.reply("shell", msg, "execute_reply", { status: "aborted", execution_count: this.executionCount }, { status: "aborted" });
        return;
      }
      const handler = this.handlers.get(type);
      if (!handler) return;
      const content = await requests.run(ctx, () => handler(this, ctx));
      await this.settleOutputs(ctx);
      if (content) this.reply("shell", msg, type.replace(/_request$/, "_reply"), content, { status: content.status });
    } catch (e) {
      const err = e as Error;
      if (type.endsWith("_request")) this.reply("shell", msg, type.replace(/_request$/, "_reply"), { status: "error", ename: err.name, evalue: err.message, traceback: [String(err.stack)] });
    } finally {
      this.current = undefined;
      this.lastActivity = performance.now();
      Atomics.store(this.interruptFlag, SLOT.HANDLING, 0);
      this.publish("status", { execution_state: "idle" }, { parent: msg });
    }
  }
}
