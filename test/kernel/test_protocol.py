"""Protocol checks jupyter_kernel_test lacks, driven through jupyter_client against the real kernel
process (run by test/kernel-protocol.test.ts). The notebook dir is LORALAB_NOTEBOOK_DIR."""
import os
import time
import unittest
from queue import Empty

import zmq
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session

KERNEL = os.environ.get("LORALAB_KERNEL_NAME", "loralab")
NOTEBOOK_DIR = os.environ.get("LORALAB_NOTEBOOK_DIR", os.getcwd())
TIMEOUT = 30


def start():
    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel(cwd=NOTEBOOK_DIR)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    return km, kc


def collect(kc, msg_id, timeout=TIMEOUT):
    """iopub messages of one request up to its idle status, then its shell reply."""
    outs = []
    deadline = time.time() + timeout
    while True:
        m = kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
        outs.append(m)
    while True:
        r = kc.get_shell_msg(timeout=max(0.1, deadline - time.time()))
        if r["parent_header"].get("msg_id") == msg_id:
            return r, outs


def run(kc, code, **kw):
    return collect(kc, kc.execute(code, **kw))


def result_text(outs):
    for m in outs:
        if m["msg_type"] == "execute_result":
            return m["content"]["data"]["text/plain"]
    return None


def stdout_text(outs, name="stdout"):
    return "".join(m["content"]["text"] for m in outs if m["msg_type"] == "stream" and m["content"]["name"] == name)


class ProtocolTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.km, cls.kc = start()

    @classmethod
    def tearDownClass(cls):
        cls.kc.stop_channels()
        cls.km.shutdown_kernel(now=False)

    def test_kernel_info_and_execute_input(self):
        self.kc.kernel_info()
        info = self.kc.get_shell_msg(timeout=TIMEOUT)["content"]
        self.assertEqual(info["implementation"], "loralab")
        self.assertEqual(info["language_info"]["name"], "typescript")
        self.assertEqual(info["protocol_version"], "5.3")
        self.assertTrue(info["help_links"])
        reply, outs = run(self.kc, "40 + 2")
        inputs = [m for m in outs if m["msg_type"] == "execute_input"]
        self.assertEqual(inputs[0]["content"]["code"], "40 + 2")
        self.assertEqual(inputs[0]["content"]["execution_count"], reply["content"]["execution_count"])
        self.assertEqual(result_text(outs), "42")
        # status busy comes first, with this request as parent
        self.assertEqual(outs[0]["msg_type"], "status")
        self.assertEqual(outs[0]["content"]["execution_state"], "busy")

    def test_bad_signature_rejected(self):
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(f"tcp://{self.km.ip}:{self.km.shell_port}")
        try:
            bad = Session(key=b"not-the-key", signature_scheme="hmac-sha256")
            bad.send(sock, "kernel_info_request", {})
            self.assertEqual(sock.poll(1500), 0, "a message with a bad signature got a reply")
            good = Session(key=self.km.session.key, signature_scheme="hmac-sha256")
            good.send(sock, "kernel_info_request", {})
            self.assertNotEqual(sock.poll(5000), 0, "a correctly signed message got no reply")
            _, reply = good.recv(sock)
            self.assertEqual(reply["msg_type"], "kernel_info_reply")
        finally:
            sock.close()

    def test_stop_on_error_aborts_queued(self):
        ids = [
            self.kc.execute('await new Promise((r) => setTimeout(r, 200)); throw new Error("first fails")'),
            self.kc.execute("globalThis.queuedRan = true"),
            self.kc.execute("2"),
        ]
        statuses = []
        for i in ids:
            r, _ = collect(self.kc, i)
            statuses.append(r["content"]["status"])
        self.assertEqual(statuses, ["error", "aborted", "aborted"])
        _, outs = run(self.kc, "typeof (globalThis as any).queuedRan")
        self.assertEqual(result_text(outs), "undefined")
        # requests sent after the error reply run normally, and stop_on_error=False does not abort
        first = self.kc.execute('throw new Error("again")', stop_on_error=False)
        second = self.kc.execute("3 * 3")
        self.assertEqual(collect(self.kc, first)[0]["content"]["status"], "error")
        r, outs = collect(self.kc, second)
        self.assertEqual(r["content"]["status"], "ok", r["content"])
        self.assertEqual(result_text(outs), "9")

    def test_type_error_points_at_cell_line(self):
        reply, outs = run(self.kc, "const okLine = 1;\nconst wrong: string = okLine;")
        self.assertEqual(reply["content"]["status"], "error")
        self.assertEqual(reply["content"]["ename"], "TSError")
        tb = "\n".join(reply["content"]["traceback"])
        self.assertIn("line 2, column 7", tb)
        self.assertIn("TS2322", tb)
        # runtime errors map through the source map to the cell's own line and column
        reply, _ = run(self.kc, "const o: any = null;\n\n  const v = o.missing;")
        self.assertEqual(reply["content"]["ename"], "TypeError")
        self.assertIn("line 3, column 15", "\n".join(reply["content"]["traceback"]))

    def test_types_across_cells_and_rerun(self):
        run(self.kc, "const carried = { n: 5, s: 'x' };")
        reply, _ = run(self.kc, "const bad: string = carried.n;")
        self.assertEqual(reply["content"]["ename"], "TSError")
        self.assertIn("number", reply["content"]["evalue"])
        # re-running a cell that declares a const works, and the new type wins
        reply, outs = run(self.kc, "const carried = 'now a string'; carried.toUpperCase()")
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        self.assertEqual(result_text(outs), "NOW A STRING")
        reply, _ = run(self.kc, "const len: number = carried.length;")
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        # completion and inspection know the notebook's own declarations
        self.kc.complete("carr", 4)
        self.assertIn("carried", self.kc.get_shell_msg(timeout=TIMEOUT)["content"]["matches"])
        self.kc.inspect("carried", 3)
        self.assertIn('const carried: "now a string"', self.kc.get_shell_msg(timeout=TIMEOUT)["content"]["data"]["text/plain"])

    def test_imports_esm_cjs_and_loralab(self):
        reply, outs = run(self.kc, 'import { hi } from "esm-only"; import cjs from "cjs-pkg"; import { named } from "cjs-pkg"; `${hi} ${cjs.named} ${named}`')
        self.assertEqual(reply["content"]["status"], "ok", reply["content"].get("evalue"))
        self.assertEqual(result_text(outs), "esm cjs cjs")
        reply, outs = run(self.kc, 'import { mimeBundle } from "loralab/kernel"; mimeBundle(1)["text/plain"]')
        self.assertEqual(reply["content"]["status"], "ok", reply["content"].get("evalue"))
        self.assertEqual(result_text(outs), "1")

    def test_stdout_from_async_callbacks(self):
        reply, outs = run(self.kc, 'setTimeout(() => console.log("from timer"), 30);\nprocess.stdout.write("raw write\\n");\nawait new Promise((r) => setTimeout(r, 120));\nconsole.error("to stderr");')
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        self.assertIn("from timer", stdout_text(outs))
        self.assertIn("raw write", stdout_text(outs))
        self.assertIn("to stderr", stdout_text(outs, "stderr"))

    def test_update_display_data(self):
        reply, outs = run(self.kc, 'display.html("<p>v1</p>", { displayId: "prog" });\nupdateDisplay("prog", "v2");')
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        kinds = [(m["msg_type"], m["content"].get("transient", {}).get("display_id")) for m in outs if "display" in m["msg_type"]]
        self.assertEqual(kinds, [("display_data", "prog"), ("update_display_data", "prog")])
        upd = [m for m in outs if m["msg_type"] == "update_display_data"][0]
        self.assertEqual(upd["content"]["data"]["text/plain"], "v2")

    def test_progress_display(self):
        # loralab/kernel's progress(): one output replaced in place, throttled (the 2nd event, 100 ms
        # after the 1st not yet passed, is dropped; completion always shows)
        code = (
            'import { progress } from "loralab/kernel";\n'
            'const p = progress("job");\n'
            'for (let i = 1; i <= 3; i++) p({ phase: "work", done: i, total: 3, unit: "steps" });'
        )
        reply, outs = run(self.kc, code)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        shown = [m for m in outs if "display" in m["msg_type"]]
        self.assertEqual([m["msg_type"] for m in shown], ["display_data", "update_display_data"])
        ids = {m["content"]["transient"]["display_id"] for m in shown}
        self.assertEqual(len(ids), 1)
        self.assertEqual(shown[0]["content"]["data"]["text/plain"], "job — work: 1/3 steps 33%")
        self.assertEqual(shown[1]["content"]["data"]["text/plain"], "job — work: 3/3 steps 100%")
        self.assertIn('<progress value="100.0" max="100"', shown[1]["content"]["data"]["text/html"])

    def test_async_display_bundles(self):
        # A display method returning a Promise (plots render SVG asynchronously) is awaited, both for
        # display() and for the cell's value, and both outputs come before the reply and idle.
        code = (
            'class Later { constructor(readonly label: string, readonly ms: number) {}\n'
            '  async [Symbol.for("Jupyter.display")]() { await new Promise((r) => setTimeout(r, this.ms));'
            ' return { "image/svg+xml": `<svg><text>${this.label}</text></svg>` }; } }\n'
            'display(new Later("shown", 150));\n'
            'console.log("after display");\n'
            'new Later("result", 50)'
        )
        reply, outs = run(self.kc, code)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        rich = [(m["msg_type"], m["content"]["data"].get("image/svg+xml")) for m in outs if m["msg_type"] in ("display_data", "execute_result")]
        self.assertEqual(rich, [("display_data", "<svg><text>shown</text></svg>"), ("execute_result", "<svg><text>result</text></svg>")])
        self.assertEqual(stdout_text(outs), "after display\n")
        # A display method that throws or rejects shows the object as text; the cell does not fail.
        code = (
            'display({ n: 7, [Symbol.for("Jupyter.display")]() { throw new Error("no renderer"); } });\n'
            '({ n: 8, async [Symbol.for("Jupyter.display")]() { throw new Error("svg failed"); } })'
        )
        reply, outs = run(self.kc, code)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        plain = [(m["msg_type"], sorted(m["content"]["data"])) for m in outs if m["msg_type"] in ("display_data", "execute_result")]
        self.assertEqual(plain, [("display_data", ["text/plain"]), ("execute_result", ["text/plain"])])
        self.assertIn("n: 7", [m for m in outs if m["msg_type"] == "display_data"][0]["content"]["data"]["text/plain"])
        self.assertIn("n: 8", result_text(outs))
        err = stdout_text(outs, "stderr")
        self.assertIn("no renderer", err)
        self.assertIn("svg failed", err)

    def test_stdin_input_request(self):
        msg_id = self.kc.execute('const answer = await input("Name? "); `hello ${answer}`', allow_stdin=True)
        try:
            req = self.kc.get_stdin_msg(timeout=TIMEOUT)
        except Empty:
            self.fail(f"no input_request; reply: {collect(self.kc, msg_id)[0]['content']}")
        self.assertEqual(req["msg_type"], "input_request")
        self.assertEqual(req["content"]["prompt"], "Name? ")
        self.assertEqual(req["parent_header"]["msg_id"], msg_id)
        self.kc.input("Ada")
        reply, outs = collect(self.kc, msg_id)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        self.assertEqual(result_text(outs), "hello Ada")
        # without allow_stdin, input() fails instead of hanging
        reply, _ = run(self.kc, 'await input("x")', allow_stdin=False)
        self.assertEqual(reply["content"]["status"], "error")

    def comm_msg(self, comm_id, data):
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def test_widgets_over_comms(self):
        reply, outs = run(self.kc, "const slider = widgets.IntSlider({ value: 3, min: 0, max: 10 });\nconst seen: number[] = [];\nslider.observe((v) => seen.push(v));\nslider")
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        opens = [m for m in outs if m["msg_type"] == "comm_open" and m["content"]["data"]["state"]["_model_name"] == "IntSliderModel"]
        self.assertEqual(len(opens), 1)
        op = opens[0]
        self.assertEqual(op["content"]["target_name"], "jupyter.widget")
        self.assertEqual(op["metadata"]["version"], "2.1.0")
        self.assertEqual(op["content"]["data"]["state"]["value"], 3)
        comm_id = op["content"]["comm_id"]
        view = [m for m in outs if m["msg_type"] == "execute_result"][0]["content"]["data"]["application/vnd.jupyter.widget-view+json"]
        self.assertEqual(view["model_id"], comm_id)
        # the frontend moves the slider: observers fire, the kernel echoes the update
        upd = self.comm_msg(comm_id, {"method": "update", "state": {"value": 7}, "buffer_paths": []})
        outs = self.iopub_until_idle(upd)
        echo = [m for m in outs if m["msg_type"] == "comm_msg"]
        self.assertEqual(echo[0]["content"]["data"], {"method": "echo_update", "state": {"value": 7}, "buffer_paths": []})
        _, outs = run(self.kc, "[slider.value, seen.join(',')].join(' ')")
        self.assertEqual(result_text(outs), "7 7")
        # kernel-side change is sent to the frontend
        _, outs = run(self.kc, "slider.value = 9;")
        sent = [m for m in outs if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id]
        self.assertEqual(sent[0]["content"]["data"]["state"], {"value": 9})
        # comm_info lists it
        self.kc.comm_info(target_name="jupyter.widget")
        info = self.kc.get_shell_msg(timeout=TIMEOUT)
        self.assertIn(comm_id, info["content"]["comms"])
        # the frontend closes the comm: it leaves comm_info
        close = self.kc.session.msg("comm_close", {"comm_id": comm_id, "data": {}})
        self.kc.shell_channel.send(close)
        self.iopub_until_idle(close["header"]["msg_id"])
        self.kc.comm_info(target_name="jupyter.widget")
        self.assertNotIn(comm_id, self.kc.get_shell_msg(timeout=TIMEOUT)["content"]["comms"])
        # the Output widget carries its outputs in its state
        _, outs = run(self.kc, 'const out = widgets.Output();\nout.appendStdout("line\\n");\nout.appendMime({ "text/html": "<b>h</b>" });')
        oid = [m for m in outs if m["msg_type"] == "comm_open" and m["content"]["data"]["state"]["_model_name"] == "OutputModel"][0]["content"]["comm_id"]
        updates = [m["content"]["data"]["state"]["outputs"] for m in outs if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == oid]
        self.assertEqual(updates[-1], [{"output_type": "stream", "name": "stdout", "text": "line\n"}, {"output_type": "display_data", "data": {"text/html": "<b>h</b>"}, "metadata": {}}])
        # a button click arrives as a custom message
        _, outs = run(self.kc, "let clicks = 0;\nconst button = widgets.Button({ description: 'go' });\nbutton.onClick(() => clicks++);\nbutton")
        bid = [m for m in outs if m["msg_type"] == "execute_result"][0]["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        self.iopub_until_idle(self.comm_msg(bid, {"method": "custom", "content": {"event": "click"}}))
        _, outs = run(self.kc, "clicks")
        self.assertEqual(result_text(outs), "1")
        # dropdown / selection slider sync `index`; `value` is the option
        _, outs = run(self.kc, "const dd = widgets.Dropdown({ options: [32, 64, 128], value: 64 });\nlet picked = 0;\ndd.observe((v) => (picked = v));\ndd")
        state = [m for m in outs if m["msg_type"] == "comm_open" and m["content"]["data"]["state"]["_model_name"] == "DropdownModel"][0]["content"]
        self.assertEqual(state["data"]["state"]["_options_labels"], ["32", "64", "128"])
        self.assertEqual(state["data"]["state"]["index"], 1)
        self.iopub_until_idle(self.comm_msg(state["comm_id"], {"method": "update", "state": {"index": 2}, "buffer_paths": []}))
        _, outs = run(self.kc, "picked + dd.value")
        self.assertEqual(result_text(outs), "256")

    def iopub_until_idle(self, msg_id):
        outs = []
        while True:
            m = self.kc.get_iopub_msg(timeout=TIMEOUT)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                return outs
            outs.append(m)

    def test_comm_open_unknown_target_is_closed(self):
        msg = self.kc.session.msg("comm_open", {"comm_id": "c-unknown", "target_name": "no.such.target", "data": {}})
        self.kc.shell_channel.send(msg)
        outs = self.iopub_until_idle(msg["header"]["msg_id"])
        self.assertTrue(any(m["msg_type"] == "comm_close" and m["content"]["comm_id"] == "c-unknown" for m in outs))

    def interrupt_after(self, msg_id, delay=0.6):
        time.sleep(delay)
        self.km.interrupt_kernel()
        return collect(self.kc, msg_id)

    def test_interrupt_sync_loop_keeps_state(self):
        run(self.kc, "let counter = 0; const kept = 'still here';")
        reply, _ = self.interrupt_after(self.kc.execute("while (true) { counter++; }"))
        self.assertEqual(reply["content"]["status"], "error")
        self.assertEqual(reply["content"]["ename"], "Interrupted")
        reply, outs = run(self.kc, "`${counter > 0} ${kept}`")
        self.assertEqual(result_text(outs), "true still here", reply["content"])

    def test_heartbeat_and_kernel_info_while_busy(self):
        msg_id = self.kc.execute("let busyLoops = 0;\nwhile (true) busyLoops++;")
        time.sleep(0.5)
        ctx = zmq.Context.instance()
        hb = ctx.socket(zmq.REQ)
        hb.linger = 0
        hb.connect(f"tcp://{self.km.ip}:{self.km.hb_port}")
        try:
            hb.send(b"ping")
            self.assertNotEqual(hb.poll(2000), 0, "no heartbeat while a cell is busy")
            self.assertEqual(hb.recv(), b"ping")
        finally:
            hb.close()
        # kernel_info on control is answered at once; on shell it waits behind the running cell
        info = self.kc.session.msg("kernel_info_request", {})
        self.kc.control_channel.send(info)
        r = self.kc.get_control_msg(timeout=5)
        self.assertEqual(r["parent_header"]["msg_id"], info["header"]["msg_id"])
        shell_info = self.kc.kernel_info()
        with self.assertRaises(Empty):
            self.kc.get_shell_msg(timeout=0.5)
        self.km.interrupt_kernel()
        reply, _ = collect(self.kc, msg_id)
        self.assertEqual(reply["content"]["ename"], "Interrupted")
        r = self.kc.get_shell_msg(timeout=5)
        self.assertEqual(r["parent_header"]["msg_id"], shell_info)
        self.assertEqual(r["content"]["implementation"], "loralab")

    def test_interrupt_loop_after_await(self):
        reply, _ = self.interrupt_after(self.kc.execute("await null;\nlet spins = 0;\nfor (;;) spins++;"))
        self.assertEqual(reply["content"]["ename"], "Interrupted")
        _, outs = run(self.kc, "1 + 1")
        self.assertEqual(result_text(outs), "2")

    def test_interrupt_await_fires_abort_signal(self):
        msg_id = self.kc.execute("const signal = abortSignal;\nawait new Promise(() => {});")
        reply, _ = self.interrupt_after(msg_id)
        self.assertEqual(reply["content"]["ename"], "Interrupted")
        _, outs = run(self.kc, "signal.aborted")
        self.assertEqual(result_text(outs), "true")

    def test_external_sigint_interrupts(self):
        import signal

        pid = self.km.provisioner.pid
        for code in ("while (true) {}", "await new Promise(() => {});"):
            msg_id = self.kc.execute(code)
            time.sleep(0.6)
            os.kill(pid, signal.SIGINT)
            reply, _ = collect(self.kc, msg_id)
            self.assertEqual(reply["content"]["ename"], "Interrupted", code)
        _, outs = run(self.kc, "6 * 7")
        self.assertEqual(result_text(outs), "42")


class RestartTests(unittest.TestCase):
    def test_restart_and_shutdown(self):
        km, kc = start()
        try:
            run(kc, "globalThis.beforeRestart = 1")
            pid = km.provisioner.pid if hasattr(km.provisioner, "pid") else None
            km.restart_kernel(now=False)
            kc.wait_for_ready(timeout=TIMEOUT)
            if pid is not None:
                self.assertNotEqual(pid, km.provisioner.pid)
            reply, outs = run(kc, "typeof (globalThis as any).beforeRestart")
            self.assertEqual(result_text(outs), "undefined")
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        self.assertFalse(km.is_alive())

    def test_shutdown_while_a_cell_loops(self):
        km, kc = start()
        try:
            run(kc, "1")
            kc.execute("while (true) {}")
            time.sleep(0.5)
            t = time.time()
            km.shutdown_kernel(now=False)
            # jupyter_client would kill it only after shutdown_wait_time (5 s); the kernel exits itself.
            self.assertLess(time.time() - t, 4.0)
            self.assertFalse(km.is_alive())
        finally:
            kc.stop_channels()

    def test_kernel_exits_when_launcher_dies(self):
        import subprocess
        import sys

        launcher = (
            "import os\n"
            "from jupyter_client.manager import start_new_kernel\n"
            f"km, kc = start_new_kernel(kernel_name={KERNEL!r})\n"
            "os.kill(km.provisioner.pid, 0)\n"  # the pid is the live kernel
            "print(km.provisioner.pid, flush=True)\n"
            "os._exit(0)\n"
        )
        out = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, timeout=TIMEOUT, cwd=NOTEBOOK_DIR)
        pid = int(out.stdout.strip().splitlines()[-1])
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.kill(pid, 9)
        self.fail("the kernel outlived its launcher")


if __name__ == "__main__":
    unittest.main()
