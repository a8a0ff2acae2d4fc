// Sets of non-NULL column values as unions of intervals, for coverage's implication checks: a
// port of queryplanner/intervals.py, kept line-for-line close so both answer alike.
//
// A value set is a sorted array of disjoint intervals {lo, loClosed, hi, hiClosed} over one
// column's totally ordered domain (numbers, strings by code point, booleans, timestamps in the
// fixed-width form of values.js). NULL is never in a set: coverage keeps "may be NULL" apart.
// Discrete domains (integer and boolean columns) close open bounds (x > 1 is x >= 2); other
// domains are treated as dense, which only makes a set look larger (sound).

import { compareValues } from "./values.js";

export const NEG_INF = Object.freeze({ inf: -1, toString: () => "-inf" });
export const POS_INF = Object.freeze({ inf: 1, toString: () => "+inf" });

const isInf = (v) => v === NEG_INF || v === POS_INF;

/** Total order over values and the two infinities. */
export function cmp(a, b) {
  if (a === b) return 0;
  if (a === NEG_INF || b === POS_INF) return -1;
  if (a === POS_INF || b === NEG_INF) return 1;
  return compareValues(a, b);
}

// Python compares the tuples (value, flag) with False < True.
function cmpPair(a, aFlag, b, bFlag) {
  const c = cmp(a, b);
  return c !== 0 ? c : (aFlag === bFlag ? 0 : aFlag ? 1 : -1);
}

const iv = (lo, loClosed, hi, hiClosed) => ({ lo, loClosed, hi, hiClosed });

export const EMPTY = Object.freeze([]);
export const ALL = Object.freeze([iv(NEG_INF, false, POS_INF, false)]);

export const isAll = (a) => a === ALL || (a.length === 1 && a[0].lo === NEG_INF && a[0].hi === POS_INF);
export const isPoint = (p) => p.loClosed && p.hiClosed && cmp(p.lo, p.hi) === 0;

function empty(p) {
  const c = cmp(p.lo, p.hi);
  return c > 0 || (c === 0 && !(p.loClosed && p.hiClosed));
}

function closeDiscrete(p) {
  let { lo, loClosed, hi, hiClosed } = p;
  if (!loClosed && !isInf(lo)) { lo += 1; loClosed = true; }
  if (!hiClosed && !isInf(hi)) { hi -= 1; hiClosed = true; }
  return iv(lo, loClosed, hi, hiClosed);
}

/** Drop empty intervals, close discrete bounds, sort and merge overlapping/adjacent ones. */
function clean(parts, discrete) {
  if (discrete) parts = parts.map(closeDiscrete);
  parts = parts.filter((p) => !empty(p));
  if (parts.length <= 1) return parts;
  parts.sort((a, b) => cmpPair(a.lo, !a.loClosed, b.lo, !b.loClosed));
  const out = [parts[0]];
  for (const p of parts.slice(1)) {
    const last = out[out.length - 1];
    const c = cmp(p.lo, last.hi);
    let touches = c < 0 || (c === 0 && (p.loClosed || last.hiClosed));
    if (discrete && !touches && last.hiClosed && p.loClosed) {
      touches = !isInf(last.hi) && cmp(last.hi + 1, p.lo) === 0;
    }
    if (touches) {
      if (cmpPair(p.hi, p.hiClosed, last.hi, last.hiClosed) > 0) {
        out[out.length - 1] = iv(last.lo, last.loClosed, p.hi, p.hiClosed);
      }
    } else {
      out.push(p);
    }
  }
  return out;
}

/** The non-NULL values v for which `v <op> value` is true. */
export function compareSet(op, value, discrete) {
  const parts = {
    "=": () => [iv(value, true, value, true)],
    "!=": () => [iv(NEG_INF, false, value, false), iv(value, false, POS_INF, false)],
    "<": () => [iv(NEG_INF, false, value, false)],
    "<=": () => [iv(NEG_INF, false, value, true)],
    ">": () => [iv(value, false, POS_INF, false)],
    ">=": () => [iv(value, true, POS_INF, false)],
  }[op];
  if (!parts) throw new Error(`Unknown comparison operator ${JSON.stringify(op)}.`);
  return clean(parts(), discrete);
}

export function points(values, discrete) {
  return clean(values.map((v) => iv(v, true, v, true)), discrete);
}

/** lo <= v < hi (hi may be POS_INF). */
export function halfOpen(lo, hi) {
  return clean([iv(lo, true, hi, false)], false);
}

export function complement(a, discrete) {
  const out = [];
  let lo = NEG_INF;
  let loClosed = false;
  for (const p of a) {
    out.push(iv(lo, loClosed, p.lo, !p.loClosed));
    lo = p.hi;
    loClosed = !p.hiClosed;
  }
  out.push(iv(lo, loClosed, POS_INF, false));
  return clean(out, discrete);
}

export function intersect(a, b, discrete) {
  if (isAll(a)) return b;
  if (isAll(b)) return a;
  const out = [];
  for (const p of a) {
    for (const r of b) {
      const lo = cmpPair(p.lo, !p.loClosed, r.lo, !r.loClosed) >= 0 ? [p.lo, p.loClosed] : [r.lo, r.loClosed];
      const hi = cmpPair(p.hi, p.hiClosed, r.hi, r.hiClosed) <= 0 ? [p.hi, p.hiClosed] : [r.hi, r.hiClosed];
      out.push(iv(lo[0], lo[1], hi[0], hi[1]));
    }
  }
  return clean(out, discrete);
}

export function union(a, b, discrete) {
  return clean([...a, ...b], discrete);
}

export function sameSet(a, b) {
  return a.length === b.length && a.every((p, i) => {
    const r = b[i];
    return p.loClosed === r.loClosed && p.hiClosed === r.hiClosed && cmp(p.lo, r.lo) === 0 && cmp(p.hi, r.hi) === 0;
  });
}

/** Is every value of a in b? (b's parts are merged, so each part of a sits in one of b's.) */
export function subset(a, b) {
  if (!a.length || isAll(b) || sameSet(a, b)) return true;
  return a.every((p) => b.some((r) =>
    cmpPair(r.lo, !r.loClosed, p.lo, !p.loClosed) <= 0 && cmpPair(p.hi, p.hiClosed, r.hi, r.hiClosed) <= 0));
}

/** The values of a when it is a small finite set, else null. */
export function finitePoints(a, discrete, cap = 64) {
  const out = [];
  for (const p of a) {
    if (isPoint(p)) out.push(p.lo);
    else if (discrete && !isInf(p.lo) && !isInf(p.hi)) {
      if (p.hi - p.lo >= cap) return null;
      for (let v = +p.lo; v <= +p.hi; v++) out.push(v);
    } else {
      return null;
    }
    // The parts are disjoint, so the values are distinct.
    if (out.length > cap) return null;
  }
  return out;
}

function laterLo(p, r) {
  if (p.lo === NEG_INF) return [r.lo, r.loClosed];
  if (r.lo === NEG_INF || cmp(r.lo, p.lo) < 0) return [p.lo, p.loClosed];
  if (cmp(p.lo, r.lo) < 0) return [r.lo, r.loClosed];
  return [p.lo, p.loClosed && r.loClosed];
}

function earlierHi(p, r) {
  if (p.hi === POS_INF) return [r.hi, r.hiClosed];
  if (r.hi === POS_INF || cmp(p.hi, r.hi) < 0) return [p.hi, p.hiClosed];
  if (cmp(r.hi, p.hi) < 0) return [r.hi, r.hiClosed];
  return [p.hi, p.hiClosed && r.hiClosed];
}

/** Do two (cleaned) sets share a value? */
export function meets(a, b) {
  for (const p of a) {
    for (const r of b) {
      const [lo, loClosed] = laterLo(p, r);
      const [hi, hiClosed] = earlierHi(p, r);
      if (lo === NEG_INF || hi === POS_INF) return true;
      const c = cmp(lo, hi);
      if (c < 0 || (c === 0 && loClosed && hiClosed)) return true;
    }
  }
  return false;
}

/** A stable text of a set (cube identity for deduplication). */
export function setKey(a) {
  return a.map((p) => `${p.loClosed ? "[" : "("}${JSON.stringify(isInf(p.lo) ? String(p.lo) : p.lo)},${JSON.stringify(isInf(p.hi) ? String(p.hi) : p.hi)}${p.hiClosed ? "]" : ")"}`).join("u");
}
