// Implication between normalized conditions, a port of queryplanner/coverage_implies.py: is
// every row of cube A also a row of B1 or B2 ...? When no single B holds A, A is cut along one
// column of a B into the part inside that B and the rest, and each part is decided. Opaque
// atoms are never split (a B with an atom A lacks is dropped), and the search has a step
// budget; both only ever err towards "not implied".

import * as iv from "./intervals.js";
import { cubeGet, intersectSets, makeCube, subsetSets } from "./coverage_normal.js";

export const SPLIT_BUDGET = 256;

function atomsWithin(b, a) {
  for (const k of b.atoms.keys()) if (!a.atoms.has(k)) return false;
  return true;
}

/** Does no row have a value in cs? (NULL does not count for a NOT NULL column.) */
function none(cs, name, kinds) {
  return !cs.values.length && (!cs.null || kinds.nonnull.has(name));
}

/** Is every row of cube a in cube b? */
export function cubeWithin(a, b) {
  if (!atomsWithin(b, a)) return false;
  return b.columns.every(([name, cs]) => subsetSets(cubeGet(a, name), cs));
}

/** Could a row be in both cubes? (false only when provably not) */
export function cubesMeet(a, b, kinds) {
  for (const [name, cs] of b.columns) {
    const mine = cubeGet(a, name);
    if (mine.null && cs.null && !kinds.nonnull.has(name)) continue;
    if (!iv.meets(mine.values, cs.values)) return false;
  }
  return true;
}

function replace(a, name, cs) {
  const cols = new Map(a.columns);
  cols.set(name, cs);
  return makeCube([...cols.entries()].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0)), a.atoms);
}

/** The indexes of the bs that together hold a (a Set), or null when that is not shown. */
export function cubeCovered(a, bs, kinds, budget = SPLIT_BUDGET) {
  for (let i = 0; i < bs.length; i++) if (cubeWithin(a, bs[i])) return new Set([i]);
  const live = [];
  bs.forEach((b, i) => { if (atomsWithin(b, a) && cubesMeet(a, b, kinds)) live.push([i, b]); });
  if (!live.length || escapes(a, live.map(([, b]) => b), kinds)) return null;
  return covered(a, live, kinds, { left: budget });
}

const UNKNOWN = Symbol("unknown");

/** A few values (null for NULL) that a row of a can take in column `name`. */
function witnessValues(a, name, bs, kinds) {
  const mine = cubeGet(a, name);
  for (const atom of a.atoms.values()) if (atom.column === name) return [UNKNOWN];
  const out = [];
  if (mine.null && !kinds.nonnull.has(name)) out.push(null);
  for (const part of mine.values.slice(0, 3)) {
    if (part.loClosed) out.push(part.lo);
    else if (part.hiClosed) out.push(part.hi);
  }
  const type = kinds.types[name];
  if (!out.length && iv.isAll(mine.values) && (type === "text" || type === "integer" || type === "float")) {
    // Any value of the column's type will do: one above every value the bs mention. (Python
    // only does this for str, int and float values: not timestamps, booleans or json.)
    const seen = [];
    for (const b of bs) for (const p of cubeGet(b, name).values) if (p.hiClosed) seen.push(p.hi);
    if (seen.length) {
      const top = seen.reduce((m, v) => (iv.cmp(v, m) > 0 ? v : m));
      out.push(typeof top === "string" ? `${top}\0` : top + 1);
    }
  }
  return out.length ? out : [UNKNOWN];
}

function holds(cs, value, name, kinds) {
  if (value === null) return cs.null && !kinds.nonnull.has(name);
  return iv.subset(iv.points([value], kinds.discrete.has(name)), cs.values);
}

/** Is there a row of a in none of the bs? Checked on a few corner rows of a; false means
 * only "not found", so the full search still decides. */
function escapes(a, bs, kinds, tries = 4) {
  const names = [...new Set(bs.flatMap((b) => b.columns.map(([n]) => n)))].sort();
  const options = names.map((name) => [name, witnessValues(a, name, bs, kinds)]);
  for (let k = 0; k < tries; k++) {
    const row = new Map(options.map(([name, vals]) => [name, vals[k % vals.length]]));
    const outside = bs.every((b) => b.columns.some(([name, cs]) =>
      row.get(name) !== UNKNOWN && !holds(cs, row.get(name), name, kinds)));
    if (outside) return true;
  }
  return false;
}

function covered(a, bs, kinds, budget) {
  budget.left -= 1;
  if (budget.left < 0) return null;
  const live = bs.filter(([, b]) => atomsWithin(b, a) && cubesMeet(a, b, kinds));
  for (const [i, b] of live) if (cubeWithin(a, b)) return new Set([i]);
  if (!live.length) return null;
  // Cut a along the first column where the first live b does not hold it.
  const [i0, b0] = live[0];
  for (const [name, cs] of b0.columns) {
    const mine = cubeGet(a, name);
    const disc = kinds.discrete.has(name);
    if (subsetSets(mine, cs)) continue;
    const inside = intersectSets(mine, cs, disc);
    const outside = {
      null: mine.null && !cs.null,
      values: iv.intersect(mine.values, iv.complement(cs.values, disc), disc),
    };
    let usedIn = new Set();
    if (!none(inside, name, kinds)) usedIn = covered(replace(a, name, inside), live, kinds, budget);
    if (usedIn === null) return null;
    if (none(outside, name, kinds)) return usedIn;
    const rest = live.filter(([i]) => i !== i0);
    const usedOut = covered(replace(a, name, outside), rest, kinds, budget);
    return usedOut === null ? null : new Set([...usedIn, ...usedOut]);
  }
  return null; // unreachable in practice: b0 meets a on every column yet does not hold it
}

/** The indexes of the conclusion cubes needed to hold every premise cube (a Set), or null
 * when the premise is not shown to imply the conclusion. */
export function implies(premise, conclusion, kinds) {
  const used = new Set();
  for (const a of premise) {
    const got = cubeCovered(a, conclusion, kinds);
    if (got === null) return null;
    for (const i of got) used.add(i);
  }
  return used;
}
