import onnxProto from "onnx-proto";
import type { DType } from "../tensor/dtype.js";

const { onnx } = onnxProto;

/** ONNX TensorProto.DataType codes for the dtypes we use. */
export const ONNX_TYPE = { F32: 1, U8: 2, I8: 3, I32: 6, I64: 7, BOOL: 9, F16: 10, BF16: 16 } as const satisfies Partial<Record<DType, number>>;
export type OnnxDType = keyof typeof ONNX_TYPE;

export type AttrValue = number | string | number[] | Float32Array | { float: number } | { floats: number[] } | { ints: number[] };

/** A small builder over onnx-proto's generated classes: graph inputs/outputs, initializers (raw bytes or
 * external data), nodes with attributes. One model per builder. */
export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private counter = 0;

  constructor(readonly name = "loralab") {}

  /** A fresh tensor name with a readable prefix. */
  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  input(name: string, dtype: OnnxDType, dims: (number | string)[]): string {
    this.inputs.push(valueInfo(name, dtype, dims));
    return name;
  }

  output(name: string, dtype: OnnxDType, dims: (number | string)[]): string {
    this.outputs.push(valueInfo(name, dtype, dims));
    return name;
  }

  /** An initializer holding raw little-endian bytes (copied into the model). */
  initializer(name: string, dtype: OnnxDType, dims: readonly number[], raw: Uint8Array): string {
    this.initializers.push({ name, dataType: ONNX_TYPE[dtype], dims: [...dims], rawData: raw });
    return name;
  }

  /** An initializer whose bytes live in an external file next to the model (for models over 2 GB). */
  externalInitializer(name: string, dtype: OnnxDType, dims: readonly number[], location: string, offset: number, length: number): string {
    this.initializers.push({
      name,
      dataType: ONNX_TYPE[dtype],
      dims: [...dims],
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: "location", value: location },
        { key: "offset", value: String(offset) },
        { key: "length", value: String(length) },
      ],
    });
    return name;
  }

  /** Small constants: float32 or int64 values. */
  constF32(values: number[] | Float32Array, dims: number[] = [values.length], prefix = "c"): string {
    const data = Float32Array.from(values);
    return this.initializer(this.fresh(prefix), "F32", dims, new Uint8Array(data.buffer));
  }

  constI64(values: number[], dims: number[] = [values.length], prefix = "c"): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    return this.initializer(this.fresh(prefix), "I64", dims, new Uint8Array(data.buffer));
  }

  /** Adds a node; returns its output names (fresh names when `outputs` is a count). */
  node(opType: string, inputs: string[], outputs: string[] | number = 1, attrs: Record<string, AttrValue> = {}, domain = ""): string[] {
    const outs = typeof outputs === "number" ? Array.from({ length: outputs }, () => this.fresh(opType.toLowerCase())) : outputs;
    this.nodes.push({
      opType,
      domain,
      name: this.fresh(`n_${opType}`),
      input: inputs,
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs;
  }

  /** Shorthand for single-output nodes. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain = ""): string {
    return this.node(opType, inputs, 1, attrs, domain)[0];
  }

  /** Drops the nodes that no graph output depends on, and the inputs and initializers only they read:
   * ONNX Runtime runs every node of a graph, whichever outputs a run fetches. */
  prune(): void {
    const needed = new Set(this.outputs.map((o) => o.name!));
    const keep = this.nodes.map(() => false);
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      if (!this.nodes[i].output!.some((o) => needed.has(o))) continue;
      keep[i] = true;
      for (const x of this.nodes[i].input!) if (x) needed.add(x);
    }
    const filterInPlace = <T>(xs: T[], ok: (x: T, i: number) => boolean) => xs.splice(0, xs.length, ...xs.filter(ok));
    filterInPlace(this.nodes, (_, i) => keep[i]);
    filterInPlace(this.inputs, (x) => needed.has(x.name!));
    filterInPlace(this.initializers, (x) => needed.has(x.name!));
  }

  /** Serializes the model. `opset` is the default-domain opset; com.microsoft v1 is always imported. */
  toBytes(opset = 17): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: "loralab",
      opsetImport: [{ domain: "", version: opset }, { domain: "com.microsoft", version: 1 }],
      graph: { name: this.name, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, dtype: OnnxDType, dims: (number | string)[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: ONNX_TYPE[dtype], shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) } } },
  };
}

function attribute(name: string, v: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === "string") return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === "number") return Number.isInteger(v) ? { name, type: T.INT, i: v } : { name, type: T.FLOAT, f: v };
  if (v instanceof Float32Array) return { name, type: T.FLOATS, floats: [...v] };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ("float" in v) return { name, type: T.FLOAT, f: v.float };
  if ("floats" in v) return { name, type: T.FLOATS, floats: v.floats };
  return { name, type: T.INTS, ints: v.ints };
}
