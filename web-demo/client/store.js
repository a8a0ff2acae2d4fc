// The local row store: server-derived rows per table, the queries that hold them, the byte
// budget with whole-query LRU eviction, and the optimistic (pending) layer on top.
//
// Server rows change only through `applyPoke`/`applyPokeSteps` (rows and deletes first,
// then the completions and the version; a large poke may be applied in chunks). Pending mutations overlay those rows until the server's version
// that includes them arrives. Timestamps are held in the fixed-width form of values.js.

import { covers } from "./coverage.js";
import { compilePredicate, compileStartFilter, evaluate } from "./predicate.js";
import { rowBytes, timestampKey } from "./values.js";

export const DEFAULT_BUDGET_BYTES = 100 * 2 ** 20;

const keyOf = (values) => JSON.stringify(values);

export class LocalStore {
  constructor(schema, { budgetBytes = DEFAULT_BUDGET_BYTES } = {}) {
    this.schema = schema;
    this.budgetBytes = budgetBytes;
    this.base = new Map(); // table -> Map(key -> row)
    this.rowSize = new Map(); // table -> Map(key -> bytes)
    this.indexes = new Map(); // `${table}|${cols}` -> Map(valuesKey -> Set(key))
    this.tableIndexes = new Map(); // table -> [its indexes]: _put touches only its own
    this.bytes = 0;
    this.version = 0;
    this.queries = new Map(); // id -> {id, query, wire, complete, version, active, lastUsed, ttl}
    this.pending = []; // [{id, op, table, row|key|set}]
    this.overlay = new Map(); // table -> Map(key -> row | null)
    this.clock = 0;
    this.overBudget = false;
    this.dirtyRows = new Map(); // table -> Map(key -> row | null), for persistence
    this.cleared = false;
    this.epoch = 0; // bumps on every change of the visible rows (memo key)
    this.memo = new Map(); // query id -> {epoch, rows}: window results for coverage counts
    this.keyFns = new Map(); // table -> row => key
    for (const [name, t] of Object.entries(schema.tables)) {
      this.base.set(name, new Map());
      this.rowSize.set(name, new Map());
      this.tableIndexes.set(name, []);
      this.dirtyRows.set(name, new Map());
      const pk = t.primaryKey;
      // A one-column integer key's JSON text is "[" + digits + "]": skip JSON.stringify.
      this.keyFns.set(name, pk.length === 1
        ? (row) => (typeof row[pk[0]] === "number" ? `[${row[pk[0]]}]` : keyOf([row[pk[0]]]))
        : (row) => keyOf(pk.map((k) => row[k])));
    }
  }

  // -- rows ------------------------------------------------------------------------------

  /** A poke's freshly parsed row, decoded in place when it has exactly the table's columns
   * (no copy per row when a poke brings tens of thousands); the poke must not be reused. */
  decodeOwnedRow(tableName, doc) {
    const t = this.schema.tables[tableName];
    if (Object.keys(doc).length !== t.columnNames.length) return this.decodeRow(tableName, doc);
    for (const c of t.columnNames) if (doc[c] === undefined) return this.decodeRow(tableName, doc);
    for (const c of t.timestampColumns) if (typeof doc[c] === "string") doc[c] = timestampKey(doc[c]);
    return doc;
  }

  decodeRow(tableName, doc) {
    const t = this.schema.tables[tableName];
    const row = {};
    for (const c of t.columnNames) {
      const v = doc[c];
      row[c] = v === undefined || v === null ? null : t.columns[c].type === "timestamp" ? timestampKey(v) : v;
    }
    return row;
  }

  key(tableName, row) {
    return this.keyFns.get(tableName)(row);
  }

  _put(tableName, row) {
    const key = this.keyFns.get(tableName)(row);
    const rows = this.base.get(tableName);
    const sizes = this.rowSize.get(tableName);
    const indexes = this.tableIndexes.get(tableName);
    const old = rows.get(key);
    if (old && indexes.length) this._unindex(tableName, key, old);
    const size = rowBytes(this.schema.tables[tableName], row);
    this.bytes += size - (old ? sizes.get(key) : 0);
    rows.set(key, row);
    sizes.set(key, size);
    this.epoch++;
    if (indexes.length) this._index(tableName, key, row);
    this.dirtyRows.get(tableName).set(key, row);
  }

  _delete(tableName, key) {
    const rows = this.base.get(tableName);
    const old = rows.get(key);
    if (!old) return;
    this._unindex(tableName, key, old);
    rows.delete(key);
    this.epoch++;
    this.bytes -= this.rowSize.get(tableName).get(key) ?? 0;
    this.rowSize.get(tableName).delete(key);
    this.dirtyRows.get(tableName).set(key, null);
  }

  /** The rows changed since the last call, as [`${table}|${key}`, row | null], and forget them. */
  takeDirty() {
    const out = [];
    for (const [tableName, dirty] of this.dirtyRows) {
      for (const [key, row] of dirty) out.push([`${tableName}|${key}`, row]);
      dirty.clear();
    }
    return out;
  }

  clearDirty() {
    for (const dirty of this.dirtyRows.values()) dirty.clear();
  }

  /** Restore a persisted row (`${table}|${key}` as saved from `dirty`). */
  restore(id, row) {
    const tableName = id.slice(0, id.indexOf("|"));
    if (this.base.has(tableName)) this._put(tableName, row);
  }

  /** Every visible row of a table: server rows with the pending layer on top. */
  rows(tableName) {
    const over = this.overlay.get(tableName);
    // Without pending changes, the Map's own iterator: a generator costs per row.
    if (!over || over.size === 0) return this.base.get(tableName).values();
    return this._overlaid(this.base.get(tableName), over);
  }

  *_overlaid(base, over) {
    for (const [key, row] of base) if (!over.has(key)) yield row;
    for (const row of over.values()) if (row) yield row;
  }

  get(tableName, key) {
    const over = this.overlay.get(tableName);
    if (over && over.has(key)) return over.get(key);
    return this.base.get(tableName).get(key) ?? null;
  }

  // Hash indexes on column lists, built on first use and kept up to date (EXISTS, related).
  _indexFor(tableName, cols) {
    const name = `${tableName}|${cols.join(",")}`;
    let idx = this.indexes.get(name);
    if (!idx) {
      idx = new Map();
      idx.cols = cols;
      for (const [key, row] of this.base.get(tableName)) add(idx, keyOf(cols.map((c) => row[c])), key);
      this.indexes.set(name, idx);
      this.tableIndexes.get(tableName).push(idx);
    }
    return idx;
  }

  _index(tableName, key, row) {
    for (const idx of this.tableIndexes.get(tableName)) add(idx, keyOf(idx.cols.map((c) => row[c])), key);
  }

  _unindex(tableName, key, row) {
    for (const idx of this.tableIndexes.get(tableName)) {
      const k = keyOf(idx.cols.map((c) => row[c]));
      const set = idx.get(k);
      if (set) { set.delete(key); if (!set.size) idx.delete(k); }
    }
  }

  _matching(tableName, cols, values) {
    const out = [];
    const wanted = keyOf(values);
    const keys = this._indexFor(tableName, cols).get(wanted);
    if (keys) for (const k of keys) { const r = this.get(tableName, k); if (r) out.push(r); }
    const over = this.overlay.get(tableName);
    if (over) {
      for (const [k, r] of over) {
        if (r && !(keys && keys.has(k)) && keyOf(cols.map((c) => r[c])) === wanted) out.push(r);
      }
    }
    return out;
  }

  /** Rows related to `row` of `tableName` through relationship `relName` (the lookup API). */
  relatedRows(tableName, relName, row) {
    const rel = this.schema.tables[tableName].relationships[relName];
    const source = rel.sourceColumns.map((c) => row[c]);
    if (source.some((v) => v === null)) return [];
    if (!rel.through) return this._matching(rel.target, rel.targetColumns, source);
    const out = [];
    for (const j of this._matching(rel.through.table, rel.through.sourceColumns, source)) {
      out.push(...this._matching(rel.target, rel.targetColumns, rel.through.targetColumns.map((c) => j[c])));
    }
    return out;
  }

  // -- pokes -----------------------------------------------------------------------------

  /** Apply one poke at once; returns the set of tables it touched. */
  applyPoke(poke) {
    const steps = this.applyPokeSteps(poke, Infinity);
    for (;;) {
      const step = steps.next();
      if (step.done) return step.value;
    }
  }

  /**
   * Apply one poke in steps of at most `chunkRows` rows (a generator: it yields between
   * chunks, and returns the set of tables touched). Completions and the version move last, so
   * coverage never relies on a query whose rows are still arriving. The poke's rows are decoded
   * in place: the caller hands the poke over.
   */
  *applyPokeSteps(poke, chunkRows = 2000) {
    const touched = new Set();
    let n = 0;
    for (const [tableName, keys] of Object.entries(poke.del ?? {})) {
      if (!this.base.has(tableName)) continue;
      touched.add(tableName);
      for (const k of keys) {
        this._delete(tableName, keyOf(k));
        if (++n % chunkRows === 0) yield n;
      }
    }
    for (const [tableName, rows] of Object.entries(poke.put ?? {})) {
      if (!this.base.has(tableName)) continue;
      touched.add(tableName);
      for (const doc of rows) {
        this._put(tableName, this.decodeOwnedRow(tableName, doc));
        if (++n % chunkRows === 0) yield n;
      }
    }
    for (const [id, version] of Object.entries(poke.complete ?? {})) {
      const entry = this.queries.get(id);
      if (entry) { entry.complete = true; entry.version = version; }
    }
    if (poke.version !== undefined) this.version = poke.version;
    return touched;
  }

  /** A `reset`: forget every server row and completion (pending mutations stay). */
  reset() {
    for (const name of this.base.keys()) {
      this.base.set(name, new Map());
      this.rowSize.set(name, new Map());
      this.tableIndexes.set(name, []);
    }
    this.indexes.clear();
    this.epoch++;
    this.bytes = 0;
    this.clearDirty();
    this.cleared = true;
    for (const q of this.queries.values()) q.complete = false;
  }

  // -- pending layer ---------------------------------------------------------------------

  setPending(mutations) {
    this.pending = mutations;
    this.epoch++;
    this.overlay = new Map();
    for (const m of mutations) {
      const t = this.schema.tables[m.table];
      let over = this.overlay.get(m.table);
      if (!over) { over = new Map(); this.overlay.set(m.table, over); }
      if (m.op === "insert" || m.op === "upsert") {
        const row = this.decodeRow(m.table, m.row);
        over.set(this.key(m.table, row), row);
      } else {
        const key = keyOf(m.key);
        const current = over.has(key) ? over.get(key) : this.base.get(m.table).get(key) ?? null;
        if (m.op === "delete") over.set(key, null);
        else if (current) {
          const patch = this.decodeRow(m.table, { ...current, ...m.set });
          for (const c of t.columnNames) if (!(c in m.set)) patch[c] = current[c];
          over.set(key, patch);
        }
      }
    }
  }

  // -- queries and the budget ------------------------------------------------------------

  track(id, query, wire, { ttl } = {}) {
    let entry = this.queries.get(id);
    if (!entry) {
      entry = { id, query, wire, complete: false, version: 0, active: 0, lastUsed: 0, ttl };
      this.queries.set(id, entry);
    }
    entry.lastUsed = ++this.clock;
    return entry;
  }

  completeQueries() {
    return [...this.queries.values()].filter((e) => e.complete);
  }

  /** Rows of a complete query's cached result that satisfy `q`'s where and start (its order
   * and limit are ignored), as queryplanner's CachedRows.count_matching; `{table}` counts all. */
  countMatching(entry, q) {
    // A window's rows, without nesting its related children, computed once per store change:
    // coverage asks this for every window on every new subscription.
    let memo = this.memo.get(entry.id);
    if (!memo || memo.epoch !== this.epoch) {
      const flat = { ...entry.query, related: undefined };
      memo = { epoch: this.epoch, rows: evaluate(flat, this.schema, this.rows(entry.query.table), this) };
      this.memo.set(entry.id, memo);
    }
    const rows = memo.rows;
    if (!q || (!q.where && !q.start)) return rows.length;
    const keep = compilePredicate(q.where, this.schema, q.table, this);
    const after = compileStartFilter(q);
    let n = 0;
    for (const r of rows) if (keep(r) && after(r)) n++;
    return n;
  }

  explain(q) {
    return covers(this.completeQueries(), q, this.schema, (c, want) => this.countMatching(c, want));
  }

  run(q) {
    return evaluate(q, this.schema, this.rows(q.table), this);
  }

  /** Keys of every row some tracked query holds (its result and its related children). */
  _heldKeys() {
    const held = new Map();
    const mark = (tableName, q, rows) => {
      let set = held.get(tableName);
      if (!set) { set = new Set(); held.set(tableName, set); }
      for (const r of rows) {
        set.add(this.key(tableName, r));
        for (const [name, child] of Object.entries(q.related ?? {})) {
          const rel = this.schema.tables[tableName].relationships[name];
          if (rel.through) mark(rel.through.table, {}, this._junctionRows(rel, r));
          const nested = r[name]; // a many-to-one child is one row or null
          mark(rel.target, child, Array.isArray(nested) ? nested : nested ? [nested] : []);
        }
      }
    };
    for (const e of this.queries.values()) mark(e.query.table, e.query, this.run(e.query));
    return held;
  }

  _junctionRows(rel, row) {
    return this._matching(rel.through.table, rel.through.sourceColumns, rel.sourceColumns.map((c) => row[c]));
  }

  /**
   * Keep the bytes held within the budget: evict least recently used inactive queries,
   * whole, and the rows no remaining query holds. Returns the ids evicted.
   */
  enforceBudget() {
    const evicted = [];
    while (this.bytes > this.budgetBytes) {
      const victims = [...this.queries.values()].filter((e) => e.active === 0)
        .sort((a, b) => a.lastUsed - b.lastUsed);
      if (!victims.length) break;
      this.queries.delete(victims[0].id);
      evicted.push(victims[0].id);
      const held = this._heldKeys();
      for (const [tableName, rows] of this.base) {
        const keep = held.get(tableName) ?? new Set();
        for (const key of [...rows.keys()]) if (!keep.has(key)) this._delete(tableName, key);
      }
    }
    this.overBudget = this.bytes > this.budgetBytes;
    return evicted;
  }
}

function add(idx, k, key) {
  let set = idx.get(k);
  if (!set) { set = new Set(); idx.set(k, set); }
  set.add(key);
}
