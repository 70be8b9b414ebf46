/** Shared setup for the kernel tests: a kernelspec installed into a temporary prefix (never the user's
 * Jupyter dirs) and a runner for Debian's python3 with jupyter_client / jupyter_kernel_test / nbclient. */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, tempDir } from "../helpers/paths.js";

/** Debian's packages install into /usr/bin/python3 (pyenv's python3 may come first on PATH). */
export const PYTHON = process.env.LORALAB_PYTHON ?? "/usr/bin/python3";
export const KERNEL_TESTS = join(REPO_ROOT, "test/kernel");
export const KERNEL_NAME = "loralab-test";

/** The kernel runs from dist/: refuse to test a stale build rather than test old code. */
export function assertBuilt(): void {
  const check = (dir: string) => {
    for (const f of readdirSync(join(REPO_ROOT, dir))) {
      const rel = join(dir, f);
      if (statSync(join(REPO_ROOT, rel)).isDirectory()) check(rel);
      else if (f.endsWith(".ts") && !f.endsWith(".d.ts")) {
        const js = join(REPO_ROOT, "dist", rel.replace(/\.ts$/, ".js"));
        if (!existsSync(js) || statSync(js).mtimeMs + 1000 < statSync(join(REPO_ROOT, rel)).mtimeMs) {
          throw new Error(`${js} is missing or older than ${rel}: run \`npx tsc -p .\` first (npm test does)`);
        }
      }
    }
  };
  check("kernel");
}

export interface KernelEnv {
  env: NodeJS.ProcessEnv;
  root: string;
  cleanup(): void;
}

/** Installs the kernelspec with the CLI into a temp prefix; JUPYTER_* point only at temp dirs. */
export function installedKernel(): KernelEnv {
  assertBuilt();
  const t = tempDir("loralab-kernel-");
  const prefix = join(t.path, "prefix");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    JUPYTER_PATH: join(prefix, "share/jupyter"),
    JUPYTER_DATA_DIR: join(t.path, "data"),
    JUPYTER_CONFIG_DIR: join(t.path, "config"),
    JUPYTER_RUNTIME_DIR: join(t.path, "runtime"),
    JUPYTER_PLATFORM_DIRS: "1",
    IPYTHONDIR: join(t.path, "ipython"),
    LORALAB_KERNEL_NAME: KERNEL_NAME,
    PYTHONDONTWRITEBYTECODE: "1",
  };
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/loralab.js"), "kernel", "install", "--prefix", prefix, "--name", KERNEL_NAME], { env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`kernel install failed: ${r.stderr}`);
  return { env, root: t.path, cleanup: t.cleanup };
}

export function pythonHas(modules: string[]): boolean {
  return spawnSync(PYTHON, ["-c", `import ${modules.join(", ")}`]).status === 0;
}

export function runPython(args: string[], options: { env: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number }): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(PYTHON, args, { env: options.env, cwd: options.cwd ?? KERNEL_TESTS });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 180_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** unittest -v output -> status ("ok", "FAIL", "ERROR", "skipped") by test method name. */
export function unittestResults(output: string): Map<string, string> {
  const results = new Map<string, string>();
  for (const m of output.matchAll(/^(test_\w+) \([\w.]+\)/gm)) results.set(m[1], "ok");
  for (const m of output.matchAll(/^(test_\w+) \([\w.]+\)[^\n]*\.\.\. skipped/gm)) results.set(m[1], "skipped");
  for (const m of output.matchAll(/^(FAIL|ERROR): (test_\w+)/gm)) results.set(m[2], m[1]);
  return results;
}

/** A notebook directory with one ESM-only and one CommonJS package in node_modules. */
export function notebookDirWithPackages(root: string): string {
  const dir = join(root, "notebook");
  const pkg = (name: string, files: Record<string, string>) => {
    mkdirSync(join(dir, "node_modules", name), { recursive: true });
    for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, "node_modules", name, f), text);
  };
  pkg("esm-only", { "package.json": JSON.stringify({ name: "esm-only", type: "module", exports: { import: "./index.js" } }), "index.js": 'export const hi = "esm";\n' });
  pkg("cjs-pkg", { "package.json": JSON.stringify({ name: "cjs-pkg", main: "index.js" }), "index.js": 'exports.named = "cjs";\n' });
  return dir;
}
