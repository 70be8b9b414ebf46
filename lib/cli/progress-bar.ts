import cliProgress from "cli-progress";
import type { ProgressCallback } from "../progress.js";

/** A progress bar on stderr (only when stderr is a terminal; otherwise one line per phase). Returns the
 * callback to hand to library functions and a `stop()` to call when done. */
export function terminalProgress(quiet = false): { onProgress: ProgressCallback; stop(): void } {
  if (quiet) return { onProgress: () => {}, stop: () => {} };
  if (!process.stderr.isTTY) {
    let lastPhase = "";
    return {
      onProgress: (e) => {
        if (e.phase !== lastPhase) process.stderr.write(`${e.phase}...\n`);
        lastPhase = e.phase;
      },
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: "{phase} [{bar}] {percentage}% {value}/{total} {unit} {label}", hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let phase = "";
  return {
    onProgress: (e) => {
      const payload = { phase: e.phase, unit: e.unit, label: e.label ?? "" };
      if (!started || e.phase !== phase) {
        if (started) bar.stop();
        bar.start(e.total, e.done, payload);
        started = true;
        phase = e.phase;
      } else {
        bar.setTotal(e.total);
        bar.update(e.done, payload);
      }
    },
    stop: () => { if (started) bar.stop(); },
  };
}
