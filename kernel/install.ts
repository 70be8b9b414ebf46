/** Kernelspec install/list/uninstall. A kernelspec is a folder `<data dir>/kernels/<name>` holding
 * kernel.json and logos; Jupyter searches JUPYTER_PATH, the user data dir and the system prefixes. */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import process from "node:process";
import { deflateSync } from "node:zlib";

export interface InstallTarget {
  user?: boolean;
  prefix?: string;
  sysPrefix?: boolean;
}

export interface KernelSpec {
  argv: string[];
  display_name: string;
  language: string;
  interrupt_mode: "message" | "signal";
  env?: Record<string, string>;
  metadata?: Record<string, unknown>;
}

/** Jupyter's per-user data dir (JUPYTER_DATA_DIR, else XDG / ~/.local/share/jupyter on Linux). */
export function userDataDir(): string {
  if (process.env.JUPYTER_DATA_DIR) return process.env.JUPYTER_DATA_DIR;
  if (process.platform === "darwin") return join(homedir(), "Library/Jupyter");
  if (process.platform === "win32") return join(process.env.APPDATA ?? homedir(), "jupyter");
  return join(process.env.XDG_DATA_HOME ?? join(homedir(), ".local/share"), "jupyter");
}

function pythonSysPrefix(): string {
  const python = process.env.PYTHON ?? "python3";
  try {
    return execFileSync(python, ["-c", "import sys; print(sys.prefix)"], { encoding: "utf8" }).trim();
  } catch (e) {
    throw new Error(`--sys-prefix asks ${python} for sys.prefix, which failed: ${(e as Error).message}`);
  }
}

/** The kernels/ folder an install target writes to (default: the user's data dir). */
export function kernelsDir(target: InstallTarget): string {
  if (target.prefix) return join(target.prefix, "share/jupyter/kernels");
  if (target.sysPrefix) return join(pythonSysPrefix(), "share/jupyter/kernels");
  return join(userDataDir(), "kernels");
}

/** Every kernels/ folder Jupyter would search, most specific first. */
export function searchDirs(): string[] {
  const dirs = (process.env.JUPYTER_PATH ?? "").split(delimiter).filter(Boolean).map((d) => join(d, "kernels"));
  dirs.push(join(userDataDir(), "kernels"), "/usr/local/share/jupyter/kernels", "/usr/share/jupyter/kernels");
  return [...new Set(dirs)];
}

export function kernelSpec(packageRoot: string, displayName = "TypeScript (loralab)"): KernelSpec {
  return {
    argv: [process.execPath, join(packageRoot, "bin/loralab.js"), "kernel", "start", "--connection-file", "{connection_file}"],
    display_name: displayName,
    language: "typescript",
    interrupt_mode: "message",
    metadata: { loralab: { version: JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")).version } },
  };
}

export function installKernelSpec(packageRoot: string, options: InstallTarget & { name?: string; displayName?: string }): string {
  const dir = join(kernelsDir(options), options.name ?? "loralab");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "kernel.json"), JSON.stringify(kernelSpec(packageRoot, options.displayName), null, 2) + "\n");
  writeFileSync(join(dir, "logo-32x32.png"), logoPng(32));
  writeFileSync(join(dir, "logo-64x64.png"), logoPng(64));
  return dir;
}

export interface InstalledSpec {
  name: string;
  dir: string;
  spec: KernelSpec;
}

/** loralab kernelspecs found on Jupyter's search path (specs whose metadata marks them as ours). */
export function listKernelSpecs(): InstalledSpec[] {
  const out: InstalledSpec[] = [];
  const seen = new Set<string>();
  for (const kernels of searchDirs()) {
    if (!existsSync(kernels)) continue;
    for (const name of readdirSync(kernels)) {
      const file = join(kernels, name, "kernel.json");
      if (seen.has(name) || !existsSync(file)) continue;
      try {
        const spec = JSON.parse(readFileSync(file, "utf8")) as KernelSpec;
        if (!spec.metadata?.loralab) continue;
        seen.add(name);
        out.push({ name, dir: join(kernels, name), spec });
      } catch {
        continue;
      }
    }
  }
  return out;
}

/** Removes a loralab kernelspec; with a target, only from there. Returns the removed folders. */
export function uninstallKernelSpec(name: string, target?: InstallTarget): string[] {
  const candidates = target && (target.prefix || target.sysPrefix || target.user) ? [join(kernelsDir(target), name)] : listKernelSpecs().filter((s) => s.name === name).map((s) => s.dir);
  const removed: string[] = [];
  for (const dir of candidates) {
    const file = join(dir, "kernel.json");
    if (!existsSync(file)) continue;
    const spec = JSON.parse(readFileSync(file, "utf8")) as KernelSpec;
    if (!spec.metadata?.loralab) throw new Error(`${dir} is not a loralab kernelspec; not removing it`);
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

// --- logo: a TypeScript-blue rounded square with a white "L", encoded as PNG by hand ---

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

export function logoPng(size: number): Buffer {
  const rows: Buffer[] = [];
  const r = size * 0.18;
  for (let y = 0; y < size; y++) {
    const row = Buffer.alloc(1 + size * 4);
    for (let x = 0; x < size; x++) {
      const cx = Math.min(Math.max(x + 0.5, r), size - r);
      const cy = Math.min(Math.max(y + 0.5, r), size - r);
      const inside = (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r;
      const u = x / size;
      const v = y / size;
      const letter = (u >= 0.3 && u < 0.42 && v >= 0.22 && v < 0.78) || (u >= 0.3 && u < 0.72 && v >= 0.66 && v < 0.78);
      const [R, G, B] = letter ? [255, 255, 255] : [49, 120, 198];
      row.set([R, G, B, inside ? 255 : 0], 1 + x * 4);
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 6, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.concat(rows))), chunk("IEND", new Uint8Array())]);
}
