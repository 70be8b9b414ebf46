"""jupyter_kernel_test conformance suite for the loralab kernel (run by test/kernel-conformance.test.ts)."""
import os
import unittest

import jupyter_kernel_test

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'
# A 1x1 transparent PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


class LoralabKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = os.environ.get("LORALAB_KERNEL_NAME", "loralab")
    language_name = "typescript"
    file_extension = ".ts"

    code_hello_world = 'console.log("hello, world")'
    code_stderr = 'console.error("something went wrong")'

    completion_samples = [
        {"text": "console.lo", "matches": {"log"}},
        {"text": "Math.ma", "matches": {"max"}},
        {"text": "const someLongName = 1; someLong", "matches": {"someLongName"}},
    ]
    complete_code_samples = ["1 + 1", "const x = 1;", "function f() { return 1 }", "for (const i of [1]) console.log(i)"]
    incomplete_code_samples = ["function f() {", "const a = [1, 2,", "`unterminated ${1}", "if (true)"]
    invalid_code_samples = ["let 1x = 5", "const = 3;", "1 +* 2"]

    code_page_something = "?Math.max"
    code_generate_error = 'throw new Error("boom")'
    code_execute_result = [
        {"code": "1 + 2", "result": "3"},
        {"code": '"a" + "b"', "result": "ab"},
        {"code": "[1, 2, 3].map((x) => x * 2).length", "result": "3"},
        {"code": '({ [Symbol.for("Jupyter.display")]() { return { "text/html": "<b>rich</b>" }; } })', "mime": "text/html", "result": "<b>rich</b>"},
    ]
    code_display_data = [
        {"code": 'display.html("<b>hi</b>")', "mime": "text/html"},
        {"code": 'display.markdown("*hi*")', "mime": "text/markdown"},
        {"code": f"display.svg({SVG!r})", "mime": "image/svg+xml"},
        {"code": f'display.png("{PNG}")', "mime": "image/png"},
        {"code": "display.json({ a: 1 })", "mime": "application/json"},
        {"code": 'display.vegalite({ mark: "bar", data: { values: [{ a: 1 }] } })', "mime": "application/vnd.vegalite.v5+json"},
        {"code": 'display({ [Symbol.for("Jupyter.display")]() { return { "text/latex": "$x^2$" }; } })', "mime": "text/latex"},
    ]
    code_history_pattern = "1 + *"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "Math.max"
    code_clear_output = "clearOutput()"


if __name__ == "__main__":
    unittest.main()
