// The JS client against the shared coverage cases (tests/conformance/coverage.json), run with
// `node --test tests/conformance/`. The JS coverage is a port of the Python rules: every case
// must give Python's answer, relying on the same complete queries.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { covers } from "../../web-demo/client/coverage.js";
import { loadSchema, normalizeQuery, queryId } from "../../web-demo/client/query.js";
import { LocalStore } from "../../web-demo/client/store.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const doc = JSON.parse(fs.readFileSync(path.join(here, "coverage.json"), "utf8"));
const schema = loadSchema(JSON.parse(fs.readFileSync(path.join(root, doc.schema), "utf8")));

for (const c of doc.cases) {
  test(`coverage: ${c.name}`, () => {
    const store = new LocalStore(schema);
    for (const [table, rows] of Object.entries(c.rows ?? {})) store.applyPoke({ put: { [table]: rows } });
    const complete = c.complete.map((x, i) => {
      const q = normalizeQuery(x.query, schema);
      return { id: String(i), query: q, qid: queryId(q, schema) };
    });
    const q = normalizeQuery(c.query, schema);
    const count = c.rows ? (entry, want) => store.countMatching(entry, want) : null;
    const got = covers(complete, q, schema, count);
    if (got.covered) assert.equal(c.covered, true, `JS says covered (${got.reason}) but it is not: unsound`);
    assert.equal(got.covered, c.covered, `${c.why ?? ""} — JS: ${got.reason}`);
    assert.deepEqual(got.entries.map((e) => complete.indexOf(e)), c.by, got.reason);
  });
}
