import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** The read-only shared data beside the checkout (override with LORALAB_SHARED_DATA). */
export const SHARED_DATA = process.env.LORALAB_SHARED_DATA ?? resolve(REPO_ROOT, "../shared/data");
export const data = (...parts: string[]) => join(SHARED_DATA, ...parts);

/** A fresh temporary directory, removed after the current mocha suite when `cleanup` is called. */
export function tempDir(prefix = "loralab-test-"): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}
