/** Type-checking, completion and hover for notebook cells, backed by one TypeScript language service.
 *
 * Each request sees one virtual module: a *prelude* of declarations carried over from earlier cells,
 * then the cell. The prelude keeps, per top-level name, the latest declaration: `declare const x: T`
 * (T inferred by the checker), `declare function f(...)`, the text of classes/interfaces/types/enums,
 * and one import per imported binding. Names the current cell declares are left out of the prelude,
 * so re-running `const x = ...` is not a redeclaration. Positions are offsets into the cell. */
import { existsSync, readFileSync } from "node:fs";
import { join, sep } from "node:path";
import type * as TS from "typescript";
import { declaredNames } from "./transform.js";

export interface CellDiagnostic {
  code: number;
  message: string;
  /** 0-based offset into the cell. */
  start: number;
  length: number;
}

/** Console methods as @types/node declares them, for the light service (a subset of the real type). */
const LIGHT_CONSOLE = ["log", "error", "warn", "info", "debug"].map((m) => `  ${m}(message?: any, ...optionalParams: any[]): void;`);

export class NotebookTypes {
  private readonly cellFile: string;
  private readonly globalsFile: string;
  private readonly lightGlobalsFile: string;
  private readonly files = new Map<string, { text: string; version: number }>();
  private readonly diskSnapshots = new Map<string, TS.IScriptSnapshot | undefined>();
  private readonly prelude = new Map<string, string>();
  private readonly options: TS.CompilerOptions;
  private readonly kernelDts: string;
  private full?: TS.LanguageService;
  /** Until the full service exists: lib + the kernel's globals, no @types (a fifth of the text). */
  private light?: TS.LanguageService;
  private readonly resolutionCaches: TS.ModuleResolutionCache[] = [];
  /** Declaration files the light service found free of errors (each checked once). */
  private readonly lightVerified = new Set<string>();
  private last?: { code: string; preludeLength: number; service: TS.LanguageService };

  constructor(private readonly ts: typeof TS, private readonly notebookDir: string, kernelPackageRoot: string) {
    this.cellFile = join(notebookDir, "__loralab_cell__.mts");
    this.globalsFile = join(notebookDir, "__loralab_globals__.d.ts");
    this.lightGlobalsFile = join(notebookDir, "__loralab_globals_light__.d.ts");
    this.kernelDts = join(kernelPackageRoot, "dist/kernel") + sep;
    const typeRoots = [join(notebookDir, "node_modules/@types"), join(kernelPackageRoot, "node_modules/@types")].filter((d) => existsSync(d));
    const hasNodeTypes = typeRoots.some((d) => existsSync(join(d, "node")));
    const paths: Record<string, string[]> = {};
    if (!existsSync(join(notebookDir, "node_modules/loralab"))) {
      // A notebook outside a project that installs loralab still imports the kernel's own copy.
      paths["loralab"] = [join(kernelPackageRoot, "dist/lib/index.d.ts")];
      paths["loralab/kernel"] = [join(kernelPackageRoot, "dist/kernel/display-api.d.ts")];
    }
    this.options = {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: hasNodeTypes ? ["lib.es2023.d.ts"] : ["lib.es2023.d.ts", "lib.dom.d.ts"],
      types: hasNodeTypes ? ["node"] : [],
      typeRoots,
      paths,
      strict: true,
      noImplicitAny: false,
      skipLibCheck: true,
      esModuleInterop: true,
      resolveJsonModule: true,
      allowUnreachableCode: true,
      allowUnusedLabels: true,
      noEmit: true,
    };
    const displayApi = join(kernelPackageRoot, "dist/kernel/display-api.js");
    const kernelGlobals = [
      `type __LoralabKernel = typeof import(${JSON.stringify(displayApi)});`,
      "declare var display: __LoralabKernel['display'];",
      "declare var updateDisplay: __LoralabKernel['updateDisplay'];",
      "declare var clearOutput: __LoralabKernel['clearOutput'];",
      "declare var input: __LoralabKernel['input'];",
      "declare var widgets: __LoralabKernel['widgets'];",
    ];
    this.setFile(
      this.globalsFile,
      [
        ...kernelGlobals,
        "/** Aborted when the running cell is interrupted; pass it to long operations. */",
        "declare var abortSignal: AbortSignal;",
        // Notebooks for this kernel import loralab: parse its declarations while warming up, not in the
        // first cell that imports it (an unresolved import here only errs in this file, never shown).
        'type __loralabApi = typeof import("loralab");',
        // @types/node declares `require`; without it, a loose one (cells get a real require).
        ...(hasNodeTypes ? [] : ["declare var require: (id: string) => any;"]),
      ].join("\n"),
    );
    // The light service accepts a cell only when every name resolves without error, and what it declares
    // is a subset of the full declarations: an opaque AbortSignal (display-api.d.ts names it) and the
    // common console methods. Anything else (Buffer, setTimeout, node: imports) falls back to the full one.
    this.setFile(
      this.lightGlobalsFile,
      [
        ...kernelGlobals,
        "declare const __loralabOpaque: unique symbol;",
        "interface AbortSignal { readonly [__loralabOpaque]: never }",
        "interface Console {",
        ...LIGHT_CONSOLE,
        "}",
        "declare var console: Console;",
      ].join("\n"),
    );
  }

  private createService(options: TS.CompilerOptions, globalsFile: string, jsDocParsingMode: TS.JSDocParsingMode): TS.LanguageService {
    const ts = this.ts;
    // getModuleResolutionCache is read by the language service but not in its public host type.
    const host: TS.LanguageServiceHost & { getModuleResolutionCache(): TS.ModuleResolutionCache } = {
      jsDocParsingMode,
      getCompilationSettings: () => options,
      getScriptFileNames: () => [globalsFile, this.cellFile],
      getScriptVersion: (f) => String(this.files.get(f)?.version ?? 0),
      getScriptSnapshot: (f) => {
        const mem = this.files.get(f);
        if (mem) return ts.ScriptSnapshot.fromString(mem.text);
        if (!this.diskSnapshots.has(f)) {
          const text = ts.sys.readFile(f);
          this.diskSnapshots.set(f, text === undefined ? undefined : ts.ScriptSnapshot.fromString(text));
        }
        return this.diskSnapshots.get(f);
      },
      getCurrentDirectory: () => this.notebookDir,
      getDefaultLibFileName: (o) => ts.getDefaultLibFilePath(o),
      fileExists: (f) => this.files.has(f) || ts.sys.fileExists(f),
      readFile: (f) => this.files.get(f)?.text ?? ts.sys.readFile(f),
      readDirectory: ts.sys.readDirectory,
      directoryExists: ts.sys.directoryExists,
      getDirectories: ts.sys.getDirectories,
      realpath: ts.sys.realpath,
      useCaseSensitiveFileNames: () => ts.sys.useCaseSensitiveFileNames,
      // One module resolution cache (with its package.json cache) for the session: without it every
      // cell's program re-reads the package.json of every declaration file to learn its module format.
      getModuleResolutionCache: () => cache,
      resolveModuleNameLiterals: (literals, containingFile, redirected, opts, containingSourceFile) =>
        literals.map((lit) =>
          ts.resolveModuleName(lit.text, containingFile, opts, host, cache, redirected, ts.getModeForUsageLocation(containingSourceFile, lit, opts)),
        ),
    };
    const cache = ts.createModuleResolutionCache(this.notebookDir, (f) => (ts.sys.useCaseSensitiveFileNames ? f : f.toLowerCase()), options);
    this.resolutionCaches.push(cache);
    return ts.createLanguageService(host, ts.createDocumentRegistry(ts.sys.useCaseSensitiveFileNames, this.notebookDir, jsDocParsingMode));
  }

  /** Builds the light service (TypeScript's lib files and the kernel's globals only). */
  warmLight(): void {
    if (this.full || this.light) return;
    // Without JSDoc (a sixth of the parse; it only feeds hover text, which the full service gives).
    const options = { ...this.options, lib: ["lib.es2023.d.ts"], types: [], typeRoots: [], skipLibCheck: false };
    this.light = this.createService(options, this.lightGlobalsFile, this.ts.JSDocParsingMode.ParseNone);
    this.check("");
  }

  /** Builds the full service (parsing @types/node is most of it: seconds on a busy machine). */
  warmFull(): void {
    this.service();
  }

  get fullReady(): boolean {
    return this.full !== undefined;
  }

  private service(): TS.LanguageService {
    if (!this.full) {
      this.full = this.createService(this.options, this.globalsFile, this.ts.JSDocParsingMode.ParseAll);
      this.full.getSemanticDiagnostics(this.globalsFile);
      if (this.last?.service === this.light) this.last = undefined;
      this.light?.dispose();
      this.light = undefined;
    }
    return this.full;
  }

  private setFile(name: string, text: string): void {
    const cur = this.files.get(name);
    if (cur?.text === text) return;
    this.files.set(name, { text, version: (cur?.version ?? 0) + 1 });
  }

  /** Puts `code` after the prelude of the names it does not redeclare; returns the cell's offset. */
  private load(code: string, service: TS.LanguageService): number {
    const sf = this.ts.createSourceFile("cell.mts", code, this.ts.ScriptTarget.ES2022, false);
    const shadowed = declaredNames(this.ts, sf);
    const lines = [...this.prelude].filter(([name]) => !shadowed.has(name)).map(([, text]) => text);
    const preludeText = lines.join("\n") + "\n";
    this.setFile(this.cellFile, preludeText + code + "\nexport {};\n");
    this.last = { code, preludeLength: preludeText.length, service };
    return preludeText.length;
  }

  /** Syntax and type errors inside the cell (errors from carried-over declarations are not the cell's). */
  check(code: string): CellDiagnostic[] {
    if (this.light && this.lightCheck(code)) return [];
    const found = this.checkFull(code);
    // "Cannot find module": maybe installed since it was last looked up (the resolution cache keeps
    // failed lookups too), so forget the cache and look again.
    if (!found.some((d) => d.code === 2307 || d.code === 2792)) return found;
    for (const c of this.resolutionCaches) c.clear();
    const cell = this.files.get(this.cellFile)!;
    cell.version++; // a changed file has its failed imports resolved again
    return this.checkFull(code);
  }

  private checkFull(code: string): CellDiagnostic[] {
    const service = this.service();
    const offset = this.load(code, service);
    const syntactic = service.getSyntacticDiagnostics(this.cellFile);
    const all = syntactic.length ? syntactic : service.getSemanticDiagnostics(this.cellFile);
    const out: CellDiagnostic[] = [];
    for (const d of all) {
      if (d.category !== this.ts.DiagnosticCategory.Error || d.start === undefined) continue;
      const start = d.start - offset;
      if (start < 0 || start > code.length) continue;
      out.push({ code: d.code, message: this.ts.flattenDiagnosticMessageText(d.messageText, "\n"), start, length: d.length ?? 0 });
    }
    return out;
  }

  /** True when the light service finds no error at all in the cell and its prelude, and the program
   * holds nothing but lib files, the kernel's declarations and the cell (all error-free). Any error
   * means "ask the full service", which also gives the error the user sees. */
  private lightCheck(code: string): boolean {
    const light = this.light!;
    this.load(code, light);
    const program = light.getProgram();
    if (!program) return false;
    const errors = (ds: readonly TS.Diagnostic[]) => ds.some((d) => d.category === this.ts.DiagnosticCategory.Error);
    if (errors(light.getSyntacticDiagnostics(this.cellFile)) || errors(light.getSemanticDiagnostics(this.cellFile))) return false;
    const own = program.getSourceFiles().filter((f) => !program.isSourceFileDefaultLibrary(f) && f.fileName !== this.cellFile);
    if (own.some((f) => f.fileName !== this.lightGlobalsFile && !f.fileName.startsWith(this.kernelDts))) return false;
    for (const { fileName } of own) {
      if (this.lightVerified.has(fileName)) continue;
      if (errors(light.getSyntacticDiagnostics(fileName)) || errors(light.getSemanticDiagnostics(fileName))) return false;
      this.lightVerified.add(fileName);
    }
    return true;
  }

  /** Records the top-level declarations of a cell that ran, for the cells after it. */
  commit(code: string): void {
    const ts = this.ts;
    const last = this.last?.code === code ? this.last : undefined;
    const offset = last ? last.preludeLength : this.load(code, this.service());
    const program = (last?.service ?? this.service()).getProgram();
    const sf = program?.getSourceFile(this.cellFile);
    if (!program || !sf) return;
    const checker = program.getTypeChecker();
    const flags = ts.TypeFormatFlags.NoTruncation | ts.TypeFormatFlags.UseFullyQualifiedType;
    const decls = new Map<string, string>();
    const add = (name: string, text: string) => decls.set(name, decls.has(name) ? `${decls.get(name)}\n${text}` : text);
    const typeText = (node: TS.Node) => {
      const text = importableTypeText(checker.typeToString(checker.getTypeAtLocation(node), sf, flags));
      return /\(Anonymous|\.\.\.|__type/.test(text) ? "any" : text;
    };
    const sourceText = (node: TS.Node) => node.getText(sf).replace(/^(export\s+)?(default\s+)?/, "");
    for (const s of sf.statements) {
      if (s.pos < offset - 1) continue;
      if (ts.isVariableStatement(s)) {
        const kind = s.declarationList.flags & ts.NodeFlags.Const ? "const" : s.declarationList.flags & ts.NodeFlags.Let ? "let" : "var";
        const visit = (n: TS.BindingName) => {
          if (ts.isIdentifier(n)) decls.set(n.text, `declare ${kind} ${n.text}: ${typeText(n)};`);
          else for (const el of n.elements) if (!ts.isOmittedExpression(el)) visit(el.name);
        };
        s.declarationList.declarations.forEach((d) => visit(d.name));
      } else if (ts.isFunctionDeclaration(s) && s.name) {
        const name = s.name.text;
        if (decls.has(name)) continue;
        const sigs = checker.getTypeAtLocation(s.name).getCallSignatures();
        decls.set(name, sigs.map((sig) => `declare function ${name}${importableTypeText(checker.signatureToString(sig, sf, flags))};`).join("\n"));
      } else if ((ts.isClassDeclaration(s) || ts.isInterfaceDeclaration(s) || ts.isTypeAliasDeclaration(s) || ts.isEnumDeclaration(s) || ts.isModuleDeclaration(s)) && s.name && ts.isIdentifier(s.name)) {
        add(s.name.text, sourceText(s));
      } else if (ts.isImportEqualsDeclaration(s)) {
        decls.set(s.name.text, sourceText(s));
      } else if (ts.isImportDeclaration(s) && s.importClause && ts.isStringLiteral(s.moduleSpecifier)) {
        const from = JSON.stringify(s.moduleSpecifier.text);
        const c = s.importClause;
        const type = c.isTypeOnly ? "type " : "";
        if (c.name) decls.set(c.name.text, `import ${type}${c.name.text} from ${from};`);
        const b = c.namedBindings;
        if (b && ts.isNamespaceImport(b)) decls.set(b.name.text, `import ${type}* as ${b.name.text} from ${from};`);
        else if (b)
          for (const el of b.elements) {
            const imported = el.propertyName ? `${el.propertyName.getText(sf)} as ` : "";
            decls.set(el.name.text, `import ${type || (el.isTypeOnly ? "type " : "")}{ ${imported}${el.name.text} } from ${from};`);
          }
      }
    }
    for (const [name, text] of decls) {
      this.prelude.delete(name);
      this.prelude.set(name, text);
    }
  }

  /** Completions at a UTF-16 offset in the cell. */
  completions(code: string, pos: number): { matches: string[]; start: number; end: number } {
    const service = this.service();
    const offset = this.load(code, service);
    let start = pos;
    while (start > 0 && /[\w$]/.test(code[start - 1])) start--;
    let end = pos;
    while (end < code.length && /[\w$]/.test(code[end])) end++;
    const prefix = code.slice(start, pos);
    const info = service.getCompletionsAtPosition(this.cellFile, offset + pos, { includeCompletionsWithInsertText: false });
    const entries = (info?.entries ?? []).filter((e) => e.name.startsWith(prefix) && !e.name.startsWith("__loralab"));
    entries.sort((a, b) => (a.sortText === b.sortText ? (a.name < b.name ? -1 : 1) : a.sortText < b.sortText ? -1 : 1));
    return { matches: [...new Set(entries.map((e) => e.name))], start, end };
  }

  /** Hover text for the identifier at (or just before) a UTF-16 offset. */
  inspect(code: string, pos: number, detail = 0): string | undefined {
    const service = this.service();
    const offset = this.load(code, service);
    const at = (p: number) => service.getQuickInfoAtPosition(this.cellFile, offset + p);
    const info = at(pos) ?? (pos > 0 ? at(pos - 1) : undefined);
    if (!info) return undefined;
    const ts = this.ts;
    const parts = [ts.displayPartsToString(info.displayParts)];
    const doc = ts.displayPartsToString(info.documentation);
    if (doc) parts.push("", doc);
    const tags = info.tags ?? [];
    if (tags.length && detail > 0) parts.push("", ...tags.map((t) => `@${t.name} ${ts.displayPartsToString(t.text)}`));
    return parts.join("\n");
  }
}

/** The checker prints types from other files as `import("/abs/path/mod").T`, without the extension
 * that NodeNext resolution needs, so in the next cell's prelude they would not resolve (and silently
 * become `any`): give each path the extension of the declaration file that exists. */
export function importableTypeText(text: string): string {
  return text.replace(/import\("(\/[^"]*?)"(, \{ with: \{ "resolution-mode": "(?:import|require)" \} \})?\)/g, (whole, path: string, mode = "") => {
    if (/\.(m|c)?js$/.test(path)) return whole;
    for (const [dts, js] of [[".d.ts", ".js"], [".d.mts", ".mjs"], [".d.cts", ".cjs"], ["/index.d.ts", "/index.js"]]) {
      if (existsSync(path + dts)) return `import(${JSON.stringify(path + js)}${mode})`;
    }
    return whole;
  });
}

/** The kernel package root: the directory with loralab's package.json. */
export function readPackageVersion(root: string, pkg: string): string {
  try {
    return JSON.parse(readFileSync(join(root, "node_modules", pkg, "package.json"), "utf8")).version;
  } catch {
    return "unknown";
  }
}
