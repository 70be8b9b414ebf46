import assert from "node:assert/strict";
import onnxProto from "onnx-proto";
import { GraphBuilder } from "../lib/engine/onnx-builder.js";
import { createSession, ort } from "../lib/engine/session.js";

describe("onnx builder + session", () => {
  it("runs W + s·(B·A) built as a graph and matches a float64 computation", async () => {
    const g = new GraphBuilder("delta");
    const [m, r, n] = [3, 2, 4];
    const W = Float32Array.from({ length: m * n }, (_, i) => i * 0.5 - 2);
    const B = Float32Array.from({ length: m * r }, (_, i) => (i % 3) - 1);
    const A = Float32Array.from({ length: r * n }, (_, i) => 0.25 * i);
    g.input("W", "F32", [m, n]);
    g.input("B", "F32", [m, r]);
    g.input("A", "F32", [r, n]);
    const ba = g.op("MatMul", ["B", "A"]);
    const scaled = g.op("Mul", [ba, g.constF32([2], [])]);
    g.node("Add", ["W", scaled], ["Y"]);
    g.output("Y", "F32", [m, n]);
    const s = await createSession(g.toBytes());
    const out = await s.run({ W: new ort.Tensor("float32", W, [m, n]), B: new ort.Tensor("float32", B, [m, r]), A: new ort.Tensor("float32", A, [r, n]) });
    const Y = out.Y.data as Float32Array;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let acc = W[i * n + j];
        for (let k = 0; k < r; k++) acc += 2 * B[i * r + k] * A[k * n + j];
        assert.ok(Math.abs(Y[i * n + j] - acc) < 1e-5, `Y[${i},${j}]`);
      }
    await s.release();
  });

  it("prune keeps only what the outputs depend on: nodes, inputs and initializers of the other branch go", async () => {
    const g = new GraphBuilder("branches");
    g.input("x", "F32", [2]);
    g.input("unused", "F32", [2]);
    const kept = g.op("Mul", ["x", g.constF32([3], [])]);
    g.op("Add", [g.op("Mul", ["unused", g.constF32([5], [])]), "x"]); // a dead branch
    g.node("Neg", [kept], ["y"]);
    g.output("y", "F32", [2]);
    g.prune();
    const s = await createSession(g.toBytes());
    assert.deepEqual(s.inputNames, ["x"]);
    const y = (await s.run({ x: new ort.Tensor("float32", Float32Array.from([1, -2]), [2]) })).y.data as Float32Array;
    assert.deepEqual(Array.from(y), [-3, 6]);
    const model = onnxProto.onnx.ModelProto.decode(g.toBytes());
    assert.deepEqual(model.graph!.node!.map((n) => n.opType), ["Mul", "Neg"]);
    assert.equal(model.graph!.initializer!.length, 1);
    await s.release();
  });

  it("refuses --device cuda with a clear message when the CUDA provider is absent", async () => {
    const g = new GraphBuilder();
    g.input("x", "F32", [1]);
    g.node("Identity", ["x"], ["y"]);
    g.output("y", "F32", [1]);
    await assert.rejects(createSession(g.toBytes(), { device: "cuda" }), /CUDA execution provider/);
  });
});
