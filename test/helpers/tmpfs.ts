import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

/** Runs `body` on a real tmpfs of `size` (e.g. "256k") mounted at `parent`/`name`, unmounted afterwards — a
 * genuinely full disk. Skips the test where mounting is not allowed (not root). */
export async function onTinyTmpfs(test: Mocha.Context, parent: string, name: string, size: string, body: (mnt: string) => Promise<void>): Promise<void> {
  const mnt = join(parent, name);
  mkdirSync(mnt);
  try { execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", mnt], { stdio: "ignore" }); } catch { test.skip(); }
  try { await body(mnt); } finally { execFileSync("umount", [mnt]); }
}
