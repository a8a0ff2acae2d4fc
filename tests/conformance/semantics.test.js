// The JS evaluator (web-demo/client/predicate.js, through the local store) against the shared
// semantics cases (tests/conformance/semantics.json, DuckDB's answers): same rows in the same
// order, the same keys in the same order. Floats from float columns and averages may differ
// in the last bits (the file's tolerance rule, as tests/queryplanner/test_conformance_semantics.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadSchema, normalizeQuery } from "../../web-demo/client/query.js";
import { LocalStore } from "../../web-demo/client/store.js";
import { wireResult } from "../../web-demo/client/wire.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const doc = JSON.parse(fs.readFileSync(path.join(here, "semantics.json"), "utf8"));
const schema = loadSchema(doc.schema);
const store = new LocalStore(schema);
store.applyPoke({ put: doc.rows });

/** Python's math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), for the inexact values. */
function close(a, b) {
  if (Object.is(a, b)) return true;
  if (a === 0 && b === 0) return false; // -0.0 and 0.0 are told apart in wire form
  return Math.abs(a - b) <= Math.max(1e-12, 1e-9 * Math.max(Math.abs(a), Math.abs(b)));
}

function same(got, want, inexact, where) {
  if (Array.isArray(want)) {
    assert.ok(Array.isArray(got), `${where}: expected a list, got ${JSON.stringify(got)}`);
    assert.equal(got.length, want.length, `${where}: ${got.length} rows, expected ${want.length}`);
    want.forEach((w, i) => same(got[i], w, inexact, `${where}[${i}]`));
    return;
  }
  if (want !== null && typeof want === "object") {
    assert.ok(got !== null && typeof got === "object", `${where}: expected an object, got ${JSON.stringify(got)}`);
    assert.deepEqual(Object.keys(got), Object.keys(want), `${where}: keys (and their order)`);
    for (const k of Object.keys(want)) same(got[k], want[k], inexact, `${where}.${k}`);
    return;
  }
  if (typeof want === "number" && typeof got === "number" && inexact(where)) {
    assert.ok(close(got, want), `${where}: ${got} is not close to ${want}`);
    return;
  }
  assert.ok(Object.is(got, want), `${where}: ${JSON.stringify(got)} (${Object.is(got, -0) ? "-0" : typeof got}), expected ${JSON.stringify(want)}`);
}

/** Which values may be inexact: aggregates over float columns and averages. */
function inexactFor(q) {
  if (q.aggregate) {
    const cols = schema.tables[q.table].columns;
    const loose = new Set(Object.entries(q.aggregate.measures)
      .filter(([, m]) => m.fn === "avg" || (m.column && cols[m.column].type === "float"))
      .map(([alias]) => alias));
    return (where) => loose.has(where.slice(where.lastIndexOf(".") + 1));
  }
  return () => false; // row values are copied, never computed: exact
}

test("the file has every kind of case", () => {
  assert.ok(doc.cases.length >= 50);
  assert.equal(new Set(doc.cases.map((c) => c.name)).size, doc.cases.length);
});

for (const c of doc.cases) {
  test(`semantics: ${c.name}`, () => {
    const q = normalizeQuery(c.query, schema);
    const got = wireResult(q, schema, store.run(q));
    same(got, c.expected, inexactFor(q), "result");
  });
}
