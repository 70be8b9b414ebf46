import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { GraphBuilder, OnnxDType } from "../engine/onnx-builder.js";
import { LoralabError } from "../errors.js";
import type { Tensor } from "../tensor/tensor.js";

/** Puts a named tensor into the graph and returns the graph value name. Same name twice = same value
 * (that is how a tied lm_head shares the embedding's initializer). */
export interface TensorPlacer {
  place(name: string, t: Tensor): string;
  /** bytes placed so far */
  readonly bytes: number;
}

/** Float tensors become float32 (the engine computes in fp32); others keep their dtype. */
export function asGraphTensor(t: Tensor): Tensor {
  return t.dtype === "F16" || t.dtype === "BF16" ? t.to("F32") : t;
}

function onnxDType(t: Tensor): OnnxDType {
  if (t.dtype === "BOOL") throw new LoralabError("boolean weights are not supported");
  return t.dtype as OnnxDType;
}

/** Initializers held inside the model bytes (models under 2 GB). */
export class InlinePlacer implements TensorPlacer {
  private readonly placed = new Map<string, string>();
  bytes = 0;
  constructor(private readonly g: GraphBuilder) {}
  place(name: string, t: Tensor): string {
    const known = this.placed.get(name);
    if (known) return known;
    t = asGraphTensor(t);
    this.g.initializer(name, onnxDType(t), t.shape, t.bytes());
    this.bytes += t.byteLength;
    this.placed.set(name, name);
    return name;
  }
}

/** Initializers streamed into one external-data file beside the model (needed above 2 GB: protobuf's
 * limit). Offsets are page aligned so ORT can map them. */
export class ExternalPlacer implements TensorPlacer {
  private readonly placed = new Map<string, string>();
  private readonly fd: number;
  private offset = 0;
  bytes = 0;
  static readonly FILE = "weights.bin";
  constructor(private readonly g: GraphBuilder, dir: string) {
    this.fd = openSync(join(dir, ExternalPlacer.FILE), "w");
  }
  place(name: string, t: Tensor): string {
    const known = this.placed.get(name);
    if (known) return known;
    t = asGraphTensor(t);
    const pad = (4096 - (this.offset % 4096)) % 4096;
    if (pad) writeSync(this.fd, new Uint8Array(pad), 0, pad, this.offset);
    this.offset += pad;
    const bytes = t.bytes();
    for (let done = 0; done < bytes.byteLength; ) done += writeSync(this.fd, bytes, done, bytes.byteLength - done, this.offset + done);
    this.g.externalInitializer(name, onnxDType(t), t.shape, ExternalPlacer.FILE, this.offset, bytes.byteLength);
    this.offset += bytes.byteLength;
    this.bytes += bytes.byteLength;
    this.placed.set(name, name);
    return name;
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** Tensors become graph inputs fed at run time (the layer runner swaps weights without a new session). */
export class InputPlacer implements TensorPlacer {
  readonly inputs = new Map<string, string>();
  bytes = 0;
  constructor(private readonly g: GraphBuilder, private readonly rename: (name: string) => string) {}
  place(name: string, t: Tensor): string {
    const key = this.rename(name);
    if (this.inputs.has(key)) return key;
    t = asGraphTensor(t);
    this.g.input(key, onnxDType(t), [...t.shape]);
    this.inputs.set(key, name);
    this.bytes += t.byteLength;
    return key;
  }
}
