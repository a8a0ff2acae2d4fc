// Conditions in disjunctive normal form over per-column value sets, for coverage: a port of
// queryplanner/coverage_normal.py.
//
// normalize(cond, kinds) turns a normalized condition into an array of cubes whose union is
// exactly the rows for which the condition is TRUE (null: too complex, past MAX_CUBES). A cube
// holds, per column, a column set {null, values} (may it be NULL? which non-NULL values?) and
// the opaque atoms (LIKE patterns that are not plain prefixes, EXISTS) that only identical
// atoms imply. NOT is pushed down with three-valued logic: NOT (a = 1) keeps a != 1, never NULL.

import * as iv from "./intervals.js";
import { conditionJSON } from "./query.js";

export const MAX_CUBES = 64;

export const ANY = Object.freeze({ null: true, values: iv.ALL });
export const NOT_NULL = Object.freeze({ null: false, values: iv.ALL });
export const ONLY_NULL = Object.freeze({ null: true, values: iv.EMPTY });

/** What normalization needs to know about a table's columns (cached on the schema). */
export function columnKinds(schema, tableName) {
  schema.coverageKinds ??= new Map();
  let kinds = schema.coverageKinds.get(tableName);
  if (!kinds) {
    const t = schema.tables[tableName];
    const names = t.columnNames;
    kinds = {
      schema,
      table: t,
      // integer and boolean columns: open bounds can be closed
      discrete: new Set(names.filter((c) => ["integer", "boolean"].includes(t.columns[c].type))),
      nonnull: new Set(names.filter((c) => !t.columns[c].nullable)),
      types: Object.fromEntries(names.map((c) => [c, t.columns[c].type])),
    };
    schema.coverageKinds.set(tableName, kinds);
  }
  return kinds;
}

function csKey(cs) {
  return `${cs.null ? "N" : "-"}${iv.setKey(cs.values)}`;
}

/** A cube from sorted [name, columnSet] pairs and a Map of atom key -> atom. */
export function makeCube(columns, atoms) {
  const cols = new Map(columns);
  const key = `${columns.map(([n, cs]) => `${JSON.stringify(n)}:${csKey(cs)}`).join(";")}|${[...atoms.keys()].sort().join(";")}`;
  return { columns, cols, atoms, key };
}

export const TRUE_CUBE = makeCube([], new Map());

export const cubeGet = (cube, column) => cube.cols.get(column) ?? ANY;

export function intersectSets(a, b, discrete) {
  return { null: a.null && b.null, values: iv.intersect(a.values, b.values, discrete) };
}

export function subsetSets(a, b) {
  return (b.null || !a.null) && iv.subset(a.values, b.values);
}

function sortedColumns(map) {
  return [...map.entries()].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
}

/** The intersection of two cubes, or null when it is empty. */
export function meet(a, b, kinds) {
  const merged = new Map(a.columns);
  for (let [name, cs] of b.columns) {
    const mine = merged.get(name);
    if (mine) {
      cs = intersectSets(mine, cs, kinds.discrete.has(name));
      if (!cs.values.length && (!cs.null || kinds.nonnull.has(name))) return null;
    }
    merged.set(name, cs);
  }
  let atoms = a.atoms;
  if (b.atoms.size) {
    atoms = new Map(a.atoms);
    for (const [k, atom] of b.atoms) atoms.set(k, atom);
  }
  return makeCube(sortedColumns(merged), atoms);
}

function single(column, cs, kinds) {
  if (kinds.nonnull.has(column)) {
    // Never NULL, so "may be NULL" costs nothing and lets a cube without this column (ANY)
    // sit inside one that only bounds its values.
    if (!cs.values.length) return [];
    cs = { null: true, values: cs.values };
  }
  return !cs.null && !cs.values.length ? [] : [makeCube([[column, cs]], new Map())];
}

/** [literal, exact] when the pattern is a plain literal or `literal%` followed only by more
 * `%`; null for any other pattern. */
export function likePrefix(pattern) {
  const chars = Array.from(pattern);
  const out = [];
  for (let i = 0; i < chars.length;) {
    const ch = chars[i];
    if (ch === "\\") {
      // predicate.likeRegex: a backslash escapes the next character, a trailing one is literal.
      out.push(i + 1 < chars.length ? chars[i + 1] : "\\");
      i += 2;
      continue;
    }
    if (ch === "_") return null;
    if (ch === "%") return chars.slice(i).every((c) => c === "%") ? [out.join(""), false] : null;
    out.push(ch);
    i += 1;
  }
  return [out.join(""), true];
}

/** The least string above every string starting with `prefix` (code-point order). */
function prefixUpper(prefix) {
  const cps = Array.from(prefix);
  while (cps.length && cps[cps.length - 1].codePointAt(0) === 0x10ffff) cps.pop();
  if (!cps.length) return iv.POS_INF;
  const last = cps.pop().codePointAt(0);
  return cps.join("") + String.fromCodePoint(last + 1);
}

function like(cond, positive, kinds) {
  const ci = cond.op.endsWith("ilike");
  const negated = cond.op.startsWith("not");
  const keep = positive !== negated; // does the row need the pattern to match?
  const literal = ci ? null : likePrefix(cond.value);
  if (literal) {
    const [prefix, exact] = literal;
    // Strings compare by code point here, in predicate.js and in DuckDB's binary collation,
    // so "starts with p" is exactly p <= s < next(p).
    const matched = exact ? iv.points([prefix], false) : iv.halfOpen(prefix, prefixUpper(prefix));
    const values = keep ? matched : iv.complement(matched, false);
    return single(cond.column, { null: false, values }, kinds);
  }
  const key = JSON.stringify(["like", cond.column, cond.value, ci, !keep]);
  const atom = { key, column: cond.column, exists: null };
  const cs = kinds.nonnull.has(cond.column) ? ANY : NOT_NULL;
  return [makeCube([[cond.column, cs]], new Map([[key, atom]]))];
}

function exists(cond, positive, kinds) {
  const relationship = cond.exists ?? cond.notExists;
  const negated = ("notExists" in cond) === positive;
  const where = cond.where ?? null;
  let whereText = "null";
  if (where) {
    const target = kinds.schema.tables[kinds.table.relationships[relationship].target];
    whereText = conditionJSON(where, kinds.schema, target);
  }
  const key = JSON.stringify(["exists", relationship, negated]) + whereText;
  const atom = { key, column: null, exists: { relationship, where, negated } };
  return [makeCube([], new Map([[key, atom]]))];
}

function product(parts, kinds) {
  let acc = [TRUE_CUBE];
  for (const part of parts) {
    if (part === null) return null;
    const next = [];
    for (const a of acc) {
      for (const b of part) {
        const m = meet(a, b, kinds);
        if (m) next.push(m);
      }
    }
    if (next.length > MAX_CUBES) return null;
    acc = next;
    if (!acc.length) return [];
  }
  return acc;
}

function sum(parts) {
  const out = new Map();
  let n = 0;
  for (const part of parts) {
    if (part === null) return null;
    for (const cube of part) if (!out.has(cube.key)) out.set(cube.key, cube);
    n += part.length;
    if (n > MAX_CUBES) return null;
  }
  return [...out.values()];
}

const COMPARE_OPS = new Set(["=", "!=", "<", "<=", ">", ">="]);

function dnf(cond, positive, kinds) {
  if ("and" in cond || "or" in cond) {
    const isAnd = "and" in cond;
    const terms = isAnd ? cond.and : cond.or;
    // Parts are computed lazily, as Python's generator: a null part stops the rest.
    const parts = (function* gen() { for (const t of terms) yield dnf(t, positive, kinds); })();
    // NOT (a AND b) is FALSE-of-a OR FALSE-of-b, and dually: De Morgan holds in 3VL.
    return isAnd === positive ? product(parts, kinds) : sum(parts);
  }
  if ("not" in cond) return dnf(cond.not, !positive, kinds);
  if ("exists" in cond || "notExists" in cond) return exists(cond, positive, kinds);
  const { column, op } = cond;
  const discrete = kinds.discrete.has(column);
  if (COMPARE_OPS.has(op)) {
    let vs = iv.compareSet(op, cond.value, discrete);
    if (!positive) vs = iv.complement(vs, discrete);
    return single(column, { null: false, values: vs }, kinds);
  }
  if (op === "in" || op === "not in") {
    let vs = iv.points(cond.value, discrete);
    if (positive === (op === "not in")) vs = iv.complement(vs, discrete);
    return single(column, { null: false, values: vs }, kinds);
  }
  if (op === "is null" || op === "is not null") {
    return single(column, positive !== (op === "is not null") ? ONLY_NULL : NOT_NULL, kinds);
  }
  if (op.endsWith("like")) return like(cond, positive, kinds);
  throw new TypeError(`not a condition: ${JSON.stringify(cond)}`);
}

/** The cubes whose union is the rows where `cond` is TRUE (null: too complex). */
export function normalize(cond, kinds) {
  if (!cond) return [TRUE_CUBE];
  return dnf(cond, true, kinds);
}
