/** The hook between library code (`loralab/kernel`) and a running kernel. The kernel installs its host
 * object on a global symbol, so any copy of loralab loaded in the notebook finds the same kernel. */
export type MimeBundle = Record<string, unknown>;

export interface CommHandle {
  readonly commId: string;
  send(data: Record<string, unknown>, metadata?: Record<string, unknown>, buffers?: Uint8Array[]): void;
  close(data?: Record<string, unknown>): void;
  onMessage(handler: (data: Record<string, any>, buffers: Uint8Array[]) => void): void;
  onClose(handler: (data: Record<string, any>) => void): void;
}

export interface KernelHost {
  display(bundle: MimeBundle, options: { displayId?: string; metadata?: Record<string, unknown>; update?: boolean }): void;
  clearOutput(wait: boolean): void;
  input(prompt: string, password: boolean): Promise<string>;
  abortSignal(): AbortSignal | undefined;
  openComm(targetName: string, data: Record<string, unknown>, metadata?: Record<string, unknown>, buffers?: Uint8Array[]): CommHandle;
  /** The id of the request being handled (the Output widget routes output by it). */
  currentMessageId(): string | undefined;
  /** An output still being rendered (an async display bundle): the request it belongs to waits for it
   * before its reply. Optional: a host from an older copy of loralab may lack it. */
  track?(pending: Promise<unknown>): void;
}

const HOST = Symbol.for("loralab.kernel.host");

export function kernelHost(): KernelHost | undefined {
  return (globalThis as Record<symbol, KernelHost | undefined>)[HOST];
}

export function installKernelHost(host: KernelHost): void {
  Object.defineProperty(globalThis, HOST, { value: host, configurable: true, enumerable: false, writable: false });
}
