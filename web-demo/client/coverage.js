// Coverage: can q's full result be computed from the rows of a set of complete queries? A port
// of queryplanner/coverage.py (decide), giving exactly its answer on the shared cases
// (tests/conformance/coverage.json). The answer is sound: covered only when q over the rows of
// the complete queries gives exactly q's result on the server.
//
//  - supersets: complete queries without limit or start hold every row of their condition, so q
//    is covered when its condition implies the union of theirs (coverage_implies.js);
//  - windows (P, order O, start s, limit k) cover (P', O, s', k') when P' implies P, s' is not
//    before s, and the window holds fewer than k rows (all of P after s), or at least k' of its
//    rows satisfy q, or P' is equivalent to P with the same start and k' <= k (a prefix);
//  - related children are covered by the same relationship's child of every complete query
//    used; EXISTS needs the related rows cached; NOT EXISTS is never decided locally;
//  - aggregates are covered when their row query is.
//
// Complete queries are entries {id, query}; their normal form is cached on the entry.
// `count(entry, q)` (or null when no rows can be counted) gives how many of the entry's cached
// result rows satisfy q's where and start; `{table}` counts the whole result.

import * as iv from "./intervals.js";
import { cubesMeet, implies } from "./coverage_implies.js";
import { columnKinds, cubeGet, normalize } from "./coverage_normal.js";
import { compileComparator } from "./predicate.js";

/** Columns held to a small finite set of non-NULL values in every cube (their names). */
export function pinned(cubes, kinds) {
  if (!cubes || !cubes.length) return new Set();
  let out = null;
  for (const cube of cubes) {
    const here = new Set();
    for (const [name, cs] of cube.columns) {
      if (cs.null && !kinds.nonnull.has(name)) continue;
      if (iv.finitePoints(cs.values, kinds.discrete.has(name)) !== null) here.add(name);
    }
    out = out === null ? here : new Set([...out].filter((k) => here.has(k)));
    if (!out.size) return out;
  }
  return out;
}

function needsValue(cubes, kinds) {
  if (!cubes || !cubes.length) return [];
  const sets = cubes.map((c) => c.columns.filter(([n, cs]) => !cs.null && !kinds.nonnull.has(n)).map(([n]) => n));
  return sets[0].filter((n) => sets.every((s) => s.includes(n)));
}

/** The normal form of a complete query's condition, computed once per entry. */
function normalOf(entry, schema) {
  if (!entry.coverageNormal || entry.coverageNormal.schema !== schema) {
    const kinds = columnKinds(schema, entry.query.table);
    const cubes = normalize(entry.query.where ?? null, kinds);
    entry.coverageNormal = { schema, cubes, pins: pinned(cubes, kinds), needsValue: needsValue(cubes, kinds) };
  }
  return entry.coverageNormal;
}

const cubesOf = (schema, table, cond) => normalize(cond ?? null, columnKinds(schema, table));

const nullOk = (qCubes, column) => qCubes.every((a) => cubeGet(a, column).null);

const existsAtoms = (cubes) => cubes.flatMap((c) => [...c.atoms.values()].filter((a) => a.exists).map((a) => a.exists));

function hasExists(cond) {
  if (!cond) return false;
  if ("exists" in cond || "notExists" in cond) return true;
  if ("and" in cond) return cond.and.some(hasExists);
  if ("or" in cond) return cond.or.some(hasExists);
  if ("not" in cond) return hasExists(cond.not);
  return false;
}

const isWindowless = (q) => q.limit == null && !q.start;
const sameJSON = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
const orderOf = (q) => q.orderBy ?? [];

// -- windows and starts -------------------------------------------------------------------

/** Does every row at/after qStart lie at/after cStart in `order`? */
export function startWithin(qStart, cStart, order) {
  if (!cStart) return true;
  if (!qStart) return false;
  const k = compileComparator(order)(qStart.row, cStart.row);
  if (k !== 0) return k > 0;
  return cStart.inclusive || !qStart.inclusive;
}

function sameStart(a, b) {
  if (!a || !b) return !a && !b;
  return a.inclusive === b.inclusive && sameJSON(a.row, b.row);
}

/** q is a prefix of the window c: same condition, order and start, and k' <= k. */
function sameWindowPrefix(c, q, schema, table) {
  if (q.limit == null || c.limit == null || q.limit > c.limit || !sameStart(q.start, c.start)) return false;
  if (!sameJSON(orderOf(q), orderOf(c))) return false;
  const qc = cubesOf(schema, table, q.where);
  const cc = cubesOf(schema, table, c.where);
  if (qc === null || cc === null) return false;
  const d = columnKinds(schema, table);
  return implies(qc, cc, d) !== null && implies(cc, qc, d) !== null;
}

// -- related children and EXISTS ----------------------------------------------------------

/** Does the cached child query hold, for every parent, the rows of the wanted one? */
function childCovered(cached, wanted, schema, table) {
  const wc = cubesOf(schema, table, wanted.where);
  const cc = cubesOf(schema, table, cached.where);
  if (wc === null || cc === null) return false;
  const exists = existsAtoms(wc);
  if (exists.some((e) => e.negated)) return false;
  let rowsOk;
  if (cached.limit == null) {
    rowsOk = (!cached.start || sameJSON(orderOf(cached), orderOf(wanted)))
      && startWithin(wanted.start, cached.start, orderOf(cached))
      && implies(wc, cc, columnKinds(schema, table)) !== null;
  } else {
    // Per-parent windows cannot be counted cheaply, so only the prefix rule applies.
    rowsOk = sameWindowPrefix(cached, wanted, schema, table);
  }
  return rowsOk && subtreeCovered(cached, wanted, exists, schema, table);
}

/** Are the related rows that `wanted` needs (its related children and the children its EXISTS
 * conditions look at) cached with every row of `cached`? */
export function subtreeCovered(cached, wanted, exists, schema, table) {
  const related = Object.entries(wanted.related ?? {});
  if (!exists.length && !related.length) return true;
  const mine = cached.related ?? {};
  const t = schema.tables[table];
  for (const e of exists) {
    const child = mine[e.relationship];
    if (!child || child.limit != null || child.start) return false;
    if (hasExists(e.where)) return false;
    const target = t.relationships[e.relationship].target;
    const ec = cubesOf(schema, target, e.where);
    const cc = cubesOf(schema, target, child.where);
    if (ec === null || cc === null || implies(ec, cc, columnKinds(schema, target)) === null) return false;
  }
  for (const [name, want] of related) {
    const child = mine[name];
    if (!child || !childCovered(child, want, schema, t.relationships[name].target)) return false;
  }
  return true;
}

// -- the decision ---------------------------------------------------------------------------

function unionOf(qCubes, pool, kinds, order) {
  const flat = [];
  const owner = [];
  pool.forEach(([, cubes], i) => { for (const c of cubes) { flat.push(c); owner.push(i); } });
  const used = implies(qCubes, flat, kinds);
  if (used === null) return null;
  const by = [...new Set([...used].map((j) => owner[j]))].map((i) => pool[i][0]);
  return by.sort((a, b) => order.get(a) - order.get(b));
}

const result = (covered, by, reason) => ({ covered, by: by.map((c) => c.id), entries: by, reason });

/**
 * The coverage of normalized query `q` by the complete queries `candidates` ([{id, query}], in
 * their order of preference): {covered, by: [ids], entries, reason}.
 */
export function covers(candidates, q, schema, count = null) {
  if (q.aggregate) {
    const inner = covers(candidates, { table: q.table, where: q.where, orderBy: [] }, schema, count);
    const state = inner.covered ? "covered" : "not covered";
    return { ...inner, reason: `aggregate: its rows are ${state} (${inner.reason})` };
  }
  const table = q.table;
  const d = columnKinds(schema, table);
  const qCubes = cubesOf(schema, table, q.where);
  if (qCubes === null) return result(false, [], "the condition is too complex to compare");
  if (!qCubes.length || q.limit === 0) return result(true, [], "the result is empty whatever the data");
  const exists = existsAtoms(qCubes);
  if (exists.some((e) => e.negated)) return result(false, [], "NOT EXISTS is only answered by the server");
  const pool = [];
  const blocked = [];
  const windows = [];
  const qPins = pinned(qCubes, d);
  const nullOkMemo = new Map();
  for (const c of candidates) {
    const cq = c.query;
    if (cq.table !== table || cq.aggregate) continue;
    const normal = normalOf(c, schema);
    const cCubes = normal.cubes;
    // A complete query pinning a column to a few values can only hold q when q pins it too
    // (a union with other complete queries could, but that is not searched).
    if (cCubes === null || ![...normal.pins].every((k) => qPins.has(k))) continue;
    if (!subtreeCovered(cq, q, exists, schema, table)) continue;
    let isBlocked = false;
    for (const col of normal.needsValue) {
      if (!nullOkMemo.has(col)) nullOkMemo.set(col, nullOk(qCubes, col));
      isBlocked = isBlocked || nullOkMemo.get(col);
    }
    if (isBlocked) {
      // It cannot hold q alone; it may still complete a union, so keep it for that.
      blocked.push([c, cCubes]);
      continue;
    }
    if (!qCubes.some((a) => cCubes.some((b) => cubesMeet(a, b, d)))) continue;
    (isWindowless(cq) ? pool : windows).push([c, cCubes]);
  }
  if (!pool.length && !windows.length) {
    // q's rows with NULL in every such column are in no complete query.
    return result(false, [], `no complete query ${blocked.length ? "holds its rows" : "overlaps it"}`);
  }
  const order = new Map(candidates.map((c, i) => [c, i]));
  for (const [c, cCubes] of blocked) (isWindowless(c.query) ? pool : windows).push([c, cCubes]);
  let by = unionOf(qCubes, pool, d, order);
  if (by !== null) return result(true, by, "its condition implies the union of complete queries");
  for (const [c, cCubes] of windows) {
    const reason = windowCovers(c, cCubes, q, qCubes, schema, count);
    if (reason !== null) return result(true, [c], reason);
  }
  if (count) {
    // Windows that hold fewer rows than their limit are all of their condition.
    for (const [c, cCubes] of windows) {
      const size = windowSize(c, count);
      if (!c.query.start && size !== null && size < (c.query.limit ?? 0)) pool.push([c, cCubes]);
    }
    by = unionOf(qCubes, pool, d, order);
    if (by !== null) {
      return result(true, by, "its condition implies the union of complete queries (windows holding fewer rows than their limit)");
    }
  }
  return result(false, [], "the overlapping complete queries do not hold all of its rows");
}

/** How many rows the store holds for window c (null: it cannot tell). */
function windowSize(c, count) {
  // A store cannot pick out the rows of a window whose EXISTS it cannot evaluate.
  if (!count || hasExists(c.query.where)) return null;
  return count(c, { table: c.query.table });
}

function windowCovers(c, cCubes, q, qCubes, schema, count) {
  const cq = c.query;
  if (!sameJSON(orderOf(cq), orderOf(q)) || !startWithin(q.start, cq.start, orderOf(cq))) return null;
  if (implies(qCubes, cCubes, columnKinds(schema, q.table)) === null) return null;
  if (cq.limit == null) return "its rows all lie after the start of a complete query with that start";
  if (sameWindowPrefix(cq, q, schema, q.table)) return `it is the first ${q.limit} of the same ${cq.limit} rows`;
  const size = windowSize(c, count);
  if (size === null) return null;
  if (size < cq.limit) return `the window holds all ${size} rows of its condition (limit ${cq.limit})`;
  if (q.limit != null && count(c, q) >= q.limit) {
    return `at least ${q.limit} of the window's ${size} rows match in the same order`;
  }
  return null;
}
