const LORALAB_ERROR = Symbol.for("loralab.LoralabError");

/** An error caused by the user's input (a file, tensor, module or option). The CLI prints its message
 * without a stack trace and exits non-zero. The message must name the thing at fault. */
export class LoralabError extends Error {
  override name = "LoralabError";
  /** brand shared by every copy of this module (a loader may evaluate it twice: `instanceof` then fails) */
  readonly [LORALAB_ERROR] = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** `instanceof LoralabError` that also holds when the error comes from another copy of this module. */
export function isLoralabError(e: unknown): e is LoralabError {
  return e instanceof LoralabError || (typeof e === "object" && e !== null && (e as Record<symbol, unknown>)[LORALAB_ERROR] === true);
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
