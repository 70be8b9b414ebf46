import assert from "node:assert/strict";
import { installedKernel, KERNEL_TESTS, pythonHas, runPython, unittestResults, type KernelEnv } from "./kernel/harness.js";

/** The Jupyter project's own kernel conformance suite (jupyter_kernel_test), run against our kernel
 * installed into a temporary prefix. Every sample the suite knows about is filled in. */
describe("kernel: jupyter_kernel_test conformance", function () {
  this.timeout(180_000);
  let k: KernelEnv;
  let output = "";
  let results = new Map<string, string>();

  before(async () => {
    assert.ok(pythonHas(["jupyter_kernel_test", "jupyter_client"]), "python3-jupyter-kernel-test is not installed (.ci/run installs it)");
    k = installedKernel();
    const r = await runPython(["-m", "unittest", "-v", "test_conformance"], { env: k.env, cwd: KERNEL_TESTS });
    output = r.output;
    results = unittestResults(output);
    assert.match(output, /Ran 12 tests/, output);
  });
  after(() => k?.cleanup());

  const expected = [
    "test_kernel_info",
    "test_execute_stdout",
    "test_execute_stderr",
    "test_completion",
    "test_is_complete",
    "test_pager",
    "test_error",
    "test_execute_result",
    "test_display_data",
    "test_history",
    "test_inspect",
    "test_clear_output",
  ];
  for (const name of expected) {
    it(name, () => assert.equal(results.get(name), "ok", output));
  }
  it("runs nothing as skipped", () => assert.doesNotMatch(output, /skipped/, output));
});
