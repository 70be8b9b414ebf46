/** The kernel's I/O thread (a worker): it owns every zeromq socket, so heartbeats, kernel_info,
 * interrupt and shutdown are answered even while the main thread runs a long synchronous cell.
 * Shell and stdin requests are forwarded to the main thread; the main thread asks this thread to send. */
import { writeSync } from "node:fs";
import process from "node:process";
import { parentPort, workerData } from "node:worker_threads";
import * as zmq from "zeromq";
import { endpoint, type ConnectionInfo } from "./connection.js";
import { decode, encode, makeHeader, Signer, SignatureError, type Message } from "./wire.js";
import type { FromIo, ToIo, Channel } from "./io-messages.js";
import { SLOT } from "./interrupt-state.js";

interface IoData {
  connection: ConnectionInfo;
  session: string;
  interruptFlag: Int32Array;
  kernelInfo: Record<string, unknown>;
}

const { connection, session, interruptFlag, kernelInfo } = workerData as IoData;
const signer = new Signer(connection.key, connection.signature_scheme);
const port = parentPort!;
const post = (m: FromIo) => port.postMessage(m);
const log = (text: string) => {
  if (process.env.LORALAB_KERNEL_DEBUG) writeSync(2, `[loralab kernel io] ${text}\n`);
};

/** zeromq sockets allow one send in flight at a time: chain the sends per socket. */
class Outbox {
  private tail: Promise<void> = Promise.resolve();
  constructor(readonly socket: zmq.Router | zmq.Publisher) {}
  send(frames: (Buffer | Uint8Array)[]): Promise<void> {
    this.tail = this.tail.then(() => this.socket.send(frames)).catch((e) => log(`send failed: ${e}`));
    return this.tail;
  }
}

const shell = new zmq.Router();
const control = new zmq.Router();
const stdin = new zmq.Router();
const iopub = new zmq.Publisher();
const hb = new zmq.Reply();
for (const s of [shell, control, stdin, iopub, hb]) s.linger = 1000;
const outboxes: Record<Channel | "iopub", Outbox> = {
  shell: new Outbox(shell),
  control: new Outbox(control),
  stdin: new Outbox(stdin),
  iopub: new Outbox(iopub),
};

function send(channel: Channel | "iopub", msgType: string, content: unknown, parent: { header: Partial<Message["header"]>; identities?: Uint8Array[] }, extra: { metadata?: Record<string, unknown>; buffers?: Uint8Array[] } = {}): Promise<void> {
  const header = makeHeader(msgType, session);
  const frames = encode(
    {
      identities: channel === "iopub" ? [Buffer.from(`kernel.${session}.${msgType}`)] : (parent.identities ?? []),
      header,
      parent_header: parent.header,
      metadata: extra.metadata ?? {},
      content: content as Record<string, unknown>,
      buffers: extra.buffers ?? [],
    },
    signer,
  );
  return outboxes[channel].send(frames);
}

const status = (state: string, parent: Message) => send("iopub", "status", { execution_state: state }, parent);

/** Requests this thread answers itself: static, or needed while the main thread may be blocked. */
async function handleHere(channel: Channel, msg: Message): Promise<boolean> {
  const type = msg.header.msg_type;
  const reply = channel === "stdin" ? null : channel;
  if (!reply) return false;
  if (type === "kernel_info_request" && (channel === "control" || Atomics.load(interruptFlag, SLOT.HANDLING) === 0)) {
    await status("busy", msg);
    await send(reply, "kernel_info_reply", kernelInfo, msg);
    await status("idle", msg);
    return true;
  }
  if (type === "shutdown_request") {
    // On control per the spec; older clients send it on shell.
    const restart = Boolean(msg.content.restart);
    await status("busy", msg);
    await send(reply, "shutdown_reply", { status: "ok", restart }, msg);
    await send("iopub", "shutdown_reply", { status: "ok", restart }, msg);
    await status("idle", msg);
    // Close the sockets here (zeromq aborts the process if a worker dies with sockets open), then let
    // the main thread exit; if a synchronous cell blocks it, end the process anyway.
    await new Promise((r) => setTimeout(r, 20));
    for (const s of [shell, control, stdin, iopub, hb]) s.close();
    post({ t: "shutdown", restart });
    setTimeout(() => process.kill(process.pid, "SIGTERM"), 1500);
    return true;
  }
  if (channel !== "control") return false;
  if (type === "interrupt_request") {
    await status("busy", msg);
    const generation = Atomics.add(interruptFlag, SLOT.GENERATION, 1) + 1;
    const serial = Atomics.load(interruptFlag, SLOT.REQUEST_SERIAL);
    if (Atomics.load(interruptFlag, SLOT.IN_SCRIPT) === 1) {
      process.kill(process.pid, "SIGINT");
      // If the synchronous part ended before the signal landed, a loop after an await still stops.
      setTimeout(() => {
        if (Atomics.load(interruptFlag, SLOT.REQUEST_SERIAL) === serial) Atomics.store(interruptFlag, SLOT.LOOP_FLAG, 1);
      }, 100);
    } else {
      Atomics.store(interruptFlag, SLOT.LOOP_FLAG, 1);
    }
    post({ t: "interrupt", generation });
    await send("control", "interrupt_reply", { status: "ok" }, msg);
    await status("idle", msg);
    return true;
  }
  if (type === "debug_request" || type === "usage_request") {
    await status("busy", msg);
    await send("control", type.replace("_request", "_reply"), { status: "error", ename: "NotImplemented", evalue: `${type} is not supported`, traceback: [] }, msg);
    await status("idle", msg);
    return true;
  }
  return false;
}

async function receive(channel: Channel, socket: zmq.Router): Promise<void> {
  for await (const frames of socket) {
    let msg: Message;
    try {
      msg = decode(frames, signer);
    } catch (e) {
      // A message that fails the HMAC check is dropped unanswered (as ipykernel does).
      writeSync(2, `[loralab kernel] rejected a ${channel} message: ${(e as Error).message}\n`);
      if (!(e instanceof SignatureError)) log(String(e));
      continue;
    }
    log(`${channel} <- ${msg.header.msg_type}`);
    if (await handleHere(channel, msg)) continue;
    post({ t: "msg", channel, msg });
  }
}

/** Replies posted after a sync are held until every sync is answered: a client that reacts to the error reply
 * with a new request must not have that request forwarded before the marker (it would be aborted as queued). */
const held: Extract<ToIo, { t: "send" }>[] = [];
let unansweredSyncs = 0;

function sendNow(m: Extract<ToIo, { t: "send" }>): void {
  void send(m.channel, m.msgType, m.content, { header: m.parent ?? {}, identities: m.identities }, { metadata: m.metadata, buffers: m.buffers });
}

port.on("message", (m: ToIo) => {
  if (m.t === "send") {
    if (unansweredSyncs > 0) held.push(m);
    else sendNow(m);
  } else if (m.t === "sync") {
    // Answer after the messages zeromq already delivered to this thread were forwarded.
    unansweredSyncs++;
    setImmediate(() => {
      post({ t: "synced", id: m.id });
      if (--unansweredSyncs === 0) for (const x of held.splice(0)) sendNow(x);
    });
  }
});

async function heartbeat(): Promise<void> {
  for await (const frames of hb) await hb.send(frames);
}

await Promise.all([
  shell.bind(endpoint(connection, connection.shell_port)),
  control.bind(endpoint(connection, connection.control_port)),
  stdin.bind(endpoint(connection, connection.stdin_port)),
  iopub.bind(endpoint(connection, connection.iopub_port)),
  hb.bind(endpoint(connection, connection.hb_port)),
]);
// Like ipykernel's parent poller: a kernel whose launcher (JPY_PARENT_PID) died must not live on.
const launcher = Number(process.env.JPY_PARENT_PID);
if (launcher > 1) {
  setInterval(() => {
    if (process.ppid !== launcher) process.kill(process.pid, "SIGTERM");
  }, 1000).unref();
}
void send("iopub", "status", { execution_state: "starting" }, { header: {} });
post({ t: "ready" });
/** Receive loops end with an error when shutdown closes their socket. */
const untilClosed = (loop: Promise<void>) => loop.catch((e) => log(`socket loop ended: ${e}`));
void untilClosed(heartbeat());
void untilClosed(receive("shell", shell));
void untilClosed(receive("control", control));
void untilClosed(receive("stdin", stdin));
