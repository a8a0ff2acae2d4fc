// Queries in their JSON form (docs/protocol.md, queryplanner/query.py): normalization against
// a schema, the canonical JSON text and the stable query id, byte-for-byte as Python's
// `queryplanner.query_id`. Normalized queries keep the JSON shape; timestamp literals are held
// in the fixed-width form of values.js so they compare as strings.

import { sha256Hex } from "./sha256.js";
import { compareStrings, compareValues, formatFloat, isoformat, timestampKey } from "./values.js";

export class QueryShapeError extends Error {}

/** Wrap a schema document (GET /schema's "schema") with lookups. */
export function loadSchema(doc) {
  const tables = {};
  for (const [name, t] of Object.entries(doc.tables)) {
    const columns = {};
    for (const [c, spec] of Object.entries(t.columns)) {
      const s = typeof spec === "string" ? { type: spec } : spec;
      const pk = [].concat(t.primaryKey ?? "id");
      columns[c] = { type: s.type, nullable: s.nullable ?? !pk.includes(c), since: s.since ?? 1 };
    }
    tables[name] = {
      name,
      columns,
      columnNames: Object.keys(columns),
      timestampColumns: Object.keys(columns).filter((c) => columns[c].type === "timestamp"),
      primaryKey: [].concat(t.primaryKey ?? "id"),
      relationships: t.relationships ?? {},
    };
  }
  return { version: doc.version ?? 1, minClientVersion: doc.minClientVersion ?? doc.version ?? 1, tables, doc };
}

function table(schema, name) {
  const t = schema.tables[name];
  if (!t) throw new QueryShapeError(`Unknown table ${JSON.stringify(name)}.`);
  return t;
}

function column(t, name) {
  const c = t.columns[name];
  if (!c) throw new QueryShapeError(`Unknown column ${JSON.stringify(name)} in table ${JSON.stringify(t.name)}.`);
  return c;
}

/** A literal coerced to its column's type (timestamps to the fixed-width form). */
export function normalizeValue(col, value) {
  if (col.type === "timestamp") return timestampKey(value);
  if (col.type === "float" || col.type === "integer") {
    if (typeof value !== "number") throw new QueryShapeError(`Expected a number, not ${JSON.stringify(value)}.`);
  }
  return value;
}

function normalizeCondition(cond, schema, t) {
  if ("and" in cond || "or" in cond) {
    const key = "and" in cond ? "and" : "or";
    const terms = cond[key].map((c) => normalizeCondition(c, schema, t));
    return terms.length === 1 ? terms[0] : { [key]: terms };
  }
  if ("not" in cond) return { not: normalizeCondition(cond.not, schema, t) };
  if ("exists" in cond || "notExists" in cond) {
    const key = "exists" in cond ? "exists" : "notExists";
    const rel = t.relationships[cond[key]];
    if (!rel) throw new QueryShapeError(`Unknown relationship ${JSON.stringify(cond[key])} on table ${JSON.stringify(t.name)}.`);
    const out = { [key]: cond[key] };
    if (cond.where != null) out.where = normalizeCondition(cond.where, schema, table(schema, rel.target));
    return out;
  }
  const col = column(t, cond.column);
  const op = String(cond.op).toLowerCase();
  if (op === "is null" || op === "is not null") return { column: cond.column, op };
  if (op === "in" || op === "not in") {
    return { column: cond.column, op, value: cond.value.map((v) => normalizeValue(col, v)) };
  }
  return { column: cond.column, op, value: normalizeValue(col, cond.value) };
}

/** Check a query's JSON form against the schema and normalize it (pk appended to orderBy). */
export function normalizeQuery(doc, schema, tableName = doc.table) {
  const t = table(schema, tableName);
  const q = { table: t.name };
  if (doc.where != null) q.where = normalizeCondition(doc.where, schema, t);
  if (doc.aggregate != null) {
    q.aggregate = {
      groupBy: [...(doc.aggregate.groupBy ?? [])],
      measures: Object.fromEntries(Object.keys(doc.aggregate.measures).sort(compareStrings)
        .map((alias) => [alias, { ...doc.aggregate.measures[alias] }])),
    };
    return q;
  }
  const order = (doc.orderBy ?? []).map((o) => (typeof o === "string" ? [o, "asc"] : [o[0], o[1]]));
  for (const [c] of order) column(t, c);
  for (const k of t.primaryKey) if (!order.some(([c]) => c === k)) order.push([k, "asc"]);
  q.orderBy = order;
  if (doc.limit != null) q.limit = doc.limit;
  if (doc.start != null) {
    const row = {};
    for (const [c] of order) {
      const v = doc.start.row[c];
      row[c] = v === null || v === undefined ? null : normalizeValue(column(t, c), v);
    }
    q.start = { row, inclusive: Boolean(doc.start.inclusive) };
  }
  if (doc.related != null) {
    q.related = {};
    for (const name of Object.keys(doc.related).sort(compareStrings)) {
      const rel = t.relationships[name];
      if (!rel) throw new QueryShapeError(`Unknown relationship ${JSON.stringify(name)} on table ${JSON.stringify(t.name)}.`);
      q.related[name] = normalizeQuery(doc.related[name] ?? {}, schema, rel.target);
      delete q.related[name].table;
    }
  }
  return q;
}

// -- canonical JSON (orjson with sorted keys, as queryplanner.query._dumps) ----------------

function valueJSON(col, v) {
  if (v === null || v === undefined) return "null";
  if (col.type === "timestamp") return JSON.stringify(isoformat(v));
  if (col.type === "float" && typeof v === "number") return formatFloat(v);
  return JSON.stringify(v);
}

function obj(entries) {
  entries.sort((a, b) => compareStrings(a[0], b[0]));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
}

function flatten(cond, key, out) {
  for (const term of cond[key]) {
    if (key in term) flatten(term, key, out);
    else out.push(term);
  }
  return out;
}

/** Canonical JSON text of a normalized condition: AND/OR and IN values sorted, deduplicated. */
export function conditionJSON(cond, schema, t) {
  if ("and" in cond || "or" in cond) {
    const key = "and" in cond ? "and" : "or";
    const texts = [...new Set(flatten(cond, key, []).map((c) => conditionJSON(c, schema, t)))];
    if (texts.length === 1) return texts[0];
    texts.sort(compareStrings); // UTF-8 byte order is code point order
    return obj([[key, `[${texts.join(",")}]`]]);
  }
  if ("not" in cond) return obj([["not", conditionJSON(cond.not, schema, t)]]);
  if ("exists" in cond || "notExists" in cond) {
    const key = "exists" in cond ? "exists" : "notExists";
    const entries = [[key, JSON.stringify(cond[key])]];
    if (cond.where) {
      const target = schema.tables[t.relationships[cond[key]].target];
      entries.push(["where", conditionJSON(cond.where, schema, target)]);
    }
    return obj(entries);
  }
  const col = t.columns[cond.column];
  const entries = [["column", JSON.stringify(cond.column)], ["op", JSON.stringify(cond.op)]];
  if (cond.op === "in" || cond.op === "not in") {
    const unique = [];
    for (const v of [...cond.value].sort(compareValues)) {
      if (!unique.length || compareValues(unique[unique.length - 1], v) !== 0) unique.push(v);
    }
    entries.push(["value", `[${unique.map((v) => valueJSON(col, v)).join(",")}]`]);
  } else if (cond.op !== "is null" && cond.op !== "is not null") {
    entries.push(["value", cond.op.endsWith("like") ? JSON.stringify(cond.value) : valueJSON(col, cond.value)]);
  }
  return obj(entries);
}

/** Canonical JSON text of a normalized query. */
export function canonicalJSON(q, schema, tableName = q.table) {
  const t = schema.tables[tableName];
  const entries = [];
  if (q.table !== undefined) entries.push(["table", JSON.stringify(q.table)]);
  if (q.where) entries.push(["where", conditionJSON(q.where, schema, t)]);
  if (q.orderBy && q.orderBy.length) entries.push(["orderBy", JSON.stringify(q.orderBy)]);
  if (q.limit !== undefined && q.limit !== null) entries.push(["limit", JSON.stringify(q.limit)]);
  if (q.start) {
    const row = obj(q.orderBy.map(([c]) => [c, valueJSON(t.columns[c], q.start.row[c])]));
    entries.push(["start", obj([["row", row], ["inclusive", JSON.stringify(q.start.inclusive)]])]);
  }
  if (q.related) {
    entries.push(["related", obj(Object.entries(q.related).map(([name, child]) =>
      [name, canonicalJSON(child, schema, t.relationships[name].target)]))]);
  }
  if (q.aggregate) {
    const measures = obj(Object.entries(q.aggregate.measures).map(([alias, m]) =>
      [alias, obj(m.column ? [["fn", JSON.stringify(m.fn)], ["column", JSON.stringify(m.column)]] : [["fn", JSON.stringify(m.fn)]])]));
    entries.push(["aggregate", obj([["groupBy", JSON.stringify(q.aggregate.groupBy)], ["measures", measures]])]);
  }
  return obj(entries);
}

/** The stable query id: the first 16 hex digits of SHA-256 of the canonical JSON. */
export function queryId(q, schema) {
  return sha256Hex(canonicalJSON(q, schema)).slice(0, 16);
}

/** The wire form of a normalized query (timestamps back to ISO text). */
export function wireQuery(q, schema) {
  return JSON.parse(canonicalJSON(q, schema));
}
