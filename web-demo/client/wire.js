// A local result in wire form (what the server sends and queryplanner.wire.encode_row writes):
// timestamps back to ISO text, related children nested by relationship, aggregate groups with
// their group columns and measures. Used to compare local answers with the server's.

import { isoformat } from "./values.js";

function encodeValue(type, v) {
  return type === "timestamp" && typeof v === "string" ? isoformat(v) : v;
}

function encodeRow(q, schema, tableName, row) {
  const t = schema.tables[tableName];
  const out = {};
  for (const c of t.columnNames) out[c] = encodeValue(t.columns[c].type, row[c] ?? null);
  for (const [name, child] of Object.entries(q.related ?? {})) {
    const target = t.relationships[name].target;
    const v = row[name];
    out[name] = Array.isArray(v) ? v.map((r) => encodeRow(child, schema, target, r))
      : v == null ? null : encodeRow(child, schema, target, v);
  }
  return out;
}

/** Rows of normalized query `q` (as predicate.evaluate gives them) in wire form. */
export function wireResult(q, schema, rows, tableName = q.table) {
  if (!q.aggregate) return rows.map((r) => encodeRow(q, schema, tableName, r));
  const cols = schema.tables[tableName].columns;
  const typeOf = (alias) => {
    const m = q.aggregate.measures[alias];
    if (m) return m.fn === "min" || m.fn === "max" ? cols[m.column].type : "number";
    return cols[alias].type;
  };
  return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, encodeValue(typeOf(k), v)])));
}
