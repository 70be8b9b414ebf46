import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { LoralabError } from "../errors.js";

/** Builds an output directory atomically: everything is written into a temporary sibling directory
 * (`.<name>.tmp-<pid>-<time>`), which is renamed into place only when `commit()` is called. `abort()`
 * (or a crash, which leaves only a hidden temporary) never leaves a directory that looks complete, and
 * an existing output directory is never half-overwritten. */
export class AtomicOutputDir {
  private constructor(readonly finalPath: string, readonly path: string, private readonly overwrite: boolean) {}

  static async create(finalPath: string, opts: { overwrite?: boolean } = {}): Promise<AtomicOutputDir> {
    const out = resolve(finalPath);
    await checkOutputFree(out, !!opts.overwrite);
    await mkdir(dirname(out), { recursive: true });
    const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}-${Date.now()}`);
    await mkdir(tmp);
    return new AtomicOutputDir(out, tmp, !!opts.overwrite);
  }

  file(name: string): string {
    return join(this.path, name);
  }

  async commit(): Promise<void> {
    const existing = await stat(this.finalPath).catch(() => undefined);
    if (existing) {
      const empty = existing.isDirectory() && (await readdir(this.finalPath)).length === 0;
      if (empty) await rm(this.finalPath, { recursive: true });
      else if (this.overwrite) {
        const old = `${this.path}.old`;
        await rename(this.finalPath, old);
        await rename(this.path, this.finalPath);
        await rm(old, { recursive: true, force: true });
        return;
      } else throw new LoralabError(`output ${this.finalPath} appeared while writing; result left in ${this.path}`);
    }
    await rename(this.path, this.finalPath);
  }

  async abort(): Promise<void> {
    await rm(this.path, { recursive: true, force: true });
  }

  /** Runs `body` in the temporary directory; commits on success, removes everything on any failure. */
  static async write<T>(finalPath: string, opts: { overwrite?: boolean }, body: (dir: AtomicOutputDir) => Promise<T>): Promise<T> {
    const dir = await AtomicOutputDir.create(finalPath, opts);
    try {
      const result = await body(dir);
      await dir.commit();
      return result;
    } catch (e) {
      await dir.abort();
      throw annotateDiskError(e, finalPath);
    }
  }
}

async function checkOutputFree(out: string, overwrite: boolean): Promise<void> {
  const s = await stat(out).catch(() => undefined);
  if (!s) return;
  if (!s.isDirectory()) throw new LoralabError(`output path ${out} exists and is not a directory`);
  if (!overwrite && (await readdir(out)).length > 0)
    throw new LoralabError(`output directory ${out} already exists and is not empty (choose another --out, or pass --overwrite)`);
}

function annotateDiskError(e: unknown, out: string): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === "ENOSPC") return new LoralabError(`no space left on the device while writing ${out}; nothing was written`, { cause: e });
  if (code === "EDQUOT") return new LoralabError(`disk quota exceeded while writing ${out}; nothing was written`, { cause: e });
  if (code === "EACCES" || code === "EROFS") return new LoralabError(`cannot write ${out}: ${(e as Error).message}`, { cause: e });
  return e;
}
