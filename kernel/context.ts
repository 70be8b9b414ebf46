/** Which request a piece of code works for. Cells run inside `requests.run(ctx, ...)`, and Node's
 * AsyncLocalStorage carries the context into timers, promises and callbacks the cell creates, so their
 * output goes to the cell that started them. */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Message } from "./wire.js";

export interface RequestContext {
  msg: Message;
  /** Aborted when this request is interrupted. */
  abort: AbortController;
  allowStdin: boolean;
}

export const requests = new AsyncLocalStorage<RequestContext>();

let latest: RequestContext | undefined;

export function setLatestRequest(ctx: RequestContext): void {
  latest = ctx;
}

/** The request the calling code belongs to; code with no context (a timer set up by the kernel
 * before any cell) is attributed to the latest request. */
export function currentRequest(): RequestContext | undefined {
  return requests.getStore() ?? latest;
}
