/** Int32 slots shared by the main thread and the I/O thread (a SharedArrayBuffer) for interrupts.
 *
 * An interrupt_request is delivered the way that cannot hit a later cell:
 * - while the main thread runs the synchronous part of a cell (IN_SCRIPT), by SIGINT, which vm's
 *   `breakOnSigint` turns into an exception; the loop flag is not raised then, so a loop check cannot
 *   end the script first and leave the signal pending for the next script;
 * - otherwise by raising LOOP_FLAG (loops in cell code check it) and a message to the main thread,
 *   which rejects an awaiting cell and fires its AbortSignal.
 * GENERATION counts interrupt_requests, so a late SIGINT is never applied to a request that started
 * after it; REQUEST_SERIAL counts requests, so a delayed flag never lands on the next request.
 *
 * HANDLING is 1 while the main thread handles a shell request: the I/O thread then queues a shell
 * kernel_info_request behind it (its busy/idle must not tell the frontend the kernel is idle mid-cell)
 * instead of answering at once as it does at startup and on control. */
export const SLOT = { LOOP_FLAG: 0, GENERATION: 1, IN_SCRIPT: 2, REQUEST_SERIAL: 3, HANDLING: 4 } as const;

export function createInterruptState(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(5 * 4));
}
