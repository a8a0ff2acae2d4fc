// Local query execution with exactly the Python core's semantics (queryplanner/predicate.py):
// SQL three-valued logic (a comparison with NULL is unknown; a row matches only when the
// condition is true), LIKE with % and _ and backslash escapes, NULLS LAST in both directions,
// keyset `start`, `related` children nested in each row, and aggregates.
//
// `rows` are objects keyed by column with timestamps in the fixed-width form of values.js.
// `lookup.relatedRows(tableName, relationshipName, row)` gives related rows (EXISTS, related).

import { compareStrings, compareValues } from "./values.js";

const likeCache = new Map();

/** A LIKE pattern -> RegExp: % any run, _ one character, backslash escapes the next one. */
export function likeRegex(pattern) {
  let re = likeCache.get(pattern);
  if (re) return re;
  let out = "";
  const chars = [...pattern];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (ch === "\\") {
      const next = i + 1 < chars.length ? chars[++i] : "\\";
      out += next.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
    } else if (ch === "%") out += ".*";
    else if (ch === "_") out += ".";
    else out += ch.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
  }
  re = new RegExp(`^(?:${out})$`, "su");
  if (likeCache.size > 4096) likeCache.clear();
  likeCache.set(pattern, re);
  return re;
}

/** A LIKE pattern -> a test of a string. The demo's search box makes `%text%`, tested on every
 * title of the store per keystroke: plain substrings, prefixes and suffixes skip the RegExp. */
export function likeMatcher(pattern) {
  const parts = pattern.split("%");
  const plain = (t) => !/[_\\]/.test(t);
  if (parts.every(plain)) {
    if (parts.length === 1) return (v) => v === pattern;
    if (parts.length === 2) {
      const [head, tail] = parts;
      return (v) => v.length >= head.length + tail.length && v.startsWith(head) && v.endsWith(tail);
    }
    if (parts.length === 3 && parts[0] === "" && parts[2] === "") {
      const inner = parts[1];
      return (v) => v.includes(inner);
    }
  }
  const re = likeRegex(pattern);
  return (v) => re.test(v);
}

const lowerCache = new Map();

/** ILIKE's case folding, as DuckDB's lower and Python's predicate.fold_case: each code point
 * to its simple lowercase, one for one and without context (toLowerCase maps 'İ' to two code
 * points and a word-final 'Σ' to 'ς'). */
export function foldCase(text) {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(text)) return text.toLowerCase(); // ASCII folds one for one
  let out = "";
  for (const ch of text) {
    let low = lowerCache.get(ch);
    if (low === undefined) {
      low = ch.toLowerCase();
      if (low.length > ch.length) low = String.fromCodePoint(low.codePointAt(0));
      lowerCache.set(ch, low);
    }
    out += low;
  }
  return out;
}

function eq(a, b) {
  return typeof a === "string" ? a === b : a === b || compareValues(a, b) === 0;
}

/** A function giving a condition's three-valued truth (true / false / null) for a row. */
export function compileCondition(cond, schema, tableName, lookup) {
  if ("and" in cond) {
    const terms = cond.and.map((c) => compileCondition(c, schema, tableName, lookup));
    return (row) => {
      let result = true;
      for (const t of terms) {
        const v = t(row);
        if (v === false) return false;
        if (v === null) result = null;
      }
      return result;
    };
  }
  if ("or" in cond) {
    const terms = cond.or.map((c) => compileCondition(c, schema, tableName, lookup));
    return (row) => {
      let result = false;
      for (const t of terms) {
        const v = t(row);
        if (v === true) return true;
        if (v === null) result = null;
      }
      return result;
    };
  }
  if ("not" in cond) {
    const inner = compileCondition(cond.not, schema, tableName, lookup);
    return (row) => {
      const v = inner(row);
      return v === null ? null : !v;
    };
  }
  if ("exists" in cond || "notExists" in cond) {
    const negated = "notExists" in cond;
    const relName = negated ? cond.notExists : cond.exists;
    if (!lookup) throw new Error(`EXISTS over ${JSON.stringify(relName)} needs access to related rows.`);
    const target = schema.tables[tableName].relationships[relName].target;
    const child = compilePredicate(cond.where ?? null, schema, target, lookup);
    return (row) => {
      let found = false;
      for (const r of lookup.relatedRows(tableName, relName, row)) {
        if (child(r)) { found = true; break; }
      }
      return negated ? !found : found;
    };
  }
  const { column, op, value } = cond;
  switch (op) {
    case "is null": return (row) => row[column] === null || row[column] === undefined;
    case "is not null": return (row) => row[column] !== null && row[column] !== undefined;
    case "in":
    case "not in": {
      const set = new Set(value);
      const neg = op === "not in";
      return (row) => {
        const v = row[column];
        if (v === null || v === undefined) return null;
        return set.has(v) !== neg;
      };
    }
    case "like": case "not like": case "ilike": case "not ilike": {
      const ci = op.endsWith("ilike");
      const neg = op.startsWith("not");
      const match = likeMatcher(ci ? foldCase(value) : value);
      return (row) => {
        const v = row[column];
        if (v === null || v === undefined) return null;
        return match(ci ? foldCase(v) : v) !== neg;
      };
    }
    default: {
      const test = {
        "=": (c) => c === 0, "!=": (c) => c !== 0, "<": (c) => c < 0,
        "<=": (c) => c <= 0, ">": (c) => c > 0, ">=": (c) => c >= 0,
      }[op];
      if (!test) throw new Error(`Unknown operator ${JSON.stringify(op)}.`);
      if (op === "=") {
        return (row) => {
          const v = row[column];
          return v === null || v === undefined ? null : eq(v, value);
        };
      }
      return (row) => {
        const v = row[column];
        return v === null || v === undefined ? null : test(compareValues(v, value));
      };
    }
  }
}

/** A function that is true exactly for the rows SQL's WHERE keeps. */
export function compilePredicate(cond, schema, tableName, lookup) {
  if (!cond) return () => true;
  const test = compileCondition(cond, schema, tableName, lookup);
  return (row) => test(row) === true;
}

// Timestamps are fixed-width ASCII text: the engine's own string order is code point order.
const nativeOrder = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** A comparator giving the query's total order; NULL sorts last in both directions.
 * `columns` (the table's column specs), when given, lets timestamps compare natively. */
export function compileComparator(orderBy, columns = null) {
  const parts = orderBy.map(([c, dir]) => [c, dir === "desc" ? -1 : 1,
    columns?.[c]?.type === "timestamp" ? nativeOrder : compareValues]);
  return (a, b) => {
    for (const [c, sign, compareValues] of parts) {
      const x = a[c];
      const y = b[c];
      const xn = x === null || x === undefined;
      const yn = y === null || y === undefined;
      if (xn || yn) {
        if (xn && yn) continue;
        return xn ? 1 : -1;
      }
      const r = compareValues(x, y);
      if (r !== 0) return r * sign;
    }
    return 0;
  };
}

/** True for rows strictly after (or at, when inclusive) the query's keyset start. */
export function compileStartFilter(q) {
  if (!q.start) return () => true;
  const cmp = compileComparator(q.orderBy);
  const bound = q.start.row;
  return q.start.inclusive ? (row) => cmp(row, bound) >= 0 : (row) => cmp(row, bound) > 0;
}

/** Run a normalized row query over candidate rows of its table; related children nested. */
export function evaluate(q, schema, rows, lookup, tableName = q.table) {
  if (q.aggregate) return aggregate(q, schema, rows, lookup, tableName);
  const keep = compilePredicate(q.where, schema, tableName, lookup);
  const after = compileStartFilter(q);
  const selected = [];
  for (const r of rows) if (keep(r) && after(r)) selected.push(r);
  const cmp = compileComparator(q.orderBy, schema.tables[tableName].columns);
  const limited = q.limit !== undefined && q.limit !== null;
  const out = limited && selected.length > 4 * q.limit ? topK(selected, q.limit, cmp)
    : limited ? selected.sort(cmp).slice(0, q.limit) : selected.sort(cmp);
  if (!q.related) return out;
  return out.map((row) => {
    const nested = { ...row };
    for (const [name, child] of Object.entries(q.related)) {
      const rel = schema.tables[tableName].relationships[name];
      const rows = evaluate(child, schema, lookup.relatedRows(tableName, name, row), lookup, rel.target);
      // A many-to-one child is the one row (or null), as queryplanner's nest_rows.
      nested[name] = rel.kind === "many_to_one" ? rows[0] ?? null : rows;
    }
    return nested;
  });
}

/** The first `k` rows in `cmp` order, sorted: a bounded max-heap, O(n log k) not O(n log n). */
export function topK(rows, k, cmp) {
  if (k <= 0) return [];
  const heap = []; // max-heap on cmp: heap[0] is the worst row kept
  const down = (i) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && cmp(heap[l], heap[m]) > 0) m = l;
      if (r < heap.length && cmp(heap[r], heap[m]) > 0) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
  };
  for (const row of rows) {
    if (heap.length < k) {
      heap.push(row);
      for (let i = heap.length - 1; i > 0;) {
        const p = (i - 1) >> 1;
        if (cmp(heap[i], heap[p]) <= 0) break;
        [heap[i], heap[p]] = [heap[p], heap[i]];
        i = p;
      }
    } else if (cmp(row, heap[0]) < 0) {
      heap[0] = row;
      down(0);
    }
  }
  return heap.sort(cmp);
}

/** count / sum / min / max / avg grouped by columns; groups ordered by the group columns. */
export function aggregate(q, schema, rows, lookup, tableName = q.table) {
  const keep = compilePredicate(q.where, schema, tableName, lookup);
  const { groupBy, measures } = q.aggregate;
  const groups = new Map();
  const columns = schema.tables[tableName].columns;
  const integral = Object.fromEntries(Object.entries(measures)
    .map(([alias, m]) => [alias, Boolean(m.column) && columns[m.column].type === "integer"]));
  const fresh = () => Object.fromEntries(Object.keys(measures)
    .map((a) => [a, { n: 0, sum: integral[a] ? 0n : 0, min: null, max: null }]));
  for (const r of rows) {
    if (!keep(r)) continue;
    const values = groupBy.map((c) => r[c] ?? null);
    const key = JSON.stringify(values);
    let g = groups.get(key);
    if (!g) {
      g = { values, acc: fresh() };
      groups.set(key, g);
    }
    for (const [alias, m] of Object.entries(measures)) {
      const acc = g.acc[alias];
      if (!m.column) { acc.n++; continue; }
      const v = r[m.column];
      if (v === null || v === undefined) continue;
      acc.n++;
      // Integer sums are exact (64-bit, as DuckDB's HUGEINT sum) and rounded once at the end.
      if (m.fn === "sum" || m.fn === "avg") acc.sum = integral[alias] ? acc.sum + BigInt(v) : acc.sum + v;
      if (acc.min === null || compareValues(v, acc.min) < 0) acc.min = v;
      if (acc.max === null || compareValues(v, acc.max) > 0) acc.max = v;
    }
  }
  if (groups.size === 0 && groupBy.length === 0) {
    groups.set("[]", { values: [], acc: fresh() });
  }
  const out = [];
  for (const g of groups.values()) {
    const row = {};
    groupBy.forEach((c, i) => { row[c] = g.values[i]; });
    for (const [alias, m] of Object.entries(measures)) {
      const acc = g.acc[alias];
      row[alias] = m.fn === "count" ? acc.n
        : acc.n === 0 ? null
          : m.fn === "sum" ? Number(acc.sum) : m.fn === "avg" ? Number(acc.sum) / acc.n
            : m.fn === "min" ? acc.min : acc.max;
    }
    out.push(row);
  }
  out.sort(compileComparator(groupBy.map((c) => [c, "asc"])));
  return out;
}

export { compareStrings };
