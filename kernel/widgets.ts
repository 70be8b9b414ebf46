/** ipywidgets 8 models over the `jupyter.widget` comm (widget message protocol 2.1): each widget is a
 * comm whose `state` mirrors the JavaScript model; frontend edits arrive as `update`, kernel edits are
 * sent as `update`, and `observe` callbacks fire on both. */
import { inspect } from "node:util";
import { kernelHost, type CommHandle, type MimeBundle } from "./host.js";
import { mimeBundle } from "./mime.js";

const PROTOCOL_VERSION = "2.1.0";
const CONTROLS = { module: "@jupyter-widgets/controls", version: "2.0.0" };
const BASE = { module: "@jupyter-widgets/base", version: "2.0.0" };
const OUTPUT = { module: "@jupyter-widgets/output", version: "1.0.0" };

export type WidgetState = Record<string, unknown>;
export type Change = { name: string; old: unknown; new: unknown; owner: Widget };
type Observer = (value: any, change: Change) => void;

/** All live widgets by model id (the frontend's `request_states` asks for them all). */
const registry = new Map<string, Widget>();

export class Widget {
  readonly comm: CommHandle | undefined;
  readonly modelId: string;
  protected readonly state: WidgetState;
  private readonly observers: { names: Set<string> | null; fn: Observer }[] = [];

  constructor(model: { module: string; version: string }, modelName: string, view: string | null, state: WidgetState) {
    this.state = {
      _model_module: model.module,
      _model_module_version: model.version,
      _model_name: modelName,
      _view_module: view ? model.module : null,
      _view_module_version: view ? model.version : "",
      _view_name: view,
      _view_count: null,
      ...state,
    };
    const host = kernelHost();
    this.comm = host?.openComm("jupyter.widget", { state: this.state, buffer_paths: [] }, { version: PROTOCOL_VERSION });
    this.modelId = this.comm?.commId ?? `local-${registry.size}`;
    registry.set(this.modelId, this);
    this.comm?.onMessage((data) => this.onMessage(data));
    this.comm?.onClose(() => registry.delete(this.modelId));
  }

  get(name: string): unknown {
    return this.state[name];
  }

  /** Sets state keys here and in every frontend, then calls the observers of the changed keys. */
  set(values: WidgetState): void {
    const changes = this.apply(values);
    if (changes.length) this.comm?.send({ method: "update", state: Object.fromEntries(changes.map((c) => [c.name, c.new])), buffer_paths: [] });
    this.notify(changes);
  }

  /** Calls `fn(newValue, change)` when one of `names` (default "value") changes. */
  observe(fn: Observer, names: string | string[] = "value"): this {
    this.observers.push({ names: names === "*" ? null : new Set(Array.isArray(names) ? names : [names]), fn });
    return this;
  }

  unobserve(fn: Observer): this {
    const i = this.observers.findIndex((o) => o.fn === fn);
    if (i >= 0) this.observers.splice(i, 1);
    return this;
  }

  close(): void {
    this.comm?.close();
    registry.delete(this.modelId);
  }

  fullState(): WidgetState {
    return { ...this.state };
  }

  protected apply(values: WidgetState): Change[] {
    const changes: Change[] = [];
    for (const [name, value] of Object.entries(values)) {
      const old = this.state[name];
      if (old === value || JSON.stringify(old) === JSON.stringify(value)) continue;
      this.state[name] = value;
      changes.push({ name, old, new: value, owner: this });
    }
    return changes;
  }

  protected notify(changes: Change[]): void {
    for (const change of changes) {
      for (const o of this.observers) if (!o.names || o.names.has(change.name)) o.fn(change.new, change);
    }
  }

  protected onCustom(_content: Record<string, unknown>): void {}

  private onMessage(data: Record<string, any>): void {
    if (data.method === "update") {
      const state = (data.state ?? {}) as WidgetState;
      const changes = this.apply(state);
      // ipywidgets 8 echoes frontend updates so that every frontend converges on the kernel's state.
      this.comm?.send({ method: "echo_update", state, buffer_paths: [] });
      this.notify(changes);
    } else if (data.method === "request_state") {
      this.comm?.send({ method: "update", state: this.fullState(), buffer_paths: [] });
    } else if (data.method === "custom") {
      this.onCustom((data.content ?? {}) as Record<string, unknown>);
    }
  }

  [Symbol.for("Jupyter.display")](): MimeBundle {
    return {
      "text/plain": `${String(this.state._model_name).replace(/Model$/, "")}(${inspect(this.state.value ?? this.state.description ?? "")})`,
      "application/vnd.jupyter.widget-view+json": { version_major: 2, version_minor: 0, model_id: this.modelId },
    };
  }
}

/** Widgets with a view reference a Layout and a Style model, as ipywidgets creates them. */
class DOMWidget extends Widget {
  constructor(modelName: string, viewName: string, styleModel: string | null, state: WidgetState, model = CONTROLS) {
    const layout = new Widget(BASE, "LayoutModel", "LayoutView", {});
    const style = styleModel ? { style: `IPY_MODEL_${new Widget(CONTROLS, styleModel, "StyleView", {}).modelId}` } : {};
    super(model, modelName, viewName, { _dom_classes: [], layout: `IPY_MODEL_${layout.modelId}`, ...style, tabbable: null, tooltip: null, ...state });
  }
}

const descriptionDefaults = (o: { description?: string; disabled?: boolean }) => ({ description: o.description ?? "", description_allow_html: false, disabled: o.disabled ?? false });

export class IntSlider extends DOMWidget {
  constructor(o: { value?: number; min?: number; max?: number; step?: number; description?: string; disabled?: boolean; continuousUpdate?: boolean } = {}) {
    super("IntSliderModel", "IntSliderView", "SliderStyleModel", {
      ...descriptionDefaults(o),
      value: o.value ?? o.min ?? 0,
      min: o.min ?? 0,
      max: o.max ?? 100,
      step: o.step ?? 1,
      orientation: "horizontal",
      readout: true,
      readout_format: "d",
      continuous_update: o.continuousUpdate ?? true,
      behavior: "drag-tap",
    });
  }
  get value(): number {
    return this.state.value as number;
  }
  set value(v: number) {
    this.set({ value: v });
  }
}

/** Selection widgets sync `index` over `_options_labels`; `value` is the kernel-side option. */
class SelectionWidget<T> extends DOMWidget {
  private readonly options: T[];
  constructor(modelName: string, viewName: string, o: { options: T[]; value?: T; description?: string; disabled?: boolean }, extra: WidgetState) {
    const index = o.value === undefined ? 0 : o.options.indexOf(o.value);
    super(modelName, viewName, "DescriptionStyleModel", { ...descriptionDefaults(o), _options_labels: o.options.map((x) => String(x)), index: index < 0 ? 0 : index, ...extra });
    this.options = [...o.options];
    this.state.value = this.options[this.state.index as number];
  }
  get value(): T {
    return this.options[this.state.index as number];
  }
  set value(v: T) {
    const index = this.options.indexOf(v);
    if (index < 0) throw new Error(`${inspect(v)} is not one of the options`);
    this.set({ index });
  }
  get index(): number {
    return this.state.index as number;
  }
  protected override apply(values: WidgetState): Change[] {
    const changes = super.apply(values);
    const idx = changes.find((c) => c.name === "index");
    if (idx) {
      const old = this.options[idx.old as number];
      const now = this.options[idx.new as number];
      // `value` lives only here: the frontend knows labels and index.
      delete values.value;
      this.state.value = now;
      changes.push({ name: "value", old, new: now, owner: this });
    }
    return changes;
  }
  override fullState(): WidgetState {
    const { value: _value, ...rest } = super.fullState();
    return rest;
  }
}

export class SelectionSlider<T = string> extends SelectionWidget<T> {
  constructor(o: { options: T[]; value?: T; description?: string; disabled?: boolean; continuousUpdate?: boolean }) {
    super("SelectionSliderModel", "SelectionSliderView", o, { orientation: "horizontal", readout: true, continuous_update: o.continuousUpdate ?? true, behavior: "drag-tap" });
  }
}

export class Dropdown<T = string> extends SelectionWidget<T> {
  constructor(o: { options: T[]; value?: T; description?: string; disabled?: boolean }) {
    super("DropdownModel", "DropdownView", o, {});
  }
}

export class Button extends DOMWidget {
  private readonly clickHandlers: ((b: Button) => void)[] = [];
  constructor(o: { description?: string; disabled?: boolean; buttonStyle?: "" | "primary" | "success" | "info" | "warning" | "danger"; icon?: string; tooltip?: string } = {}) {
    super("ButtonModel", "ButtonView", "ButtonStyleModel", { ...descriptionDefaults(o), button_style: o.buttonStyle ?? "", icon: o.icon ?? "", tooltip: o.tooltip ?? null });
  }
  onClick(fn: (b: Button) => void): this {
    this.clickHandlers.push(fn);
    return this;
  }
  /** What the frontend's click does (also callable from code). */
  click(): void {
    for (const fn of this.clickHandlers) fn(this);
  }
  protected override onCustom(content: Record<string, unknown>): void {
    if (content.event === "click") this.click();
  }
}

/** Output widget: holds a list of outputs; `capture` routes a function's output into it. */
export class Output extends DOMWidget {
  /** Counts clear() calls, so a late async appendDisplay does not land after a newer clear. */
  private cleared = 0;
  constructor() {
    super("OutputModel", "OutputView", null, { msg_id: "", outputs: [] }, OUTPUT);
  }
  get outputs(): unknown[] {
    return this.state.outputs as unknown[];
  }
  clear(): void {
    this.cleared++;
    this.set({ outputs: [] });
  }
  appendStdout(text: string): void {
    this.set({ outputs: [...this.outputs, { output_type: "stream", name: "stdout", text }] });
  }
  appendStderr(text: string): void {
    this.set({ outputs: [...this.outputs, { output_type: "stream", name: "stderr", text }] });
  }
  /** Appends a value as display() would show it (its Jupyter.display bundle, else text). An async
   * bundle is appended when ready, unless the widget was cleared meanwhile (a newer value replaced it). */
  appendDisplay(value: unknown): void {
    const bundle = mimeBundle(value);
    if (!(bundle instanceof Promise)) return this.appendMime(bundle);
    const cleared = this.cleared;
    kernelHost()?.track?.(bundle.then((b) => {
      if (this.cleared === cleared) this.appendMime(b);
    }));
  }
  /** Appends a ready MIME bundle, e.g. `{ "image/svg+xml": svg }`. */
  appendMime(bundle: MimeBundle): void {
    this.set({ outputs: [...this.outputs, { output_type: "display_data", data: bundle, metadata: {} }] });
  }
  /** While `fn` runs, the frontend shows output of the current request inside this widget. */
  async capture<R>(fn: () => R | Promise<R>): Promise<R> {
    this.set({ msg_id: kernelHost()?.currentMessageId() ?? "" });
    try {
      return await fn();
    } finally {
      this.set({ msg_id: "" });
    }
  }
}

/** Answers the frontend's `jupyter.widget.control` request for every widget's state (page reloads). */
export function allWidgetStates(): Record<string, { model_name: unknown; model_module: unknown; model_module_version: unknown; state: WidgetState }> {
  const out: Record<string, any> = {};
  for (const [id, w] of registry) {
    const s = w.fullState();
    out[id] = { model_name: s._model_name, model_module: s._model_module, model_module_version: s._model_module_version, state: s };
  }
  return out;
}

/** Factories in the style `widgets.IntSlider({ value, min, max })`. */
export const widgets = {
  IntSlider: (o?: ConstructorParameters<typeof IntSlider>[0]) => new IntSlider(o),
  SelectionSlider: <T = string>(o: ConstructorParameters<typeof SelectionSlider<T>>[0]) => new SelectionSlider<T>(o),
  Dropdown: <T = string>(o: ConstructorParameters<typeof Dropdown<T>>[0]) => new Dropdown<T>(o),
  Button: (o?: ConstructorParameters<typeof Button>[0]) => new Button(o),
  Output: () => new Output(),
};
