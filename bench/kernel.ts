/** Kernel benchmark (prints JSON): start to first idle, first execute, round trip of `1 + 1` (median of
 * 50), idle RSS (after 3 s idle) and (loralab only) then a cell importing loralab, first and again, for the loralab kernel and — installed into a temp dir at bench time — tslab.
 * Drives each kernel over zeromq with the Jupyter wire protocol, as a frontend does.
 * Usage: npx tsx bench/kernel.ts [--no-tslab] [--tslab-version 1.0.22] [--runs 50] [--first-cell CODE]
 * (--first-cell: the code of the first execute, default `1 + 1`). */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as zmq from "zeromq";
import { decode, encode, makeHeader, Signer, type Message } from "../kernel/wire.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

/** RSS of a process and its descendants, from /proc (Linux). */
function treeRssMiB(pid: number): number {
  const children = new Map<number, number[]>();
  for (const d of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      continue;
    }
  }
  let kb = 0;
  const visit = (p: number) => {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, "utf8"))?.[1] ?? 0);
    } catch {
      return;
    }
    (children.get(p) ?? []).forEach(visit);
  };
  visit(pid);
  return kb / 1024;
}

class Client {
  readonly shell = new zmq.Dealer();
  readonly control = new zmq.Dealer();
  readonly iopub = new zmq.Subscriber();
  private readonly signer: Signer;
  private readonly session = randomUUID();
  private readonly waiters: ((m: Message, channel: string) => boolean)[] = [];

  constructor(readonly conn: Record<string, any>) {
    this.signer = new Signer(conn.key);
    const at = (p: number) => `tcp://${conn.ip}:${p}`;
    this.shell.connect(at(conn.shell_port));
    this.control.connect(at(conn.control_port));
    this.iopub.connect(at(conn.iopub_port));
    this.iopub.subscribe();
    for (const [name, sock] of [["shell", this.shell], ["control", this.control], ["iopub", this.iopub]] as const) void this.pump(name, sock);
  }

  private async pump(name: string, sock: zmq.Dealer | zmq.Subscriber): Promise<void> {
    try {
      for await (const frames of sock) {
        const msg = decode(frames, this.signer);
        for (let i = 0; i < this.waiters.length; i++) if (this.waiters[i](msg, name)) this.waiters.splice(i--, 1);
      }
    } catch {
      /* socket closed */
    }
  }

  send(channel: "shell" | "control", type: string, content: Record<string, unknown>): string {
    const header = makeHeader(type, this.session);
    void (channel === "shell" ? this.shell : this.control).send(encode({ header, parent_header: {}, metadata: {}, content, buffers: [] }, this.signer));
    return header.msg_id;
  }

  /** Resolves when both the reply and the idle status of request `id` have arrived. */
  done(id: string, timeoutMs = 60_000): Promise<Message> {
    let reply: Message | undefined;
    let idle = false;
    return new Promise((res, rej) => {
      const timer = setTimeout(() => rej(new Error("timed out waiting for the kernel")), timeoutMs);
      this.waiters.push((m, ch) => {
        if (m.parent_header.msg_id !== id) return false;
        if (ch !== "iopub") reply = m;
        else if (m.header.msg_type === "status" && (m.content as { execution_state: string }).execution_state === "idle") idle = true;
        if (reply && idle) {
          clearTimeout(timer);
          res(reply);
          return true;
        }
        return false;
      });
    });
  }

  close(): void {
    for (const s of [this.shell, this.control, this.iopub]) s.close();
  }
}

interface Result {
  kernel: string;
  start_to_idle_ms: number;
  first_execute_ms: number;
  roundtrip_1plus1_median_ms: number;
  roundtrip_1plus1_p90_ms: number;
  idle_rss_mib: number;
  /** loralab only, after the idle RSS: a cell importing the loralab API, the first time and again. */
  import_loralab_first_ms?: number;
  import_loralab_again_ms?: number;
}

let firstCell = "1 + 1";

async function measure(kernel: string, argv: (connFile: string) => string[], runs: number, importCell?: string): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), "kernel-bench-"));
  const conn = { transport: "tcp", ip: "127.0.0.1", key: randomUUID(), signature_scheme: "hmac-sha256", shell_port: 0, iopub_port: 0, stdin_port: 0, control_port: 0, hb_port: 0 };
  for (const k of ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"] as const) conn[k] = await freePort();
  const file = join(dir, "connection.json");
  writeFileSync(file, JSON.stringify(conn));
  const [cmd, ...args] = argv(file);
  const t0 = performance.now();
  const child: ChildProcess = spawn(cmd, args, { cwd: dir, stdio: ["ignore", "ignore", "inherit"] });
  const client = new Client(conn);
  try {
    // Ask for kernel_info until the kernel answers (its sockets may not be bound yet).
    let startToIdle = 0;
    for (;;) {
      const id = client.send("shell", "kernel_info_request", {});
      const ok = await client.done(id, 200).then(() => true, () => false);
      if (ok) {
        startToIdle = performance.now() - t0;
        break;
      }
      if (performance.now() - t0 > 60_000) throw new Error(`${kernel} did not answer kernel_info in 60 s`);
    }
    const exec = async (code: string) => {
      const t = performance.now();
      const reply = await client.done(client.send("shell", "execute_request", { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true }));
      if ((reply.content as { status: string }).status !== "ok") throw new Error(`${kernel}: '${code}' failed: ${JSON.stringify(reply.content)}`);
      return performance.now() - t;
    };
    const first = await exec(firstCell);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) times.push(await exec("1 + 1"));
    times.sort((a, b) => a - b);
    // Idle a while, as a user typing the next cell (loralab builds its full type checker when idle).
    await new Promise((r) => setTimeout(r, 3000));
    const rss = treeRssMiB(child.pid!);
    const imports = importCell ? [await exec(importCell), await exec(importCell)] : undefined;
    await client.done(client.send("control", "shutdown_request", { restart: false }), 5000).catch(() => undefined);
    return {
      kernel,
      start_to_idle_ms: round(startToIdle),
      first_execute_ms: round(first),
      roundtrip_1plus1_median_ms: round(times[Math.floor(times.length / 2)]),
      roundtrip_1plus1_p90_ms: round(times[Math.floor(times.length * 0.9)]),
      idle_rss_mib: round(rss),
      ...(imports ? { import_loralab_first_ms: round(imports[0]), import_loralab_again_ms: round(imports[1]) } : {}),
    };
  } finally {
    client.close();
    await new Promise((r) => setTimeout(r, 200));
    if (child.exitCode === null) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

const round = (x: number) => Math.round(x * 100) / 100;

function installTslab(version: string): string | undefined {
  const prefix = mkdtempSync(join(tmpdir(), "tslab-"));
  const r = spawnSync("npm", ["i", `tslab@${version}`, "--prefix", prefix, "--no-audit", "--no-fund", "--loglevel=error"], { encoding: "utf8" });
  const bin = join(prefix, "node_modules/tslab/bin/tslab");
  if (r.status !== 0 || !existsSync(bin)) {
    process.stderr.write(`tslab@${version} could not be installed: ${r.stderr}\n`);
    return undefined;
  }
  return bin;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { "no-tslab": { type: "boolean" }, "tslab-version": { type: "string", default: "1.0.22" }, runs: { type: "string", default: "50" }, "first-cell": { type: "string" } } });
  if (values["first-cell"]) firstCell = values["first-cell"];
  const runs = Number(values.runs);
  if (!existsSync(join(ROOT, "dist/kernel/main.js"))) throw new Error("build first: npx tsc -p .");
  const results: Result[] = [];
  results.push(await measure("loralab", (f) => [process.execPath, join(ROOT, "bin/loralab.js"), "kernel", "start", "--connection-file", f], runs, 'import { merge, quantizeModel } from "loralab";\ntypeof merge + typeof quantizeModel'));
  let tslabNote: string | undefined;
  if (!values["no-tslab"]) {
    const bin = installTslab(values["tslab-version"]!);
    if (bin) results.push(await measure(`tslab@${values["tslab-version"]}`, (f) => [process.execPath, bin, "kernel", "--config-path", f], runs));
    else tslabNote = "tslab could not be installed";
  }
  const out = { node: process.version, cpus: (await import("node:os")).cpus().length, runs, first_cell: firstCell, results, ...(tslabNote ? { note: tslabNote } : {}) };
  process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  process.exit(0);
}

await main();
