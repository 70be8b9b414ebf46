/** An error caused by the user's input (a file, tensor, module or option). The CLI prints its message
 * without a stack trace and exits non-zero. The message must name the thing at fault. */
export class LoralabError extends Error {
  override name = "LoralabError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Throws the signal's reason as an AbortError when the signal is aborted. Call between units of work. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    const err = new Error("operation aborted");
    err.name = "AbortError";
    throw err;
  }
}

export function isAbortError(e: unknown): boolean {
  return e instanceof Error && e.name === "AbortError";
}
