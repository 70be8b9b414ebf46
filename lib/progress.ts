/** One progress event of a long operation. `done`/`total` count units named by `unit` (bytes, tensors,
 * layers, tokens); `label` names what is being worked on now. */
export interface ProgressEvent {
  phase: string;
  done: number;
  total: number;
  unit: string;
  label?: string;
}

export type ProgressCallback = (event: ProgressEvent) => void;

/** Options every long-running library operation accepts. */
export interface LongTaskOptions {
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
}
