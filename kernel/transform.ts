/** Turns a TypeScript cell into a script that runs in the kernel's global scope:
 * - the cell body runs inside `(async () => { ... })()`, so top-level `await` works;
 * - top-level `const`/`let`/`var` become assignments to globals, so later cells see them and a re-run
 *   of `const x = ...` simply assigns again; functions, classes and enums are also copied to globals;
 * - static `import`s become `await import(...)` resolved from the notebook directory;
 * - the last expression statement is returned, which makes it the cell's result;
 * - every loop body starts with an interrupt check, so a loop that runs after an `await` stops too.
 * Nodes keep their source positions, so TypeScript's source map points back at the cell. */
import type * as TS from "typescript";

export const INTERRUPT_CHECK = "__loralabInterruptCheck";

export interface TransformedCell {
  js: string;
  sourceMap: string;
  syntaxErrors: TS.Diagnostic[];
}

export function transformCell(ts: typeof TS, code: string, fileName: string, rewriteSpecifier: (spec: string) => string): TransformedCell {
  const out = ts.transpileModule(code, {
    fileName,
    reportDiagnostics: true,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleDetection: ts.ModuleDetectionKind.Force,
      sourceMap: true,
      inlineSources: false,
      preserveConstEnums: true,
      useDefineForClassFields: true,
      alwaysStrict: false,
      esModuleInterop: true,
      experimentalDecorators: false,
    },
    transformers: { before: [(ctx) => (sf) => wrapCell(ts, ctx, sf, rewriteSpecifier)] },
  });
  const js = out.outputText.replace(/\n?\/\/# sourceMappingURL=.*\s*$/, "").replace(/\nexport \{\};\s*$/, "\n");
  return { js, sourceMap: out.sourceMapText ?? "", syntaxErrors: out.diagnostics ?? [] };
}

function hasModifier(ts: typeof TS, node: TS.Node, kind: TS.SyntaxKind): boolean {
  return ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === kind);
}

function wrapCell(ts: typeof TS, ctx: TS.TransformationContext, sf: TS.SourceFile, rewriteSpecifier: (spec: string) => string): TS.SourceFile {
  const f = ctx.factory;
  const globalRef = (name: string) => f.createPropertyAccessExpression(f.createIdentifier("globalThis"), name);
  const toGlobal = (name: string, at: TS.Node) => ts.setTextRange(f.createExpressionStatement(f.createAssignment(globalRef(name), f.createIdentifier(name))), at);
  const withoutExport = <T extends TS.Node>(node: T): T => {
    if (!ts.canHaveModifiers(node)) return node;
    const mods = ts.getModifiers(node);
    if (!mods?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword || m.kind === ts.SyntaxKind.DefaultKeyword)) return node;
    return ts.factory.replaceModifiers(node, mods.filter((m) => m.kind !== ts.SyntaxKind.ExportKeyword && m.kind !== ts.SyntaxKind.DefaultKeyword)) as unknown as T;
  };

  /** `{a, b: [c = 1], ...r}` binding pattern -> the same shape as an assignment target. */
  const bindingTarget = (name: TS.BindingName): TS.Expression => {
    if (ts.isIdentifier(name)) return f.createIdentifier(name.text);
    if (ts.isObjectBindingPattern(name)) {
      return f.createObjectLiteralExpression(
        name.elements.map((el) => {
          if (el.dotDotDotToken) return f.createSpreadAssignment(bindingTarget(el.name));
          if (!el.propertyName && ts.isIdentifier(el.name)) return f.createShorthandPropertyAssignment(el.name.text, el.initializer);
          const target = bindingTarget(el.name);
          const key = el.propertyName ?? (el.name as TS.Identifier);
          return f.createPropertyAssignment(key as TS.PropertyName, el.initializer ? f.createAssignment(target, el.initializer) : target);
        }),
      );
    }
    return f.createArrayLiteralExpression(
      name.elements.map((el) => {
        if (ts.isOmittedExpression(el)) return el;
        const target = bindingTarget(el.name);
        if (el.dotDotDotToken) return f.createSpreadElement(target);
        return el.initializer ? f.createAssignment(target, el.initializer) : target;
      }),
    );
  };

  const importCall = (spec: TS.Expression) => {
    const text = ts.isStringLiteral(spec) ? rewriteSpecifier(spec.text) : undefined;
    const arg = text !== undefined ? f.createStringLiteral(text) : spec;
    return f.createAwaitExpression(f.createCallExpression(f.createToken(ts.SyntaxKind.ImportKeyword) as unknown as TS.Expression, undefined, [arg]));
  };

  const addLoopChecks = (node: TS.Node): TS.Node => {
    const visited = ts.visitEachChild(node, addLoopChecks, ctx);
    if (!ts.isIterationStatement(visited, false)) return visited;
    const check = f.createExpressionStatement(f.createCallExpression(f.createIdentifier(INTERRUPT_CHECK), undefined, []));
    const body = (s: TS.Statement) => f.createBlock([check, ...(ts.isBlock(s) ? s.statements : [s])], true);
    if (ts.isForStatement(visited)) return f.updateForStatement(visited, visited.initializer, visited.condition, visited.incrementor, body(visited.statement));
    if (ts.isForOfStatement(visited)) return f.updateForOfStatement(visited, visited.awaitModifier, visited.initializer, visited.expression, body(visited.statement));
    if (ts.isForInStatement(visited)) return f.updateForInStatement(visited, visited.initializer, visited.expression, body(visited.statement));
    if (ts.isWhileStatement(visited)) return f.updateWhileStatement(visited, visited.expression, body(visited.statement));
    if (ts.isDoStatement(visited)) return f.updateDoStatement(visited, body(visited.statement), visited.expression);
    return visited;
  };

  const hoisted: TS.Statement[] = [];
  const body: TS.Statement[] = [];
  const statements = sf.statements;
  statements.forEach((original, i) => {
    const stmt = addLoopChecks(original) as TS.Statement;
    const isLast = i === statements.length - 1;
    if (ts.isVariableStatement(stmt)) {
      if (hasModifier(ts, stmt, ts.SyntaxKind.DeclareKeyword)) return;
      const assignments = stmt.declarationList.declarations.map((d) => {
        const target = bindingTarget(d.name);
        return f.createAssignment(target, d.initializer ?? f.createIdentifier("undefined"));
      });
      const expr = assignments.reduce<TS.Expression | undefined>((acc, a) => (acc ? f.createComma(acc, a) : a), undefined)!;
      body.push(ts.setTextRange(f.createExpressionStatement(f.createParenthesizedExpression(expr)), original));
      return;
    }
    if (ts.isFunctionDeclaration(stmt) && !stmt.name && stmt.body) {
      // `export default function () {}`: an anonymous function is just a value.
      const mods = ts.getModifiers(stmt)?.filter((m) => m.kind === ts.SyntaxKind.AsyncKeyword);
      const fn = f.createFunctionExpression(mods, stmt.asteriskToken, undefined, stmt.typeParameters, stmt.parameters, stmt.type, stmt.body);
      body.push(ts.setTextRange(isLast ? f.createReturnStatement(f.createArrayLiteralExpression([fn])) : f.createExpressionStatement(f.createParenthesizedExpression(fn)), original));
      return;
    }
    if (ts.isClassDeclaration(stmt) && !stmt.name) {
      const cls = f.createClassExpression(undefined, undefined, stmt.typeParameters, stmt.heritageClauses, stmt.members);
      body.push(ts.setTextRange(isLast ? f.createReturnStatement(f.createArrayLiteralExpression([cls])) : f.createExpressionStatement(f.createParenthesizedExpression(cls)), original));
      return;
    }
    if (ts.isFunctionDeclaration(stmt)) {
      if (!stmt.body || !stmt.name) return;
      body.push(withoutExport(stmt));
      hoisted.push(toGlobal(stmt.name.text, original));
      return;
    }
    if (ts.isClassDeclaration(stmt) || ts.isEnumDeclaration(stmt) || ts.isModuleDeclaration(stmt)) {
      if (hasModifier(ts, stmt, ts.SyntaxKind.DeclareKeyword)) return;
      body.push(withoutExport(stmt));
      const name = stmt.name;
      if (name && ts.isIdentifier(name) && !(ts.isModuleDeclaration(stmt) && !isInstantiated(ts, stmt))) body.push(toGlobal(name.text, original));
      return;
    }
    if (ts.isImportDeclaration(stmt)) {
      const clause = stmt.importClause;
      if (clause?.isTypeOnly) return;
      const load = importCall(stmt.moduleSpecifier);
      if (!clause) {
        body.push(ts.setTextRange(f.createExpressionStatement(load), original));
        return;
      }
      const props: TS.ObjectLiteralElementLike[] = [];
      if (clause.name) props.push(f.createPropertyAssignment("default", f.createIdentifier(clause.name.text)));
      const bindings = clause.namedBindings;
      if (bindings && ts.isNamespaceImport(bindings)) {
        // `import d, * as ns from "m"`: take the namespace first, then read the default from it.
        const ns = f.createIdentifier(bindings.name.text);
        const assigns: TS.Expression[] = [f.createAssignment(ns, load)];
        if (clause.name) assigns.push(f.createAssignment(f.createIdentifier(clause.name.text), f.createPropertyAccessExpression(f.createIdentifier(bindings.name.text), "default")));
        body.push(ts.setTextRange(f.createExpressionStatement(f.createParenthesizedExpression(assigns.reduce((a, b) => f.createComma(a, b)))), original));
        return;
      }
      if (bindings) {
        for (const el of bindings.elements) {
          if (el.isTypeOnly) continue;
          const imported = el.propertyName ?? el.name;
          props.push(f.createPropertyAssignment(ts.isIdentifier(imported) ? imported.text : f.createStringLiteral(imported.text), f.createIdentifier(el.name.text)));
        }
      }
      const assign = props.length ? f.createAssignment(f.createObjectLiteralExpression(props), load) : load;
      body.push(ts.setTextRange(f.createExpressionStatement(f.createParenthesizedExpression(assign)), original));
      return;
    }
    if (ts.isImportEqualsDeclaration(stmt)) {
      if (stmt.isTypeOnly) return;
      const ref = stmt.moduleReference;
      const value = ts.isExternalModuleReference(ref)
        ? f.createCallExpression(f.createIdentifier("require"), undefined, [ref.expression])
        : (ref as unknown as TS.Expression);
      body.push(ts.setTextRange(f.createExpressionStatement(f.createAssignment(f.createIdentifier(stmt.name.text), value)), original));
      return;
    }
    if (ts.isExportDeclaration(stmt)) return;
    if (ts.isExportAssignment(stmt)) {
      body.push(ts.setTextRange(isLast ? f.createReturnStatement(f.createArrayLiteralExpression([stmt.expression])) : f.createExpressionStatement(stmt.expression), original));
      return;
    }
    if (!isLast && ts.isExpressionStatement(stmt) && ts.isStringLiteral(stmt.expression) && body.length === 0) {
      // A leading "use strict" would make the wrapper strict, and top-level declarations are sloppy
      // assignments to globals: keep the string, not the directive.
      body.push(ts.setTextRange(f.createExpressionStatement(f.createParenthesizedExpression(stmt.expression)), original));
      return;
    }
    if (isLast && ts.isExpressionStatement(stmt)) {
      body.push(ts.setTextRange(f.createReturnStatement(f.createArrayLiteralExpression([stmt.expression])), original));
      return;
    }
    body.push(stmt);
  });

  const arrow = f.createArrowFunction([f.createModifier(ts.SyntaxKind.AsyncKeyword)], undefined, [], undefined, undefined, f.createBlock([...hoisted, ...body], true));
  const call = f.createExpressionStatement(f.createCallExpression(f.createParenthesizedExpression(arrow), undefined, []));
  return f.updateSourceFile(sf, [call]);
}

function isInstantiated(ts: typeof TS, decl: TS.ModuleDeclaration): boolean {
  const body = decl.body;
  if (!body) return false;
  if (ts.isModuleDeclaration(body)) return isInstantiated(ts, body);
  if (!ts.isModuleBlock(body)) return false;
  return body.statements.some((s) => !ts.isInterfaceDeclaration(s) && !ts.isTypeAliasDeclaration(s) && !(ts.isModuleDeclaration(s) && !isInstantiated(ts, s)));
}

/** Names a cell declares at top level (what it shadows from earlier cells when type-checking). */
export function declaredNames(ts: typeof TS, sf: TS.SourceFile): Set<string> {
  const names = new Set<string>();
  const addBinding = (n: TS.BindingName) => {
    if (ts.isIdentifier(n)) names.add(n.text);
    else for (const el of n.elements) if (!ts.isOmittedExpression(el)) addBinding(el.name);
  };
  for (const s of sf.statements) {
    if (ts.isVariableStatement(s)) s.declarationList.declarations.forEach((d) => addBinding(d.name));
    else if ((ts.isFunctionDeclaration(s) || ts.isClassDeclaration(s) || ts.isInterfaceDeclaration(s) || ts.isTypeAliasDeclaration(s) || ts.isEnumDeclaration(s)) && s.name) names.add(s.name.text);
    else if (ts.isModuleDeclaration(s) && ts.isIdentifier(s.name)) names.add(s.name.text);
    else if (ts.isImportEqualsDeclaration(s)) names.add(s.name.text);
    else if (ts.isImportDeclaration(s) && s.importClause) {
      const c = s.importClause;
      if (c.name) names.add(c.name.text);
      const b = c.namedBindings;
      if (b && ts.isNamespaceImport(b)) names.add(b.name.text);
      else if (b) b.elements.forEach((el) => names.add(el.name.text));
    }
  }
  return names;
}
