// IndexedDB persistence of the local store: rows, tracked queries, the stream position and
// the outbox, written together in one transaction so a reload resumes from a consistent state.
// A store saved under another schema hash is discarded (like an IndexedDB version upgrade).

const STORES = ["meta", "rows", "queries", "outbox"];

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export async function openPersistence(name) {
  if (typeof indexedDB === "undefined") return null;
  const open = indexedDB.open(name, 1);
  open.onupgradeneeded = () => {
    for (const s of STORES) if (!open.result.objectStoreNames.contains(s)) open.result.createObjectStore(s);
  };
  return new Persistence(await request(open));
}

export class Persistence {
  constructor(db) {
    this.db = db;
  }

  /** {meta, queries: [...], outbox: [...], hot: [[id, row]]} or null when nothing is saved:
   * the small part, read first so a reload can show its views before all the rows are read. */
  async loadHead() {
    const tx = this.db.transaction(STORES, "readonly");
    const meta = await request(tx.objectStore("meta").get("meta"));
    if (!meta) return null;
    const [hot, queries, outbox] = await Promise.all([
      request(tx.objectStore("meta").get("hot")),
      request(tx.objectStore("queries").getAll()),
      request(tx.objectStore("outbox").getAll()),
    ]);
    return { meta, queries, outbox, hot: hot ?? [] };
  }

  /** Every saved row, as [[id, row]]. */
  async loadRows() {
    const tx = this.db.transaction(["rows"], "readonly");
    const [rowKeys, rows] = await Promise.all([
      request(tx.objectStore("rows").getAllKeys()),
      request(tx.objectStore("rows").getAll()),
    ]);
    return rowKeys.map((k, i) => [k, rows[i]]);
  }

  /**
   * Write the changed rows (null deletes), the queries, the outbox and the meta record, in one
   * transaction. Rows go in chunks of `chunkRows`: each put clones its row on the main thread
   * (about 50 µs for an issue), so 50,000 at once would freeze the page for seconds. The next
   * chunk is issued from the success event of the last request of the previous one, which
   * keeps the transaction alive (and the write atomic) while other tasks run in between.
   * `hot` ([[id, row]]) copies the rows the open views show, read back first on a reload.
   */
  async save({ meta, rows, queries, outbox, hot = [], clearRows = false }, { chunkRows = 500 } = {}) {
    const tx = this.db.transaction(STORES, "readwrite");
    const rowStore = tx.objectStore("rows");
    if (clearRows) rowStore.clear();
    let i = 0;
    const step = () => {
      const end = Math.min(rows.length, i + chunkRows);
      let last = null;
      for (; i < end; i++) {
        const [k, row] = rows[i];
        last = row === null ? rowStore.delete(k) : rowStore.put(row, k);
      }
      if (i < rows.length) last.onsuccess = step;
    };
    step();
    const qs = tx.objectStore("queries");
    qs.clear();
    for (const q of queries) qs.put(q, q.id);
    const ob = tx.objectStore("outbox");
    ob.clear();
    for (const m of outbox) ob.put(m, m.id);
    tx.objectStore("meta").put(hot, "hot");
    tx.objectStore("meta").put(meta, "meta");
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  async clear() {
    const tx = this.db.transaction(STORES, "readwrite");
    for (const s of STORES) tx.objectStore(s).clear();
    await new Promise((resolve) => { tx.oncomplete = resolve; });
  }
}
