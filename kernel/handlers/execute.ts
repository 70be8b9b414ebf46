/** execute_request: execute_input, the cell's outputs, execute_result, error, and the reply. */
import { mimeBundle } from "../display-api.js";
import { CellError, InterruptedError } from "../executor.js";
import type { Handler, Kernel } from "../kernelbase.js";
import { runtimeErrorContent } from "../traceback.js";

interface ExecuteContent {
  code: string;
  silent?: boolean;
  store_history?: boolean;
  user_expressions?: Record<string, string>;
  allow_stdin?: boolean;
  stop_on_error?: boolean;
}

/** `?name` or `name?` shows the TypeScript hover of `name` in the pager (as IPython's `?` does). */
const PAGER = /^\s*(?:\?\s*([\w$.]+)|([\w$.]+)\s*\?)\s*$/;

export const executeRequest: Handler = async (kernel, ctx) => {
  const c = ctx.msg.content as ExecuteContent;
  const silent = Boolean(c.silent);
  const store = (c.store_history ?? true) && !silent;
  if (store) kernel.executionCount++;
  const count = kernel.executionCount;
  if (!silent) kernel.publish("execute_input", { code: c.code, execution_count: count });
  if (store) kernel.history.add(count, c.code);

  const pager = PAGER.exec(c.code);
  if (pager) {
    const name = pager[1] ?? pager[2];
    const types = await kernel.executor.typesReady();
    const text = types.inspect(name, name.length, 1) ?? `no information about '${name}'`;
    return { status: "ok", execution_count: count, payload: [{ source: "page", data: { "text/plain": text }, start: 0 }], user_expressions: {} };
  }

  try {
    const result = await kernel.executor.execute(c.code, { label: `In[${count}]`, signal: ctx.abort.signal });
    // Outputs the cell is still rendering (async display bundles) come before its result and reply.
    await kernel.settleOutputs(ctx);
    if (ctx.abort.signal.aborted) throw kernel.executor.toCellError(new InterruptedError("while displaying"));
    if (result && result[0] !== undefined && !silent) {
      const data = await kernel.executor.settle(mimeBundle(result[0]), ctx.abort.signal);
      kernel.publish("execute_result", { execution_count: count, data, metadata: {} });
      if (store && typeof data["text/plain"] === "string") kernel.history.setOutput(count, data["text/plain"]);
    }
    return { status: "ok", execution_count: count, payload: [], user_expressions: await userExpressions(kernel, c.user_expressions ?? {}, ctx.abort.signal) };
  } catch (e) {
    const content = e instanceof CellError ? e.content : runtimeErrorContent(e, new Map());
    kernel.publish("error", { ...content });
    if (c.stop_on_error ?? true) kernel.abortQueued();
    return { status: "error", execution_count: count, ...content };
  }
};

async function userExpressions(kernel: Kernel, exprs: Record<string, string>, signal: AbortSignal): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [name, expr] of Object.entries(exprs)) {
    try {
      const r = await kernel.executor.execute(expr, { label: `user_expressions[${name}]`, signal, typecheck: false });
      out[name] = { status: "ok", data: await kernel.executor.settle(mimeBundle(r?.[0]), signal), metadata: {} };
    } catch (e) {
      out[name] = { status: "error", ...(e instanceof CellError ? e.content : runtimeErrorContent(e, new Map())) };
    }
  }
  return out;
}
