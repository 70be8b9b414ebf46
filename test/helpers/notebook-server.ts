import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";

/** A free TCP port on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** Debian's classic `jupyter-notebook` serving `dir` on localhost with a random token. */
export async function startNotebookServer(dir: string): Promise<{ url(path: string): string; stop(): Promise<void> }> {
  const port = await freePort();
  const token = randomBytes(16).toString("hex");
  const proc: ChildProcess = spawn("jupyter-notebook", [
    "--no-browser", "--allow-root", "--ip=127.0.0.1", `--port=${port}`, `--notebook-dir=${dir}`,
    `--NotebookApp.token=${token}`, "--NotebookApp.open_browser=False",
  ], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, JUPYTER_CONFIG_DIR: `${dir}/.jupyter-config` } });
  let log = "";
  proc.stdout!.on("data", (d) => (log += d));
  proc.stderr!.on("data", (d) => (log += d));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`jupyter-notebook exited early:\n${log}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/api/status?token=${token}`);
      if (res.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) { proc.kill(); throw new Error(`jupyter-notebook did not start within 30 s:\n${log}`); }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url: (path) => `http://127.0.0.1:${port}/${path}?token=${token}`,
    stop: async () => {
      proc.kill("SIGTERM");
      await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once("exit", r)));
    },
  };
}

/** Flags for headless Chromium on machines without network (no background connections). */
export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
