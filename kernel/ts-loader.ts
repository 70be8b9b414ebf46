/** Loads the `typescript` module fast. Its 9 MB of CommonJS are compiled with a V8 code cache kept in
 * the temp directory (Node 20 has no built-in compile cache), so later kernel starts skip compiling it
 * and the functions the checker ran last time. Loading it with ESM `import` instead would make Node
 * scan the whole file for module syntax and named exports first (about a second of CPU). */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import vm from "node:vm";
import type * as TS from "typescript";

let loaded: { ts: typeof TS; save?: () => void } | undefined;

/** The `typescript` module (loaded once). */
export function typescript(): typeof TS {
  loaded ??= load();
  return loaded.ts;
}

/** Writes the code cache if this process compiled TypeScript without a usable one; best done after
 * the checker has run, so the cache holds its compiled functions too. */
export function saveTypeScriptCodeCache(): void {
  const save = loaded?.save;
  if (!save) return;
  loaded!.save = undefined;
  try {
    save();
  } catch {
    /* a cache is an optimisation: a read-only temp dir only costs speed */
  }
}

function load(): { ts: typeof TS; save?: () => void } {
  const require = createRequire(import.meta.url);
  const file = require.resolve("typescript");
  if (process.env.LORALAB_KERNEL_NO_CODE_CACHE) return { ts: require(file) };
  let source: string;
  let cacheFile: string;
  try {
    source = readFileSync(file, "utf8");
    const st = statSync(file);
    const key = createHash("sha256").update(`${file}\0${st.size}\0${st.mtimeMs}\0${process.version}\0${process.arch}`).digest("hex").slice(0, 16);
    cacheFile = join(cacheDir(), `typescript-${key}.bin`);
  } catch {
    return { ts: require(file) };
  }
  let cachedData: Buffer | undefined;
  try {
    if (ownPrivateDir(dirname(cacheFile))) cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });
  const module = { exports: {} as Record<string, unknown> };
  (script.runInThisContext() as Function).call(module.exports, module.exports, createRequire(file), module, file, dirname(file));
  const ts = module.exports as unknown as typeof TS;
  const save = !cachedData || script.cachedDataRejected
    ? () => {
        mkdirSync(dirname(cacheFile), { recursive: true, mode: 0o700 });
        if (!ownPrivateDir(dirname(cacheFile))) return;
        const tmp = `${cacheFile}.${process.pid}.tmp`;
        writeFileSync(tmp, script.createCachedData());
        renameSync(tmp, cacheFile);
      }
    : undefined;
  return { ts, save };
}

/** A per-user directory under the temp dir (Node's own compile cache lives there too). */
function cacheDir(): string {
  return join(tmpdir(), `loralab-compile-cache-${process.getuid?.() ?? "user"}`);
}

/** Code caches are trusted input to V8: use only a directory that this user owns and nobody else can
 * write to (the temp dir is shared). */
function ownPrivateDir(dir: string): boolean {
  const st = statSync(dir);
  return st.isDirectory() && (process.getuid === undefined || st.uid === process.getuid()) && (st.mode & 0o022) === 0;
}
