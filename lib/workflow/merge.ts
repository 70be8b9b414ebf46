import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { LoralabError } from "../errors.js";
import { ModelDir } from "../io/model-dir.js";
import { AtomicOutputDir } from "../io/output-dir.js";
import { saveTensors } from "../io/safetensors.js";
import { loadAdapterDir } from "../model/load.js";
import type { MergeDeltaRow } from "../plot/index.js";
import { Tensor } from "../tensor/tensor.js";

export interface NotebookMerge {
  out: string;
  rows: MergeDeltaRow[];
  /** one module's base weight, merged weight and ΔW (for histograms) */
  sample: { module: string; base: Float32Array; merged: Float32Array; delta: Float32Array };
}

/**
 * W' = W + scaling·B·A for every plain linear LoRA module, into a single-file float directory. A small
 * in-notebook merge for models that fit in memory (stories260K, fixtures); the library's streaming merge
 * is `loralab merge`. DoRA, Conv1D, embeddings and replacements are refused rather than merged wrongly.
 */
export async function mergeForNotebook(modelDir: string, adapterDir: string, out: string, scale = 1): Promise<NotebookMerge> {
  const model = await ModelDir.open(modelDir);
  const adapter = await loadAdapterDir(adapterDir);
  try {
    if (adapter.replacements.size || adapter.trainableTokens.size) throw new LoralabError(`${adapterDir}: replacements/trainable tokens are not handled by the notebook merge; use loralab merge`);
    const tensors: Record<string, Tensor> = {};
    const rows: MergeDeltaRow[] = [];
    let sample: NotebookMerge["sample"] | undefined;
    for (const name of model.names()) tensors[name] = await model.read(name);
    for (const [target, m] of adapter.modules) {
      if (m.kind !== "linear" || m.fanInFanOut || m.magnitude || m.bias) throw new LoralabError(`${adapterDir}: module ${m.module} (${m.kind}${m.magnitude ? ", DoRA" : ""}) is not handled by the notebook merge; use loralab merge`);
      const W = tensors[target];
      if (!W) throw new LoralabError(`${adapterDir}: module ${m.module} targets ${target}, which ${modelDir} does not have`);
      const [N, K] = W.shape, r = m.r, A = m.A.toF32(), B = m.B.toF32(), s = m.scaling * scale;
      const w = W.toF32(), merged = new Float32Array(w.length), delta = new Float32Array(w.length);
      let dd = 0, ww = 0;
      for (let i = 0; i < N; i++)
        for (let j = 0; j < K; j++) {
          let acc = 0;
          for (let k = 0; k < r; k++) acc += B[i * r + k] * A[k * K + j];
          const d = s * acc;
          delta[i * K + j] = d;
          merged[i * K + j] = w[i * K + j] + d;
          dd += d * d;
          ww += w[i * K + j] ** 2;
        }
      tensors[target] = Tensor.fromF32(merged, [N, K]).to(W.dtype);
      rows.push({ module: m.module, relDelta: Math.sqrt(dd / ww) });
      sample ??= { module: m.module, base: w, merged, delta };
    }
    if (!sample) throw new LoralabError(`${adapterDir}: no LoRA modules`);
    await AtomicOutputDir.write(out, { overwrite: true }, async (dir) => {
      await saveTensors(dir.file("model.safetensors"), tensors);
      for (const f of ["config.json", ...model.auxFiles]) await copyFile(join(modelDir, f), dir.file(f)).catch(() => undefined);
    });
    return { out, rows, sample };
  } finally {
    await model.close();
  }
}
