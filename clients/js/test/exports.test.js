// The hand-written declarations and the module agree: every value the .d.ts exports exists in
// limpet-client.js with the declared kind, and the module exports nothing undeclared.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import ts from "typescript";
import * as mod from "../limpet-client.js";

function declaredValues() {
  const path = new URL("../limpet-client.d.ts", import.meta.url);
  const source = ts.createSourceFile("limpet-client.d.ts", readFileSync(path, "utf8"), ts.ScriptTarget.ES2022);
  const values = new Map();
  for (const node of source.statements) {
    const exported = node.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    if (ts.isClassDeclaration(node) && exported) values.set(node.name.text, "class");
    else if (ts.isFunctionDeclaration(node) && exported) values.set(node.name.text, "function");
    else if (ts.isVariableStatement(node) && exported) {
      for (const d of node.declarationList.declarations) values.set(d.name.text, "const");
    } else if (ts.isExportAssignment(node)) values.set("default", node.expression.text);
  }
  return values;
}

test("every declared value is exported with its kind, and nothing else is", () => {
  const declared = declaredValues();
  assert.ok(declared.size >= 6, `parsed too few declarations: ${[...declared.keys()]}`);
  for (const [name, kind] of declared) {
    const value = mod[name];
    assert.notEqual(value, undefined, `${name} is declared but not exported`);
    if (kind === "class") assert.match(Function.prototype.toString.call(value), /^class\b/, `${name} is not a class`);
    else if (kind === "function") assert.equal(typeof value, "function", name);
    else if (kind === "const") assert.equal(typeof value, "object", name);
    else assert.equal(value, mod[kind], `default is not ${kind}`);
  }
  assert.deepEqual(Object.keys(mod).sort(), [...declared.keys()].sort(), "exported but not declared");
});
