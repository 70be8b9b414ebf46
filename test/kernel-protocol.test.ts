import assert from "node:assert/strict";
import { installedKernel, KERNEL_TESTS, notebookDirWithPackages, pythonHas, runPython, unittestResults, type KernelEnv } from "./kernel/harness.js";

/** Protocol behaviour jupyter_kernel_test does not cover, driven through jupyter_client and raw zeromq
 * against the real kernel process (test/kernel/test_protocol.py). */
describe("kernel: protocol through jupyter_client", function () {
  this.timeout(180_000);
  let k: KernelEnv;
  let output = "";
  let results = new Map<string, string>();

  before(async () => {
    assert.ok(pythonHas(["jupyter_client", "zmq"]), "python3-jupyter-client is not installed (.ci/run installs it)");
    k = installedKernel();
    const env = { ...k.env, LORALAB_NOTEBOOK_DIR: notebookDirWithPackages(k.root) };
    const r = await runPython(["-m", "unittest", "-v", "test_protocol"], { env, cwd: KERNEL_TESTS });
    output = r.output;
    results = unittestResults(output);
    assert.match(output, /Ran \d+ tests/, output);
  });
  after(() => k?.cleanup());

  const expected: [string, string][] = [
    ["test_kernel_info_and_execute_input", "kernel_info fields, execute_input, busy first"],
    ["test_bad_signature_rejected", "a message with a bad HMAC gets no reply; a good one does"],
    ["test_stop_on_error_aborts_queued", "stop_on_error aborts queued cells, not later ones"],
    ["test_type_error_points_at_cell_line", "type and runtime errors point at the cell's line and column"],
    ["test_types_across_cells_and_rerun", "types carry across cells; re-running `const` works"],
    ["test_imports_esm_cjs_and_loralab", "imports ESM-only and CommonJS packages and loralab/kernel"],
    ["test_stdout_from_async_callbacks", "stdout from timers while the cell awaits"],
    ["test_update_display_data", "display ids and update_display_data"],
    ["test_progress_display", "loralab/kernel progress(): one output updated in place, throttled"],
    ["test_async_display_bundles", "Promise display bundles are awaited (display() and the cell's value); a failing one shows text"],
    ["test_stdin_input_request", "input() over the stdin channel"],
    ["test_widgets_over_comms", "widgets: comm_open, frontend updates, echo, observers, click, comm_info"],
    ["test_comm_open_unknown_target_is_closed", "comm_open to an unknown target is closed"],
    ["test_interrupt_sync_loop_keeps_state", "interrupt stops a synchronous loop and keeps state"],
    ["test_heartbeat_and_kernel_info_while_busy", "heartbeat and kernel_info answer while a cell loops"],
    ["test_interrupt_loop_after_await", "interrupt stops a loop that runs after an await"],
    ["test_interrupt_await_fires_abort_signal", "interrupt rejects an awaiting cell and fires abortSignal"],
    ["test_external_sigint_interrupts", "a SIGINT from outside interrupts a loop and an await"],
    ["test_restart_and_shutdown", "restart gives a fresh kernel; shutdown ends the process"],
    ["test_shutdown_while_a_cell_loops", "shutdown_request ends the kernel even while a cell loops"],
    ["test_kernel_exits_when_launcher_dies", "the kernel exits when the process that launched it dies"],
  ];
  for (const [name, what] of expected) {
    it(`${what} (${name})`, () => assert.equal(results.get(name), "ok", output));
  }
});
