// The querysync JavaScript client: one EventSource stream, a local row store with the
// 100 MB budget persisted to IndexedDB, covered queries answered locally, optimistic writes
// with rollback and an offline outbox replayed exactly once (docs/protocol.md).
//
//   const client = new Client({ url: "", schema: schemaDoc });
//   await client.start();
//   const sub = client.subscribe({ table: "issue", orderBy: [["modified", "desc"]], limit: 50 },
//                                (snap) => render(snap.rows, snap.complete, snap.source));
//   await client.mutate([{ op: "update", table: "issue", key: [7], set: { status: "done" } }]);

import { openPersistence } from "./persist.js";
import { loadSchema, normalizeQuery, queryId, wireQuery } from "./query.js";
import { sha256Hex } from "./sha256.js";
import { DEFAULT_BUDGET_BYTES, LocalStore } from "./store.js";

// Pokes with more rows than this are applied in chunks of CHUNK_ROWS, one task each.
const LARGE_POKE_ROWS = 5000;
const CHUNK_ROWS = 2000;
// Rows of the open views saved apart, for the first paint of a reload.
const HOT_ROWS = 2000;

/** Give the event loop a turn: scheduler.yield resumes ahead of other queued work. */
function nextTask() {
  const scheduler = globalThis.scheduler;
  if (scheduler?.yield) return scheduler.yield();
  return new Promise((resolve) => setTimeout(resolve, 0));
}

export class MutationRejected extends Error {
  constructor(mutation, reason) {
    super(`Mutation ${mutation.id} (${mutation.op} ${mutation.table}) was rejected: ${reason}`);
    this.mutation = mutation;
    this.reason = reason;
  }
}

export class SchemaVersionError extends Error {
  constructor(body) {
    super(body.message);
    this.clientVersion = body.clientVersion;
    this.serverVersion = body.serverVersion;
    this.minClientVersion = body.minClientVersion;
  }
}

function randomId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Client {
  constructor({ url = "", schema, token = null, budgetBytes = DEFAULT_BUDGET_BYTES, persist = true, name = "querysync" }) {
    this.url = url.replace(/\/$/, "");
    this.schemaDoc = schema;
    this.schema = loadSchema(schema);
    this.schemaHash = sha256Hex(JSON.stringify(schema)).slice(0, 16);
    this.token = token;
    this.store = new LocalStore(this.schema, { budgetBytes });
    this.persistName = persist ? name : null;
    this.state = "connecting";
    this.stateListeners = new Set();
    this.usageListeners = new Set();
    this.subs = new Set();
    this.outbox = []; // mutations not yet known to be processed, in id order
    this.waiters = new Map(); // mutation id -> {resolve, reject}
    this.nextMutationId = 1;
    this.lastEventId = null;
    this.clientId = null;
    this.backoff = 250;
    this.generation = 0; // bumps when the set of complete queries changes
    this.closed = false;
    this.pokes = [];
    this.inbox = []; // stream events waiting for a large poke to be applied
    this.draining = false;
    this.evictions = []; // the last evictions, oldest first: {t, id, bytes after}
  }

  // -- lifecycle -------------------------------------------------------------------------

  async start() {
    // Each tab needs its own client id (mutation ids are per client), so each tab claims its
    // own persisted store: the first free slot of this name, held until the tab closes.
    this.persistName = this.persistName ? await this.claimSlot(this.persistName) : null;
    this.persistence = this.persistName ? await openPersistence(this.persistName) : null;
    const saved = this.persistence ? await this.persistence.loadHead() : null;
    if (saved && saved.meta.schemaHash === this.schemaHash) {
      this.clientId = saved.meta.clientId;
      this.lastEventId = saved.meta.lastEventId;
      this.nextMutationId = saved.meta.nextMutationId;
      this.store.version = saved.meta.version ?? 0;
      // The rows the views showed come first, with every query incomplete (coverage must not
      // trust a store that is half read): a returning user sees the list at once, and the
      // rest of the rows and the completions follow before the stream resumes.
      const complete = new Map();
      for (const q of saved.queries) {
        const e = this.store.track(q.id, q.query, q.wire, { ttl: q.ttl });
        Object.assign(e, { complete: false, version: q.version, lastUsed: q.lastUsed });
        if (q.complete) complete.set(q.id, q.version);
        this.store.clock = Math.max(this.store.clock, q.lastUsed);
      }
      for (const [id, row] of saved.hot) this.store.restore(id, row);
      this.outbox = saved.outbox.sort((a, b) => a.id - b.id).map((m) => ({ ...m, sent: false }));
      this.store.setPending(this.outbox);
      this.store.clearDirty();
      this.restoring = this.restoreRows(complete);
    } else {
      if (saved) console.info("querysync: the saved store has another schema; starting over.");
      this.clientId = randomId();
      this.persistAll = true;
    }
    // On the next task: subscriptions made right after `await start()` are then declared in
    // the first request, so the first view hydrates without waiting for the stream's hello.
    // Pokes must land on the whole restored store: the stream waits for the saved rows.
    setTimeout(async () => { await this.restoring; this.connect(); }, 0);
  }

  async restoreRows(complete) {
    try {
      for (const [id, row] of await this.persistence.loadRows()) this.store.restore(id, row);
    } catch (err) {
      console.warn("querysync: could not read the saved rows; starting over", err);
      this.store.reset();
      this.lastEventId = null;
      complete.clear();
    }
    this.store.clearDirty();
    for (const [id, version] of complete) {
      const e = this.store.queries.get(id);
      if (e) Object.assign(e, { complete: true, version });
    }
    this.restoring = null;
    this.generation++;
    this.changed();
  }

  /** Server rows the open views show (up to HOT_ROWS), saved apart for a fast reload. */
  hotRows() {
    const out = [];
    const seen = new Set();
    for (const sub of this.subs) {
      if (sub.closed || !sub.lastRows || sub.q.related) continue;
      const table = sub.q.table;
      const base = this.store.base.get(table);
      for (const row of sub.lastRows) {
        if (out.length >= HOT_ROWS) return out;
        const key = this.store.key(table, row);
        const id = `${table}|${key}`;
        // Only rows as the server sent them: optimistic rows live in the outbox.
        if (base.get(key) === row && !seen.has(id)) { seen.add(id); out.push([id, row]); }
      }
    }
    return out;
  }

  async claimSlot(base) {
    const locks = globalThis.navigator?.locks;
    if (!locks) return base;
    for (let i = 1; i <= 32; i++) {
      const name = i === 1 ? base : `${base}-${i}`;
      const held = await new Promise((resolve) => {
        locks.request(`querysync:${name}`, { ifAvailable: true }, (lock) => {
          resolve(Boolean(lock));
          return lock ? new Promise((release) => { this.releaseSlot = release; }) : undefined;
        });
      });
      if (held) return name;
    }
    return `${base}-${randomId()}`; // every slot taken: a throwaway store
  }

  close() {
    this.closed = true;
    if (this.releaseSlot) this.releaseSlot();
    if (this.es) this.es.close();
    clearTimeout(this.retryTimer);
  }

  // -- connection ------------------------------------------------------------------------

  setState(state, error = null) {
    if (this.state === state) return;
    this.state = state;
    this.stateError = error;
    for (const cb of this.stateListeners) cb(state, error);
  }

  onState(cb) {
    this.stateListeners.add(cb);
    cb(this.state, this.stateError);
    return () => this.stateListeners.delete(cb);
  }

  async post(path, body) {
    const headers = { "content-type": "application/json" };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const res = await fetch(`${this.url}${path}`, { method: "POST", headers, body: JSON.stringify({ clientId: this.clientId, schemaVersion: this.schema.version, ...body }) });
    const doc = await res.json().catch(() => ({}));
    if (res.status === 409 && doc.error?.code === "schema_version") {
      const err = new SchemaVersionError(doc.error);
      this.updateNeeded(err);
      throw err;
    }
    if (!res.ok) throw Object.assign(new Error(doc.error?.message ?? `HTTP ${res.status}`), { status: res.status, body: doc });
    return doc;
  }

  updateNeeded(err) {
    this.setState("update-needed", err);
    if (this.es) this.es.close();
    this.es = null;
  }

  desired() {
    return [...this.store.queries.values()].map((e) => ({ id: e.id, query: e.wire, ...(e.ttl ? { ttl: e.ttl } : {}) }));
  }

  /**
   * Open the stream and re-declare the desired queries at the same time. Every request checks
   * the schema version (GET /sync too) and the server accepts `POST /queries` before the stream
   * is open (docs/protocol.md), so waiting for one round trip before the other only delays the
   * first rows. A 409 on the POST shows update-needed and closes the stream.
   */
  connect() {
    if (this.closed || this.state === "update-needed") return;
    const first = !this.connectedOnce; // startup timing marks, once (reconnects are not marked)
    if (first) performance.mark("client:connect");
    const params = new URLSearchParams({ clientId: this.clientId, schemaVersion: String(this.schema.version) });
    if (this.lastEventId !== null) params.set("lastEventId", String(this.lastEventId));
    if (this.token) params.set("token", this.token);
    const es = new EventSource(`${this.url}/sync?${params}`);
    this.es = es;
    const desired = this.desired();
    this.declared = new Set(desired.map((d) => d.id));
    this.post("/queries", { add: desired, remove: [] }).then((answer) => {
      if (first) performance.mark("client:declared");
      this.rejectQueries(answer);
    }, (err) => {
      // A schema mismatch already shows update-needed. Otherwise the queries were not declared:
      // drop the stream (when its own error has not already) and reconnect with backoff.
      this.declared = new Set();
      if (err instanceof SchemaVersionError || this.es !== es) return;
      es.close();
      this.es = null;
      this.offline();
    });
    const on = (name, fn) => es.addEventListener(name, (ev) => {
      if (this.es !== es) return;
      fn(JSON.parse(ev.data), ev);
    });
    on("hello", (hello) => this.enqueue(() => this.onHello(hello)));
    on("poke", (poke, ev) => this.onPoke(poke, ev.lastEventId));
    on("reset", () => this.enqueue(() => { this.store.reset(); this.generation++; this.changed(); }));
    on("queryError", (e) => this.onQueryError(e));
    on("schema", (e) => { if (e.updateNeeded) this.updateNeeded(new SchemaVersionError({ message: "The server's schema changed; reload the app.", serverVersion: e.serverSchemaVersion, minClientVersion: e.minClientVersion, clientVersion: this.schema.version })); });
    es.addEventListener("error", (ev) => {
      if (this.es !== es) return;
      if (ev.data) { try { this.lastError = JSON.parse(ev.data); } catch { /* a network error */ } }
      es.close();
      this.es = null;
      this.offline();
    });
  }

  offline() {
    if (this.closed || this.state === "update-needed") return;
    this.setState("offline");
    for (const m of this.outbox) m.sent = false;
    clearTimeout(this.retryTimer);
    const delay = this.backoff * (0.5 + Math.random());
    this.backoff = Math.min(this.backoff * 2, 5000);
    this.retryTimer = setTimeout(() => { this.setState("connecting"); this.connect(); }, delay);
  }

  onHello(hello) {
    if (!this.connectedOnce) performance.mark("client:hello");
    this.connectedOnce = true;
    this.backoff = 250;
    this.setState("online");
    // Mutations the server processed while we did not hear back: their effects arrive on the
    // stream; never send them again.
    const last = hello.lastMutationId ?? 0;
    this.nextMutationId = Math.max(this.nextMutationId, last + 1);
    this.outbox = this.outbox.filter((m) => m.id > last || (m.version && m.version > this.store.version));
    for (const m of this.outbox) if (m.id <= last) m.sent = true;
    this.store.setPending(this.outbox);
    // Declare the desired queries the connect-time request did not (added while connecting).
    const declared = this.declared ?? new Set();
    const desired = this.desired().filter((d) => !declared.has(d.id));
    if (desired.length) this.post("/queries", { add: desired, remove: [] }).then((r) => this.rejectQueries(r), () => {});
    this.flush();
    this.changed();
  }

  /** Stream events that change the store run one at a time, in order: a large poke is applied
   * over several tasks, and what arrives meanwhile waits for it. */
  enqueue(fn) {
    this.inbox.push(fn);
    if (!this.draining) this.drain();
  }

  async drain() {
    this.draining = true;
    try {
      while (this.inbox.length) await this.inbox.shift()();
    } finally {
      this.draining = false;
    }
  }

  onPoke(poke, id) {
    this.enqueue(() => this.applyPoke(poke, id));
  }

  async applyPoke(poke, id) {
    const t0 = performance.now();
    const rows = Object.values(poke.put ?? {}).reduce((n, r) => n + r.length, 0)
      + Object.values(poke.del ?? {}).reduce((n, r) => n + r.length, 0);
    let touched;
    let busy = 0;
    let chunks = 1;
    if (rows <= LARGE_POKE_ROWS) {
      touched = this.store.applyPoke(poke);
      busy = performance.now() - t0;
    } else {
      // Chunks with a yield in between, so input and rendering are not frozen for the second
      // a 50,000-row hydration takes. Views are refreshed once, when it is all in.
      const steps = this.store.applyPokeSteps(poke, CHUNK_ROWS);
      for (let t = t0; ; chunks++) {
        const step = steps.next();
        busy += performance.now() - t;
        if (step.done) { touched = step.value; break; }
        await nextTask();
        t = performance.now();
      }
    }
    // The last pokes, for the cache panel and the benchmark: when, how big, how long the
    // main thread was busy applying it, over how many tasks and how long it took in all.
    this.pokes.push({ t: t0, version: poke.version, rows, complete: Object.keys(poke.complete ?? {}), ms: busy, chunks, spanMs: performance.now() - t0 });
    if (this.pokes.length > 50) this.pokes.shift();
    if (id) this.lastEventId = id; // opaque: the server's resume token
    if (Object.keys(poke.complete ?? {}).length) this.generation++;
    for (const outcome of poke.mutations ?? []) this.settle({ ...outcome, version: poke.version });
    this.outbox = this.outbox.filter((m) => !(m.version && m.version <= this.store.version));
    this.store.setPending(this.outbox);
    const evicted = this.store.enforceBudget();
    if (evicted.length) {
      for (const e of evicted) this.evictions.push({ t: performance.now(), id: e, bytes: this.store.bytes });
      if (this.evictions.length > 200) this.evictions.splice(0, this.evictions.length - 200);
      this.generation++;
      this.post("/queries", { add: [], remove: evicted }).catch(() => {});
    }
    this.changed(touched);
  }

  /** Queries the server refused in a `POST /queries` answer fail like a `queryError` event. */
  rejectQueries(answer) {
    for (const r of answer?.rejected ?? []) this.onQueryError({ queryId: r.id, error: r.error });
  }

  onQueryError(e) {
    console.warn(`querysync: the server refused query ${e.queryId}: ${e.error?.message}`);
    this.store.queries.delete(e.queryId);
    for (const s of this.subs) if (s.id === e.queryId) s.error = e.error;
    this.changed();
  }

  // -- subscriptions ---------------------------------------------------------------------

  normalize(doc) {
    const q = normalizeQuery(doc, this.schema);
    return { q, id: queryId(q, this.schema) };
  }

  /** How the local store would answer `doc`: {route, covered, by, reason}. */
  explain(doc) {
    const { q, id } = this.normalize(doc);
    const own = this.store.queries.get(id);
    if (own && own.complete) return { id, route: "local", covered: true, by: [id], reason: "the query itself is complete in the cache" };
    const cov = this.store.explain(q);
    return { id, route: cov.covered ? "local" : "local_then_server", ...cov };
  }

  /**
   * Live result of a query: `cb({rows, complete, source, version, explain})` on every change.
   * With `rows: false` the query is only kept in the cache (a preload): `cb` gets `rows: null`
   * and the result is never computed locally, which for a whole table would cost every change.
   */
  subscribe(doc, cb, { ttl = 600, rows = true } = {}) {
    const { q, id } = this.normalize(doc);
    const sub = { id, q, doc, cb, ttl, generation: -1, explain: null, closed: false, rows };
    this.subs.add(sub);
    this.refresh(sub);
    return {
      id,
      unsubscribe: () => {
        sub.closed = true;
        this.subs.delete(sub);
        const e = this.store.queries.get(id);
        if (e && e.active > 0) e.active--;
        this.schedulePersist();
      },
    };
  }

  refresh(sub) {
    if (sub.generation !== this.generation) {
      sub.generation = this.generation;
      sub.explain = this.explainFor(sub);
      if (!sub.explain.covered && !sub.registered) this.register(sub);
    }
    const entry = this.store.queries.get(sub.id);
    if (sub.q.aggregate && !sub.explain.covered) {
      this.offload(sub);
      return;
    }
    const complete = sub.explain.covered || Boolean(entry && entry.complete);
    const rows = sub.rows ? this.store.run(sub.q) : null;
    if (!sub.q.aggregate) sub.lastRows = rows;
    sub.cb({ id: sub.id, rows, complete, source: sub.explain.covered ? "local" : complete ? "server" : "local-partial", version: this.store.version, explain: sub.explain, error: sub.error ?? null });
  }

  explainFor(sub) {
    const own = this.store.queries.get(sub.id);
    if (own && own.complete && !sub.q.aggregate) {
      return { covered: false, own: true, by: [sub.id], reason: "answered by the server, kept live in the cache" };
    }
    return this.store.explain(sub.q);
  }

  register(sub) {
    sub.registered = true;
    if (sub.q.aggregate) return;
    const entry = this.store.track(sub.id, sub.q, wireQuery(sub.q, this.schema), { ttl: sub.ttl });
    entry.active++;
    if (this.state === "online") {
      this.post("/queries", { add: [{ id: sub.id, query: entry.wire, ttl: sub.ttl }], remove: [] }).then((r) => this.rejectQueries(r), () => {});
    }
  }

  async offload(sub) {
    if (sub.offloading) return;
    sub.offloading = true;
    const local = this.store.run(sub.q);
    sub.cb({ id: sub.id, rows: local, complete: false, source: "local-partial", version: this.store.version, explain: sub.explain });
    try {
      const res = await fetch(`${this.url}/query`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ schemaVersion: this.schema.version, query: wireQuery(sub.q, this.schema), live: false }) });
      const text = await res.text();
      if (!res.ok || sub.closed) return;
      const rows = [];
      for (const block of text.split(/\r?\n\r?\n/)) {
        const ev = /event: *(\w+)/.exec(block)?.[1];
        const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (ev === "rows" && data) rows.push(...JSON.parse(data).rows);
      }
      sub.cb({ id: sub.id, rows, complete: true, source: "server", version: this.store.version, explain: sub.explain });
    } catch { /* offline: the local partial answer stands */ } finally {
      sub.offloading = false;
    }
  }

  changed() {
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    queueMicrotask(() => {
      this.notifyScheduled = false;
      for (const sub of [...this.subs]) if (!sub.closed) this.refresh(sub);
      const usage = this.usage();
      for (const cb of this.usageListeners) cb(usage);
      this.schedulePersist();
    });
  }

  // -- usage -----------------------------------------------------------------------------

  usage() {
    return {
      bytes: this.store.bytes,
      budgetBytes: this.store.budgetBytes,
      overBudget: this.store.overBudget,
      pending: this.outbox.length,
      evictions: this.evictions.length,
      queries: [...this.store.queries.values()].map((e) => ({ id: e.id, table: e.query.table, query: e.wire, complete: e.complete, active: e.active > 0, version: e.version })),
    };
  }

  onUsage(cb) {
    this.usageListeners.add(cb);
    cb(this.usage());
    return () => this.usageListeners.delete(cb);
  }

  // -- writes ----------------------------------------------------------------------------

  /** Apply mutations optimistically and send them; resolves with their results. */
  mutate(ops) {
    const promises = ops.map((op) => {
      const m = { ...op, id: this.nextMutationId++, sent: false };
      this.outbox.push(m);
      return new Promise((resolve, reject) => this.waiters.set(m.id, { resolve, reject, m }));
    });
    this.store.setPending(this.outbox);
    this.changed();
    this.persistNow();
    if (this.state === "online") this.flush();
    return Promise.all(promises);
  }

  async flush() {
    const batch = this.outbox.filter((m) => !m.sent);
    if (!batch.length || this.flushing) return;
    this.flushing = true;
    for (const m of batch) m.sent = true;
    try {
      const res = await this.post("/mutate", { mutations: batch.map(({ sent, version, ...m }) => m) });
      for (const r of res.results) this.settle(r);
      this.outbox = this.outbox.filter((m) => !(m.version && m.version <= this.store.version));
      this.store.setPending(this.outbox);
      this.changed();
    } catch (err) {
      for (const m of batch) m.sent = false;
      if (err.body?.error?.code === "mutation_order") {
        const expected = err.body.error.expected ?? err.body.error.expectedId;
        if (expected) this.outbox = this.outbox.filter((m) => m.id >= expected);
      }
    } finally {
      this.flushing = false;
    }
    if (this.outbox.some((m) => !m.sent) && this.state === "online") this.flush();
  }

  settle(result) {
    const m = this.outbox.find((x) => x.id === result.id);
    const waiter = this.waiters.get(result.id);
    if (result.status === "rejected") {
      this.outbox = this.outbox.filter((x) => x.id !== result.id);
      if (waiter) { this.waiters.delete(result.id); waiter.reject(new MutationRejected(waiter.m, result.reason)); }
    } else {
      if (m) m.version = result.version;
      if (waiter) { this.waiters.delete(result.id); waiter.resolve(result); }
    }
  }

  // -- persistence -----------------------------------------------------------------------

  schedulePersist() {
    if (!this.persistence || this.persistTimer) return;
    this.persistTimer = setTimeout(() => { this.persistTimer = null; this.persistNow(); }, 300);
  }

  async persistNow() {
    if (!this.persistence) return;
    if (this.restoring) await this.restoring; // never save the half-read store of a reload
    const rows = this.store.takeDirty();
    const clearRows = this.store.cleared || this.persistAll;
    this.store.cleared = false;
    this.persistAll = false;
    const queries = [...this.store.queries.values()].map(({ id, query, wire, complete, version, lastUsed, ttl }) => ({ id, query, wire, complete, version, lastUsed, ttl }));
    const outbox = this.outbox.map(({ sent, ...m }) => m);
    const meta = { schemaHash: this.schemaHash, clientId: this.clientId, lastEventId: this.lastEventId, nextMutationId: this.nextMutationId, version: this.store.version };
    this.persisting = (this.persisting ?? 0) + 1; // saves in flight (tests and benchmarks wait)
    try {
      await this.persistence.save({ meta, rows, queries, outbox, hot: this.hotRows(), clearRows });
    } catch (err) {
      console.warn("querysync: could not persist the store", err);
    } finally {
      this.persisting--;
    }
  }
}
