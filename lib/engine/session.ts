import * as ort from "onnxruntime-node";
import { LoralabError } from "../errors.js";

export type Device = "cpu" | "cuda";

export interface SessionOptions {
  device?: Device;
  /** intra-op threads (default: ORT's choice, one per core) */
  threads?: number;
  /** let ORT prepack constant weights for its GEMM (default true). Off: external weights stay memory
   * mapped and are not copied, so loading is faster and the peak RSS is lower (about the model bytes
   * instead of 1.4× on a 2.7 GB model); decode (M = 1) was as fast, prefill slower (docs/engine.md). */
  prepack?: boolean;
  /** let idle intra-op threads spin between runs (ORT's default, true): lowest latency for a model's
   * decode steps. Batch work (quantization, calibration forwards) turns it off: on a loaded machine the
   * spinning threads take the cores from the working ones (GPTQ of a small model: 7.5–15 s → 5 s). */
  spinning?: boolean;
}

export function parseDevice(s: string | undefined): Device {
  if (s === undefined || s === "cpu") return "cpu";
  if (s === "cuda") return "cuda";
  throw new LoralabError(`--device must be cpu or cuda, got '${s}'`);
}

/** Creates one ONNX Runtime session for a whole model (bytes or a .onnx path). On `cuda` the CUDA
 * execution provider must load; there is never a silent fallback to the CPU. */
export async function createSession(model: Uint8Array | string, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const device = opts.device ?? "cpu";
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: device === "cuda" ? [{ name: "cuda" }] : ["cpu"],
    graphOptimizationLevel: "all",
    extra: { session: { ...(opts.prepack === false ? { disable_prepacking: "1" } : {}), ...(opts.spinning === false ? { intra_op: { allow_spinning: "0" } } : {}) } },
    ...(opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
  };
  try {
    return typeof model === "string" ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
  } catch (e) {
    if (device === "cuda") throw cudaUnavailable(e);
    throw e;
  }
}

function cudaUnavailable(cause: unknown): LoralabError {
  return new LoralabError(
    "the CUDA execution provider of onnxruntime-node could not be loaded. It is not bundled with the npm " +
      "package and loralab does not let its install script download it (installs must work offline): fetch it with " +
      "network access by `ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install`, and " +
      "make sure the CUDA 12 runtime and cuDNN 9 " +
      `libraries are on the library path. (${(cause as Error)?.message ?? cause})`,
    { cause },
  );
}

export { ort };
