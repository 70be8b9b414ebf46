import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import vm from "node:vm";
import { inflateSync } from "node:zlib";
import tsModule from "typescript";
import type * as TS from "typescript";
import { DISPLAY, display, mimeBundle } from "../kernel/display-api.js";
import { globToRegExp, History } from "../kernel/handlers/history.js";
import { codePointToUtf16, isComplete, utf16ToCodePoint } from "../kernel/handlers/introspection.js";
import { installKernelSpec, listKernelSpecs, logoPng, uninstallKernelSpec } from "../kernel/install.js";
import { SourceMap } from "../kernel/sourcemap.js";
import { runtimeErrorContent, typeErrorContent } from "../kernel/traceback.js";
import { INTERRUPT_CHECK, transformCell } from "../kernel/transform.js";
import { NotebookTypes } from "../kernel/typecheck.js";
import { decode, encode, makeHeader, SignatureError, Signer } from "../kernel/wire.js";
import { assertBuilt, unittestResults } from "./kernel/harness.js";
import { REPO_ROOT, tempDir } from "./helpers/paths.js";

const ts = tsModule as unknown as typeof TS;

describe("kernel units", function () {
  this.timeout(60_000);

  describe("wire", () => {
    it("signs with HMAC-SHA256 over the concatenated parts (RFC 4231 test case 2)", () => {
      const s = new Signer("Jefe");
      assert.equal(s.sign([Buffer.from("what do ya "), Buffer.from("want for nothing?")]), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    });
    it("round-trips a message and rejects a tampered or wrongly keyed one", () => {
      const signer = new Signer("secret");
      const header = makeHeader("execute_request", "s1");
      const frames = encode({ identities: [Buffer.from("id1")], header, parent_header: {}, metadata: {}, content: { code: "1" }, buffers: [Buffer.from([1, 2])] }, signer);
      const msg = decode(frames, signer);
      assert.deepEqual(msg.content, { code: "1" });
      assert.equal(Buffer.from(msg.identities[0]).toString(), "id1");
      assert.deepEqual([...msg.buffers[0]], [1, 2]);
      const tampered = [...frames];
      tampered[6] = Buffer.from(JSON.stringify({ code: "2" }));
      assert.throws(() => decode(tampered, signer), SignatureError);
      assert.throws(() => decode(frames, new Signer("other")), SignatureError);
      assert.doesNotThrow(() => decode(encode({ header, parent_header: {}, metadata: {}, content: {}, buffers: [] }, new Signer("")), new Signer("")));
    });
  });

  describe("source maps", () => {
    it("decodes VLQ segments (hand-decoded)", () => {
      // "AAgBC": genCol 0, source 0, line +16, col +1
      assert.deepEqual(new SourceMap("AAgBC").lookup(0, 0), { line: 16, col: 1 });
      const m = new SourceMap("AAAA;AACA,IAAI");
      assert.deepEqual(m.lookup(1, 2), { line: 1, col: 2 });
      assert.deepEqual(m.lookup(1, 5), { line: 1, col: 5 });
      assert.equal(m.lookup(2, 0), undefined);
    });
  });

  describe("cell transform", () => {
    const runCell = (code: string, file: string) => {
      const cell = transformCell(ts, code, file, (s) => s);
      assert.deepEqual(cell.syntaxErrors, []);
      const result = new vm.Script(cell.js, { filename: file, importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER as never }).runInThisContext();
      return { cell, result: result as Promise<[unknown] | undefined> };
    };
    before(() => {
      (globalThis as Record<string, unknown>)[INTERRUPT_CHECK] ??= () => {};
    });

    it("keeps declarations across cells, allows re-declaring const, returns the last expression", async () => {
      const r1 = await runCell("const tA: number = 2;\nlet { tB, tC: [tD = 5] } = { tB: 3, tC: [] } as any;\nfunction tSq(x: number) { return x * x }\ntA + tB + tD", "/tmp/c1.ts").result;
      assert.deepEqual(r1, [10]);
      const r2 = await runCell('const tA = "re";\ntSq(tB) + tA', "/tmp/c2.ts").result;
      assert.deepEqual(r2, ["9re"]);
      const r3 = await runCell('import { join as tJoin } from "node:path";\nimport * as tPath from "node:path";\nawait null;\ntJoin("x", tPath.basename("/a/y"))', "/tmp/c3.ts").result;
      assert.deepEqual(r3, ["x/y"]);
      assert.equal(await runCell("enum TColor { R, G }\nclass TK { v = TColor.G }", "/tmp/c4.ts").result, undefined);
      assert.deepEqual(await runCell("new TK().v", "/tmp/c5.ts").result, [1]);
      const anon = await runCell("export default function (x: number) { return x + 1 }", "/tmp/c5c.ts").result;
      assert.equal((anon![0] as (x: number) => number)(1), 2);
      assert.equal(typeof (await runCell("export default class { v = 1 }", "/tmp/c5d.ts").result)![0], "function");
      assert.deepEqual(await runCell('"use strict";\nconst tStrict = 4;\ntStrict', "/tmp/c5b.ts").result, [4]);
    });

    it("maps a runtime error back to the cell's line and column", async () => {
      const file = "/tmp/c6.ts";
      const { cell, result } = runCell("const tN: any = null;\n\n  tN.field;", file);
      const err = await result.then(() => undefined, (e) => e);
      const content = runtimeErrorContent(err, new Map([[file, { label: "In[6]", code: "", map: new SourceMap(JSON.parse(cell.sourceMap).mappings) }]]));
      assert.equal(content.ename, "TypeError");
      assert.match(content.traceback.join("\n"), /Cell In\[6\], line 3, column 6/);
    });

    it("puts an interrupt check in every loop body", () => {
      const { js } = transformCell(ts, "for (;;) {}\nwhile (x) y();\ndo {} while (0);\nfor (const a of b) for (const k in a) {}", "/tmp/c7.ts", (s) => s);
      assert.equal(js.split(INTERRUPT_CHECK).length - 1, 5);
    });
  });

  describe("type checking across cells", () => {
    it("types later cells from earlier declarations and lets a cell redeclare", () => {
      const t = new NotebookTypes(ts, REPO_ROOT, REPO_ROOT);
      assert.deepEqual(t.check("const cfg = { groupSize: 64 };"), []);
      t.commit("const cfg = { groupSize: 64 };");
      assert.deepEqual(t.check("cfg.groupSize.toFixed(1)"), []);
      const errs = t.check("cfg.bits");
      assert.equal(errs.length, 1);
      assert.equal(errs[0].code, 2339);
      assert.equal(errs[0].start, 4);
      assert.deepEqual(t.check('const cfg = "text"; cfg.toUpperCase()'), []);
      const content = typeErrorContent("In[3]", "cfg.bits", errs);
      assert.match(content.traceback[0], /line 1, column 5: error TS2339/);
      assert.deepEqual(t.completions("cfg.gro", 7).matches, ["groupSize"]);
      assert.match(t.inspect("cfg", 1) ?? "", /groupSize: number/);
    });
    it("sees a package installed after a failed import (the resolution cache is dropped on 'Cannot find module')", () => {
      const nb = tempDir("loralab-nb-");
      try {
        const t = new NotebookTypes(ts, nb.path, REPO_ROOT);
        const cell = 'import { late } from "late-pkg"; late(2).toFixed()';
        assert.deepEqual(t.check(cell).map((e) => e.code), [2307]);
        const pkg = join(nb.path, "node_modules/late-pkg");
        mkdirSync(pkg, { recursive: true });
        writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "late-pkg", type: "module", exports: { ".": { types: "./index.d.ts", default: "./index.js" } } }));
        writeFileSync(join(pkg, "index.d.ts"), "export declare function late(x: number): number;\n");
        assert.deepEqual(t.check(cell), []);
        assert.deepEqual(t.check('import { late } from "late-pkg"; late("x")').map((e) => e.code), [2345]);
      } finally {
        nb.cleanup();
      }
    });
    it("answers cells that need only lib and kernel names without @types/node, and defers the rest", () => {
      const t = new NotebookTypes(ts, REPO_ROOT, REPO_ROOT);
      t.warmLight();
      for (const cell of ["const n = 1 + 1;", "console.log(n)", "const w = widgets.IntSlider({ value: 3 });", "display(w)"]) {
        assert.deepEqual(t.check(cell), [], cell);
        t.commit(cell);
      }
      assert.equal(t.fullReady, false);
      // An error is always the full checker's; the widget's type survived the prelude (not `any`).
      const errs = t.check('w.value = "x"');
      assert.deepEqual(errs.map((e) => e.code), [2322]);
      assert.equal(t.fullReady, true);
      assert.deepEqual(t.check("Buffer.from('x').length + n + w.value"), []);
      // Node names, imports and the kernel's abortSignal are not in the light checker: the full one answers.
      for (const cell of ["setTimeout(() => {}, 1)", 'import { join } from "node:path"; join("a")', "abortSignal.aborted"]) {
        const fresh = new NotebookTypes(ts, REPO_ROOT, REPO_ROOT);
        fresh.warmLight();
        assert.deepEqual(fresh.check(cell), [], cell);
        assert.equal(fresh.fullReady, true, cell);
      }
    });
  });

  describe("introspection helpers", () => {
    it("classifies complete, incomplete and invalid code", () => {
      assert.equal(isComplete(ts, "1 + 1").status, "complete");
      assert.deepEqual(isComplete(ts, "function f() {"), { status: "incomplete", indent: "  " });
      assert.equal(isComplete(ts, "`a ${1}").status, "incomplete");
      assert.equal(isComplete(ts, "let 1x = 5").status, "invalid");
    });
    it("converts code-point cursors to UTF-16 and back", () => {
      const s = "😀ab";
      assert.equal(codePointToUtf16(s, 1), 2);
      assert.equal(codePointToUtf16(s, 3), 4);
      assert.equal(utf16ToCodePoint(s, 4), 3);
    });
    it("searches history with sqlite GLOB patterns", () => {
      assert.ok(globToRegExp("1 + *").test("1 + 2"));
      assert.ok(!globToRegExp("1 + *").test("x1 + 2"));
      assert.ok(globToRegExp("a?c[0-9]").test("abc7"));
      const h = new History();
      ["1 + 2", "x", "1 + 2", "1 + 3"].forEach((code, i) => h.add(i + 1, code));
      assert.deepEqual(h.query({ hist_access_type: "tail", n: 2 }), [[1, 3, "1 + 2"], [1, 4, "1 + 3"]]);
      assert.deepEqual(h.query({ hist_access_type: "range", session: 1, start: 2, stop: 3 }), [[1, 2, "x"]]);
      assert.deepEqual(h.query({ hist_access_type: "search", pattern: "1 + *", unique: true }), [[1, 3, "1 + 2"], [1, 4, "1 + 3"]]);
    });
    it("reads unittest -v results", () => {
      const out = "test_a (m.C.test_a) ... ok\ntest_b (m.C.test_b) ... noise\nFAIL\n\nFAIL: test_b (m.C.test_b)\n";
      assert.deepEqual([...unittestResults(out)], [["test_a", "ok"], ["test_b", "FAIL"]]);
    });
  });

  describe("display outside the kernel", () => {
    it("builds MIME bundles, honouring Symbol.for('Jupyter.display')", () => {
      assert.deepEqual(mimeBundle(42), { "text/plain": "42" });
      const rich = { [DISPLAY]: () => ({ "text/html": "<b>x</b>" }) };
      const b = mimeBundle(rich);
      assert.ok(!(b instanceof Promise));
      assert.equal(b["text/html"], "<b>x</b>");
      assert.equal(typeof b["text/plain"], "string");
    });
    it("awaits a Promise bundle; a throwing or rejecting display method falls back to text/plain", async () => {
      const later = { tag: "later", [DISPLAY]: async () => ({ "image/svg+xml": "<svg/>" }) };
      const pending = mimeBundle(later);
      assert.ok(pending instanceof Promise);
      const bundle = await pending;
      assert.deepEqual(Object.keys(bundle), ["image/svg+xml", "text/plain"]);
      assert.equal(bundle["image/svg+xml"], "<svg/>");
      assert.match(String(bundle["text/plain"]), /tag: 'later'/);
      const original = process.stderr.write;
      let stderr = "";
      process.stderr.write = ((chunk: string) => ((stderr += chunk), true)) as typeof process.stderr.write;
      try {
        const throws = { id: 1, [DISPLAY]: () => { throw new Error("no renderer"); } };
        const fallback = mimeBundle(throws);
        assert.ok(!(fallback instanceof Promise));
        assert.deepEqual(Object.keys(fallback), ["text/plain"]);
        assert.match(String(fallback["text/plain"]), /id: 1/);
        const rejects = { id: 2, [DISPLAY]: () => Promise.reject(new Error("svg failed")) };
        assert.deepEqual(Object.keys(await mimeBundle(rejects)), ["text/plain"]);
      } finally {
        process.stderr.write = original;
      }
      assert.match(stderr, /no renderer; showing text\/plain\n.*svg failed; showing text\/plain\n/s);
    });
    it("falls back to printing text/plain", () => {
      const original = process.stdout.write;
      let captured = "";
      process.stdout.write = ((chunk: string) => ((captured += chunk), true)) as typeof process.stdout.write;
      try {
        display.markdown("# title");
      } finally {
        process.stdout.write = original;
      }
      assert.equal(captured, "# title\n");
    });
  });

  describe("kernelspec install", () => {
    it("writes kernel.json and valid PNG logos into a prefix, lists and uninstalls", () => {
      const t = tempDir();
      const saved = process.env.JUPYTER_PATH;
      try {
        const dir = installKernelSpec(REPO_ROOT, { prefix: t.path, name: "lltest" });
        assert.equal(dir, join(t.path, "share/jupyter/kernels/lltest"));
        const spec = JSON.parse(readFileSync(join(dir, "kernel.json"), "utf8"));
        assert.equal(spec.display_name, "TypeScript (loralab)");
        assert.equal(spec.language, "typescript");
        assert.equal(spec.interrupt_mode, "message");
        assert.ok(spec.argv.includes("{connection_file}"));
        for (const size of [32, 64]) {
          const png = readFileSync(join(dir, `logo-${size}x${size}.png`));
          assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
          assert.equal(png.readUInt32BE(16), size);
          assert.equal(png.readUInt32BE(20), size);
          // every PNG ends with the IEND chunk whose CRC is the well-known AE426082
          assert.equal(png.subarray(-4).toString("hex"), "ae426082");
          const idatLen = png.readUInt32BE(33);
          assert.equal(png.subarray(37, 41).toString(), "IDAT");
          const pixels = inflateSync(png.subarray(41, 41 + idatLen));
          assert.equal(pixels.length, size * (1 + 4 * size));
          assert.equal(pixels[1 + 3], 0, "corner is transparent (rounded)");
          const mid = (size / 2) * (1 + 4 * size) + 1 + 4 * 2;
          assert.equal(pixels[mid + 3], 255);
        }
        assert.deepEqual(logoPng(32), readFileSync(join(dir, "logo-32x32.png")));
        process.env.JUPYTER_PATH = join(t.path, "share/jupyter");
        assert.ok(listKernelSpecs().some((s) => s.name === "lltest" && s.dir === dir));
        assert.deepEqual(uninstallKernelSpec("lltest", { prefix: t.path }), [dir]);
        assert.ok(!existsSync(dir));
      } finally {
        if (saved === undefined) delete process.env.JUPYTER_PATH;
        else process.env.JUPYTER_PATH = saved;
        t.cleanup();
      }
    });
  });

  describe("kernel CLI", () => {
    it("installs, lists and uninstalls through `loralab kernel`, only under JUPYTER_* temp dirs", () => {
      assertBuilt();
      const t = tempDir();
      const env = { ...process.env, JUPYTER_PATH: join(t.path, "p/share/jupyter"), JUPYTER_DATA_DIR: join(t.path, "data") };
      const cli = (...args: string[]) => spawnSync(process.execPath, [join(REPO_ROOT, "bin/loralab.js"), "kernel", ...args], { env, encoding: "utf8" });
      try {
        assert.equal(cli("install", "--prefix", join(t.path, "p")).status, 0);
        assert.equal(cli("install", "--name", "mine").status, 0);
        assert.ok(existsSync(join(t.path, "data/kernels/mine/kernel.json")), "default target is the user data dir");
        const list = cli("list").stdout;
        assert.match(list, /^loralab\s+.*p\/share\/jupyter\/kernels\/loralab$/m);
        assert.match(list, /^mine\s+/m);
        assert.equal(cli("uninstall", "--name", "mine").status, 0);
        assert.doesNotMatch(cli("list").stdout, /^mine/m);
        const bad = cli("uninstall", "--name", "mine");
        assert.equal(bad.status, 1);
        assert.match(bad.stderr, /no loralab kernelspec named 'mine'/);
        const noFile = cli("start", "--connection-file", join(t.path, "missing.json"));
        assert.equal(noFile.status, 1);
        assert.match(noFile.stderr, /cannot read connection file .*missing\.json/);
      } finally {
        t.cleanup();
      }
    });
  });
});
