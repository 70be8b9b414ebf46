/**
 * The public API: `import { merge, quantizeModel, compare, ... } from "loralab"`.
 * Items are named one by one (no `export *`) so that a new internal helper never becomes public by accident,
 * and names that two areas share get an area prefix here (ModuleReport → MergeModuleReport / QuantModuleReport).
 * Notebook display helpers (display, updateDisplay, clearOutput, input, widgets) live in `loralab/kernel`.
 */

// errors and progress
export { LoralabError, throwIfAborted, isAbortError } from "./errors.js";
export type { ProgressEvent, ProgressCallback, LongTaskOptions } from "./progress.js";

// io: safetensors, model directories, HF config
export { SafetensorsFile, writeSafetensors, saveTensors, planBytes, encodeHeader, type TensorEntry, type TensorPlan } from "./io/safetensors.js";
export { planShards, writeShardedModel, type ShardPlan } from "./io/sharded-writer.js";
export { ModelDir, openModel } from "./io/model-dir.js";
export { AtomicOutputDir } from "./io/output-dir.js";
export { loadConfig, parseConfig, readConfigJson, LLAMA_LIKE, type ModelConfig, type RopeScaling } from "./io/hf-config.js";

// tensors
export { Tensor, numel, toF32, fromF32 } from "./tensor/tensor.js";
export { DTYPE_SIZE, isDType, isFloatDType, viewAs, allocate, dtypeFromTorch, dtypeToTorch, type DType, type TypedArray } from "./tensor/dtype.js";
export { f16ToF32, bf16ToF32, f32ToBf16, f32ToF16, f32ToF16Bits, roundToF16 } from "./tensor/half.js";
export { tensorStats, histogram, type TensorStats, type Histogram } from "./tensor/stats.js";

// LoRA: adapters and the streaming merge
export { loadAdapter } from "./lora/adapter.js";
export type { Adapter, LoraModule } from "./lora/types.js";
export { merge, MergeReport, type MergeOptions, type ModuleReport as MergeModuleReport } from "./lora/merge.js";
export { mergePlots } from "./lora/merge-display.js";

// quantization
export { quantizeModel, type QuantizeOptions, type QuantizedModel } from "./quant/pipeline.js";
export { QuantReport, type QuantReportData, type SkippedModule, type ModuleReport as QuantModuleReport } from "./quant/report.js";
export { quantPlots } from "./quant/report-display.js";
export { FORMATS, METHODS, parseFormat, parseMethod, checkCombination, type Format, type Method } from "./quant/formats.js";
export {
  SUPPORTED_BITS, quantizeRtn, dequantize, relativeError, groupParams, nGroups, effectiveGroupSize, checkSpec,
  type Bits, type QuantSpec, type QuantRule, type QuantizedMatrix,
} from "./quant/quantizer.js";
export { quantizeRtnFast } from "./quant/rtn-kernel.js";
export { gptqQuantize, prepareHessian, HessianAccumulator, type GptqOptions, type GptqResult, type GptqHessian, type HessianArithmetic, type HessianOptions } from "./quant/gptq.js";
export { searchScales, clipSearch, type ScaleSearchResult } from "./quant/awq.js";
export { readCalibrationText, calibrationWindows, type CalibrationOptions } from "./quant/calibration.js";
export { packGptq, unpackGptq, packAwq, unpackAwq, packMatMulNBits, unpackMatMulNBits, packGgml, unpackGgml } from "./quant/pack.js";
export { writeArtifact, gptqQuantizationConfig, awqQuantizationConfig } from "./quant/writers.js";
export { readGguf, writeGguf, type GgufFile, type GgufTensorInfo } from "./quant/gguf.js";

// model and engine (ONNX Runtime)
export { loadModel, loadAdapterDir, openSpec, type ModelSpec, type LoadedModel } from "./model/load.js";
export { CausalLM, type LoadOptions, type KvCache } from "./model/causal-lm.js";
export { seededRandom } from "./random.js";
export { generate, sampleToken, argmax, type GenerateOptions, type GenerateResult, type SamplingOptions } from "./model/generate.js";
export { TextTokenizer, TextStream } from "./model/tokenizer.js";
export { openWeightSource, type WeightSource } from "./model/weights.js";
export { createSession, parseDevice, ort, type Device, type SessionOptions } from "./engine/session.js";

// benchmarks
export { perplexity, type PerplexityOptions, type PerplexityResult } from "./bench/perplexity.js";
export { benchmark, benchLoaded, formatBench, type BenchOptions, type BenchResult } from "./bench/benchmark.js";
export { compare, compareTables, type CompareOptions, type CompareRow, type CompareResult } from "./bench/compare.js";
export { percentile, summarize, type Summary } from "./bench/stats.js";
// the plots a result displays, e.g. for writeReport
export { benchPlots, comparePlots, perplexityPlots } from "./bench/display.js";

// plots and reports (escapeHtml, formatBytes and JUPYTER_DISPLAY are the plot module's)
export {
  Plot, renderAll, savePlots, JUPYTER_DISPLAY, VEGALITE_MIME, VEGALITE_SCHEMA_URL, renderSvg, svgToPng,
  weightHistogram, loraDeltaHistogram, quantErrorHistogram, mergeDeltaBars, quantErrorBars,
  ttftBars, decodeThroughputBars, memoryBars, perTokenLatencyChart, latencyDashboard, perplexityBars, windowPerplexityChart,
  groupSizeSweepChart, paretoFront, GROUP_SIZE_PARAM, htmlTable, trustedHtml, escapeHtml, HtmlFragment,
  reportHtml, writeReport, composeHtml, formatNumber, formatBytes, textTable, concatPlots, resultBundle,
  type MimeBundle, type PlotFormat, type SaveOptions, type ValueSeries, type HistogramOptions, type MergeDeltaRow,
  type QuantErrorRow, type ModuleChartOptions, type ConfigMeasures, type PerplexityRow, type PerplexityBarsOptions,
  type SweepPoint, type SweepChartOptions, type TableColumn, type TableOptions, type ReportContent, type ReportSection,
  type ReportOptions, type WriteReportOptions, type PerplexityWindow, type ResultBundle, type ResultDisplay,
} from "./plot/index.js";

// the seed pipeline (merge → quantize → compare → report) and the notebook workflow
export { runPipeline, type PipelineOptions, type PipelineResult } from "./workflow/pipeline.js";
export { sweep, SweepResult, type SweepOptions, type SkippedGroupSize } from "./workflow/sweep.js";
export { notebookInputs, type NotebookInputs } from "./workflow/inputs.js";

// seeded fixtures
export {
  generateLlamaModel, generateGpt2Model, generateLoraAdapter, charTokenizer, writeCharTokenizer, seededText,
  type LlamaFixtureOptions, type Gpt2FixtureOptions, type LoraFixtureOptions, type FixtureDType,
} from "./fixtures/index.js";
