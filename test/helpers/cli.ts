import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "./paths.js";

// runs the CLI from source (no build needed), exactly as bin/loralab.js runs dist/
const RUNNER = `const { main } = await import(${JSON.stringify(join(REPO_ROOT, "lib/cli/main.ts"))}); process.exitCode = await main(process.argv.slice(1));`;
const ARGS = ["--import", "tsx", "--input-type=module", "-e", RUNNER];

/** `loralab ...args` to completion: status, stdout, stderr. */
export const cli = (...args: string[]) => spawnSync(process.execPath, [...ARGS, ...args], { encoding: "utf8", cwd: REPO_ROOT });

/** `loralab ...args` as a running child process (to signal it). */
export const cliProcess = (...args: string[]): ChildProcessWithoutNullStreams => spawn(process.execPath, [...ARGS, ...args], { cwd: REPO_ROOT });
