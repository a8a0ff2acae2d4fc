// Coverage: can the local store answer q completely? A sound subset of the Python rules
// (queryplanner/coverage.py): it never says "covered" when Python's planner would not be sure,
// but recognises fewer cases (implication here is conjunct-by-conjunct with per-column value
// sets and intervals, no splitting of unions across several complete queries).
//
//  - supersets: a complete query without limit or start whose condition q's condition implies;
//  - windows (P, O, k): same order, q's condition implies P, and either the window holds fewer
//    than k rows (all of P) or at least q.limit of its rows match q;
//  - related children and EXISTS: the complete query must carry the same relationship as an
//    unlimited child whose condition the wanted one implies; NOT EXISTS is never local;
//  - aggregates: covered when their row query is.

import { conditionJSON } from "./query.js";
import { compareValues } from "./values.js";

function conjuncts(cond) {
  if (!cond) return [];
  if ("and" in cond) return cond.and.flatMap(conjuncts);
  return [cond];
}

// A simple comparison as a constraint on one column: {set} or {lo, loIncl, hi, hiIncl}.
function constraintOf(c) {
  if (!("column" in c)) return null;
  if (c.op === "=") return { set: [c.value] };
  if (c.op === "in") return { set: c.value };
  if (c.op === ">" || c.op === ">=") return { lo: c.value, loIncl: c.op === ">=" };
  if (c.op === "<" || c.op === "<=") return { hi: c.value, hiIncl: c.op === "<=" };
  return null;
}

function inRange(v, r) {
  if (r.lo !== undefined) {
    const c = compareValues(v, r.lo);
    if (c < 0 || (c === 0 && !r.loIncl)) return false;
  }
  if (r.hi !== undefined) {
    const c = compareValues(v, r.hi);
    if (c > 0 || (c === 0 && !r.hiIncl)) return false;
  }
  return true;
}

// Does the premise constraint (set or interval, non-null) lie within the conclusion's?
function within(p, c) {
  if (p.set) return p.set.every((v) => (c.set ? c.set.some((w) => compareValues(v, w) === 0) : inRange(v, c)));
  if (c.set) return false;
  if (c.lo !== undefined) {
    if (p.lo === undefined) return false;
    const k = compareValues(p.lo, c.lo);
    if (k < 0 || (k === 0 && p.loIncl && !c.loIncl)) return false;
  }
  if (c.hi !== undefined) {
    if (p.hi === undefined) return false;
    const k = compareValues(p.hi, c.hi);
    if (k > 0 || (k === 0 && p.hiIncl && !c.hiIncl)) return false;
  }
  return true;
}

/** Does condition `premise` imply condition `conclusion` (both normalized, same table)? */
export function implies(premise, conclusion, schema, tableName) {
  if (!conclusion) return true;
  const t = schema.tables[tableName];
  const have = conjuncts(premise);
  const haveText = new Set(have.map((c) => conditionJSON(c, schema, t)));
  return conjuncts(conclusion).every((need) => {
    if (haveText.has(conditionJSON(need, schema, t))) return true;
    const alternatives = "or" in need ? need.or : [need];
    return alternatives.some((alt) => {
      if (haveText.has(conditionJSON(alt, schema, t))) return true;
      const want = constraintOf(alt);
      if (!want) return false;
      return have.some((h) => h.column === alt.column && (() => {
        const got = constraintOf(h);
        return got !== null && within(got, want);
      })());
    });
  });
}

function hasNotExists(cond) {
  return conjuncts(cond).some((c) => "notExists" in c || "not" in c || "or" in c && c.or.some((d) => hasNotExists(d)));
}

function existsTerms(cond) {
  return conjuncts(cond).filter((c) => "exists" in c);
}

function sameOrder(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function subtreeCovered(cached, wanted, schema, tableName) {
  const exists = existsTerms(wanted.where);
  if (!exists.length && !wanted.related) return true;
  const mine = cached.related ?? {};
  const t = schema.tables[tableName];
  for (const e of exists) {
    const child = mine[e.exists];
    if (!child || child.limit != null || child.start) return false;
    if (!implies(e.where ?? null, child.where ?? null, schema, t.relationships[e.exists].target)) return false;
  }
  for (const [name, want] of Object.entries(wanted.related ?? {})) {
    const child = mine[name];
    const target = t.relationships[name].target;
    if (!child || child.limit != null || child.start) return false;
    if (!implies(want.where ?? null, child.where ?? null, schema, target)) return false;
    if (!subtreeCovered(child, want, schema, target)) return false;
  }
  return true;
}

/**
 * Decide coverage of normalized query `q` by `complete` ([{id, query}]).
 * `count(complete, q)` counts the complete query's cached rows that satisfy q's where.
 * Returns {covered, by: [ids], reason}.
 */
export function covers(complete, q, schema, count) {
  if (q.aggregate) {
    const inner = covers(complete, { table: q.table, where: q.where, orderBy: [] }, schema, count);
    return { ...inner, reason: `aggregate: its rows are ${inner.covered ? "covered" : "not covered"} (${inner.reason})` };
  }
  if (q.limit === 0) return { covered: true, by: [], reason: "the result is empty whatever the data" };
  if (hasNotExists(q.where)) return { covered: false, by: [], reason: "NOT and NOT EXISTS are only answered by the server (the JS planner does not push NOT inward yet)" };
  let overlapping = 0;
  // Unlimited queries first: they answer without counting rows, windows need a count.
  const ordered = [...complete].sort((a, b) => (a.query.limit == null ? 0 : 1) - (b.query.limit == null ? 0 : 1));
  for (const c of ordered) {
    const cq = c.query;
    if (cq.table !== q.table || cq.aggregate) continue;
    if (!implies(q.where, cq.where ?? null, schema, q.table)) continue;
    overlapping++;
    if (!subtreeCovered(cq, q, schema, q.table)) continue;
    if (cq.limit == null && !cq.start) {
      return { covered: true, by: [c.id], reason: `its filter implies the filter of complete query ${c.id}` };
    }
    if (cq.start || q.start) continue;
    const size = count(c, null); // null: no cached rows to count
    if (size === null) continue;
    if (size < cq.limit) {
      return { covered: true, by: [c.id], reason: `the window holds all ${size} rows of its condition (limit ${cq.limit})` };
    }
    if (sameOrder(cq.orderBy, q.orderBy) && q.limit != null && count(c, q) >= q.limit) {
      return { covered: true, by: [c.id], reason: `at least ${q.limit} of the window's ${size} rows match in the same order` };
    }
  }
  return {
    covered: false, by: [],
    reason: overlapping ? "the overlapping complete queries do not hold all of its rows" : "no complete query holds its rows",
  };
}
