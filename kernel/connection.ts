import { readFileSync } from "node:fs";
import { LoralabError } from "../lib/errors.js";

/** The connection file Jupyter writes for a kernel (ports, transport, HMAC key). */
export interface ConnectionInfo {
  transport: "tcp" | "ipc";
  ip: string;
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
  key: string;
  signature_scheme: string;
  kernel_name?: string;
}

export function readConnectionFile(path: string): ConnectionInfo {
  let info: ConnectionInfo;
  try {
    info = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new LoralabError(`cannot read connection file ${path}: ${(e as Error).message}`);
  }
  for (const k of ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"] as const) {
    if (info.transport !== "ipc" && !Number.isInteger(info[k])) throw new LoralabError(`connection file ${path}: '${k}' is missing or not a port number`);
  }
  info.transport ??= "tcp";
  info.signature_scheme ??= "hmac-sha256";
  info.key ??= "";
  return info;
}

/** zeromq endpoint for one channel; ipc endpoints are `<ip>-<port>` files, as jupyter_client names them. */
export function endpoint(info: ConnectionInfo, port: number): string {
  return info.transport === "ipc" ? `ipc://${info.ip}-${port}` : `tcp://${info.ip}:${port}`;
}
