// The Linear-style demo app: filters, sort, a virtualized list, a board, issue detail with
// comments, live updates and a cache panel, all through the querysync JS client.

import { Client } from "./client/client.js";

const STATUSES = ["backlog", "todo", "in_progress", "done", "canceled"];
const STATUS_NAMES = { backlog: "Backlog", todo: "Todo", in_progress: "In progress", done: "Done", canceled: "Canceled" };
const PRIORITIES = ["No priority", "Urgent", "High", "Medium", "Low"];
const ROW_H = 36;
const PAGE = 500;
const params = new URLSearchParams(location.search);
// ?preload=N preloads the newest N issues, ?preload=off nothing; ?budget=BYTES sets the local
// store's byte budget (the eviction test runs with a small one).
const PRELOAD_OFF = params.get("preload") === "off";
const PRELOAD = params.has("preload") && !PRELOAD_OFF ? Number(params.get("preload")) : null;
const BUDGET = params.has("budget") ? Number(params.get("budget")) : undefined;
const PRELOAD_ALL_UP_TO = 150_000; // issues; about 60 MB in the store, within the 100 MB budget
const MAX_LIMIT = 10_000; // the server's largest limit
const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) e.append(kid);
  return e;
};

const state = {
  view: "list", text: "", statuses: new Set(), priority: "", assignee: "", label: "", project: "",
  sort: "modified", limit: PAGE, rows: [], selected: 0, openId: null, snapshot: null,
};
const lookups = { user: new Map(), label: new Map(), project: new Map() };
window.demo = { state, renders: [] };

function formatBytes(n) {
  // "100 MB", "3.2 MB", "512.3 KB": no trailing ".0"
  if (n >= 2 ** 20) return `${Number((n / 2 ** 20).toFixed(1))} MB`;
  return `${Number((n / 2 ** 10).toFixed(1))} KB`;
}
function formatDate(ts) { return ts ? ts.slice(0, 10) : ""; }
function now() { return new Date().toISOString().slice(0, 23); }
function newId() { return Date.now() * 1000 + Math.floor(Math.random() * 1000); }

// -- queries ----------------------------------------------------------------------------

function filterWhere({ withStatus = true } = {}) {
  const terms = [];
  if (withStatus && state.statuses.size) terms.push({ column: "status", op: "in", value: [...state.statuses] });
  if (state.priority !== "") terms.push({ column: "priority", op: "=", value: Number(state.priority) });
  if (state.assignee !== "") terms.push({ column: "assignee_id", op: "=", value: Number(state.assignee) });
  if (state.project !== "") terms.push({ column: "project_id", op: "=", value: Number(state.project) });
  if (state.label !== "") terms.push({ exists: "labels", where: { column: "id", op: "=", value: Number(state.label) } });
  if (state.text) terms.push({ column: "title", op: "ilike", value: `%${state.text.replace(/[\\%_]/g, "\\$&")}%` });
  return terms.length === 0 ? undefined : terms.length === 1 ? terms[0] : { and: terms };
}

function viewQuery() {
  const q = { table: "issue", orderBy: [[state.sort, state.sort === "priority" ? "asc" : "desc"]], limit: state.limit };
  const where = filterWhere();
  if (where) q.where = where;
  return q;
}

// -- rendering --------------------------------------------------------------------------

function renderList() {
  const list = $("#list");
  const spacer = list.firstElementChild;
  spacer.style.height = `${state.rows.length * ROW_H}px`;
  const first = Math.max(0, Math.floor(list.scrollTop / ROW_H) - 5);
  const last = Math.min(state.rows.length, first + Math.ceil(list.clientHeight / ROW_H) + 10);
  const frag = document.createDocumentFragment();
  for (let i = first; i < last; i++) {
    const r = state.rows[i];
    const labels = client.store.relatedRows("issue", "labels", r).slice(0, 2);
    frag.append(el("div", { class: `row${i === state.selected ? " selected" : ""}`, style: `top:${i * ROW_H}px`, "data-id": r.id, onclick: () => { state.selected = i; openIssue(r.id); } },
      el("span", { class: "id" }, `ISS-${r.id}`),
      el("span", { class: `pill st-${r.status}` }, STATUS_NAMES[r.status] ?? r.status),
      el("span", { class: "prio" }, PRIORITIES[r.priority] ?? ""),
      el("span", { class: "title" }, r.title),
      labels.map((l) => el("span", { class: "label-chip", style: `border-color:${l.color}` }, l.name)),
      el("span", { class: "who" }, lookups.user.get(r.assignee_id)?.name ?? "Unassigned"),
      el("span", { class: "date" }, formatDate(state.sort === "created" ? r.created : r.modified))));
  }
  spacer.replaceChildren(frag);
  if (list.scrollTop + list.clientHeight > state.rows.length * ROW_H - 20 * ROW_H && state.rows.length >= state.limit) {
    state.limit += PAGE;
    resubscribe();
  }
}

function renderBoard() {
  const board = $("#board");
  board.replaceChildren(...STATUSES.map((s) => {
    const cards = state.rows.filter((r) => r.status === s).slice(0, 60);
    return el("div", { class: "column", "data-status": s }, el("h3", {}, `${STATUS_NAMES[s]} · ${cards.length}${cards.length === 60 ? "+" : ""}`),
      cards.map((r) => el("div", { class: "card", onclick: () => openIssue(r.id) }, el("div", { class: "id" }, `ISS-${r.id} · ${PRIORITIES[r.priority]}`), r.title)));
  }));
}

function render() {
  if (state.view === "list") renderList(); else renderBoard();
}

let viewSub = null;
let viewCompleted;
const firstViewComplete = new Promise((resolve) => { viewCompleted = resolve; });
function resubscribe() {
  const started = performance.now();
  const q = viewQuery();
  const old = viewSub;
  viewSub = client.subscribe(q, (snap) => {
    state.rows = snap.rows;
    state.snapshot = snap;
    if (snap.complete) viewCompleted();
    if (state.selected >= state.rows.length) state.selected = Math.max(0, state.rows.length - 1);
    render();
    const t = performance.now();
    window.demo.renders.push({ t, ms: t - started, complete: snap.complete, source: snap.source, count: snap.rows.length, id: snap.id });
    if (window.demo.renders.length > 200) window.demo.renders.shift();
    $("#status-line").textContent = `${snap.rows.length.toLocaleString()} issues${snap.rows.length >= state.limit ? "+" : ""} · ${snap.complete ? "complete" : "loading…"} · answered ${snap.source === "local" ? "locally" : snap.source === "server" ? "by the server" : "locally (partial) while the server completes it"} ${snap.explain?.own ? "" : ` — ${snap.explain?.reason ?? ""}`}`;
    renderCache();
  });
  window.demo.viewId = viewSub.id;
  if (old) old.unsubscribe();
  // The counts after the list has painted: the list is what the user is waiting for.
  clearTimeout(countsTimer);
  countsTimer = setTimeout(resubscribeCounts, 0);
}

let countSub = null;
let countsTimer = null;
function resubscribeCounts() {
  const q = { table: "issue", aggregate: { groupBy: ["status"], measures: { n: { fn: "count" } } } };
  const where = filterWhere({ withStatus: false });
  if (where) q.where = where;
  const old = countSub;
  countSub = client.subscribe(q, (snap) => {
    const by = Object.fromEntries(snap.rows.map((r) => [r.status, r.n]));
    $("#counts").replaceChildren(...STATUSES.map((s) => el("span", { class: `count st-${s}` }, `${STATUS_NAMES[s]} ${(by[s] ?? 0).toLocaleString()}`)));
  });
  if (old) old.unsubscribe();
}

// -- issue detail -----------------------------------------------------------------------

let detailSub = null;
function openIssue(id) {
  state.openId = id;
  $("#detail").hidden = false;
  $("#cache").hidden = true;
  if (detailSub) detailSub.unsubscribe();
  detailSub = client.subscribe({ table: "comment", where: { column: "issue_id", op: "=", value: id }, orderBy: [["created", "asc"]] }, (snap) => renderDetail(snap.rows));
  render();
}

/** Close the detail pane and drop its comments query (left inactive in the cache, evictable). */
function closeIssue() {
  $("#detail").hidden = true;
  state.openId = null;
  if (detailSub) detailSub.unsubscribe();
  detailSub = null;
}

function update(id, set) {
  return client.mutate([{ op: "update", table: "issue", key: [id], set: { ...set, modified: now() } }]).catch((err) => alert(err.message));
}

function renderDetail(comments) {
  const issue = client.store.get("issue", JSON.stringify([state.openId]));
  const pane = $("#detail");
  if (!issue) { pane.replaceChildren(el("p", {}, "Loading issue…")); return; }
  if (pane.contains(document.activeElement) && document.activeElement.tagName !== "BUTTON") return; // do not clobber typing
  const select = (col, options, value) => el("select", { "data-field": col, onchange: (e) => update(issue.id, { [col]: e.target.value === "" ? null : isNaN(e.target.value) ? e.target.value : Number(e.target.value) }) },
    options.map(([v, text]) => { const o = el("option", { value: v }, text); if (String(v) === String(value ?? "")) o.selected = true; return o; }));
  const labels = client.store.relatedRows("issue", "labels", issue);
  pane.replaceChildren(
    el("button", { class: "hclose", onclick: closeIssue }, "Close"),
    el("div", { class: "id" }, `ISS-${issue.id}`),
    el("input", { class: "title", value: issue.title, title: issue.title, "data-field": "title", onchange: (e) => update(issue.id, { title: e.target.value }) }),
    el("div", { class: "fields" },
      el("span", {}, "Status"), select("status", STATUSES.map((s) => [s, STATUS_NAMES[s]]), issue.status),
      el("span", {}, "Priority"), select("priority", PRIORITIES.map((p, i) => [i, p]), issue.priority),
      el("span", {}, "Assignee"), select("assignee_id", [["", "Unassigned"], ...[...lookups.user.values()].map((u) => [u.id, u.name])], issue.assignee_id),
      el("span", {}, "Project"), el("span", {}, lookups.project.get(issue.project_id)?.name ?? ""),
      el("span", {}, "Labels"), el("span", {}, labels.map((l) => el("span", { class: "label-chip", style: `border-color:${l.color}` }, l.name))),
      el("span", {}, "Created"), el("span", {}, `${issue.created.slice(0, 16).replace("T", " ")} by ${lookups.user.get(issue.creator_id)?.name ?? "?"}`)),
    el("textarea", { "data-field": "description", onchange: (e) => update(issue.id, { description: e.target.value }) }, issue.description ?? ""),
    el("h2", {}, `Comments (${comments.length})`),
    ...comments.map((c) => el("div", { class: "comment" }, el("div", { class: "meta" }, `${lookups.user.get(c.creator_id)?.name ?? "?"} · ${c.created.slice(0, 16).replace("T", " ")}`), c.body)),
    el("form", { onsubmit: (e) => {
      e.preventDefault();
      const body = e.target.elements.body.value.trim();
      if (!body) return;
      client.mutate([{ op: "insert", table: "comment", row: { id: newId(), issue_id: issue.id, creator_id: 1, body, created: now() } }]).catch((err) => alert(err.message));
      e.target.reset();
    } }, el("textarea", { name: "body", placeholder: "Leave a comment…", style: "min-height:50px;width:100%" }), el("button", { type: "submit" }, "Comment")));
}

// -- cache panel ------------------------------------------------------------------------

function viewExplanation(snap) {
  // The query's own server answer already says so in its reason; the others get a route.
  if (snap.explain?.own) return `${snap.explain.reason[0].toUpperCase()}${snap.explain.reason.slice(1)}.`;
  const route = snap.source === "local" ? "Answered locally" : snap.source === "server" ? "Answered by the server" : "Local partial answer, server completing";
  return `${route}: ${snap.explain?.reason ?? ""}`;
}

function renderCache() {
  const pane = $("#cache");
  if (pane.hidden) return;
  const u = client.usage();
  const snap = state.snapshot;
  pane.replaceChildren(
    el("h2", {}, "Cache"),
    el("div", { class: "usage" }, `${formatBytes(u.bytes)} of ${formatBytes(u.budgetBytes)} used${u.overBudget ? " — the active queries alone exceed the budget" : ""} · ${u.pending} pending write(s) · ${u.evictions} quer${u.evictions === 1 ? "y" : "ies"} evicted`),
    el("div", { class: "bar" }, el("div", { style: `width:${Math.min(100, (100 * u.bytes) / u.budgetBytes)}%` })),
    el("h2", {}, "Current view"),
    el("div", {}, snap ? viewExplanation(snap) : ""),
    el("h2", {}, `Cached queries (${u.queries.length})`),
    ...u.queries.map((q) => el("div", { class: "query" },
      el("b", {}, q.id), " ", el("span", { class: "state" }, `${q.complete ? "complete" : "hydrating"}${q.active ? " · active" : ""}${q.id === snap?.id ? " · this view" : ""}`),
      el("code", {}, JSON.stringify(q.query)))));
}

// -- wiring -----------------------------------------------------------------------------

function setupFilters() {
  for (const s of STATUSES) {
    $("#f-status").append(el("label", {}, el("input", { type: "checkbox", value: s, onchange: (e) => { e.target.checked ? state.statuses.add(s) : state.statuses.delete(s); changeFilter(); } }), STATUS_NAMES[s]));
  }
  PRIORITIES.forEach((p, i) => $("#f-priority").append(el("option", { value: i }, p)));
  const bind = (id, key) => $(id).addEventListener("change", (e) => { state[key] = e.target.value; changeFilter(); });
  bind("#f-priority", "priority"); bind("#f-assignee", "assignee"); bind("#f-label", "label"); bind("#f-project", "project"); bind("#f-sort", "sort");
  $("#f-text").addEventListener("input", (e) => { state.text = e.target.value; changeFilter(); });
  for (const b of document.querySelectorAll(".views button")) {
    b.addEventListener("click", () => {
      state.view = b.dataset.view;
      for (const x of document.querySelectorAll(".views button")) x.classList.toggle("active", x === b);
      $("#list").hidden = state.view !== "list";
      $("#board").hidden = state.view !== "board";
      render();
    });
  }
  $("#list").addEventListener("scroll", () => renderList());
  $("#toggle-cache").addEventListener("click", () => { $("#cache").hidden = !$("#cache").hidden; closeIssue(); renderCache(); });
  $("#new-issue").addEventListener("click", () => {
    const id = newId();
    client.mutate([{ op: "insert", table: "issue", row: { id, project_id: Number(state.project || 1), title: "New issue", description: "", status: "todo", priority: 0, assignee_id: null, creator_id: 1, visibility: "public", estimate: null, sort_order: 0, created: now(), modified: now() } }]).catch((err) => alert(err.message));
    openIssue(id);
  });
  document.addEventListener("keydown", (e) => {
    if (["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName)) return;
    if (e.key === "ArrowDown" || e.key === "j") state.selected = Math.min(state.rows.length - 1, state.selected + 1);
    else if (e.key === "ArrowUp" || e.key === "k") state.selected = Math.max(0, state.selected - 1);
    else if (e.key === "Enter" && state.rows[state.selected]) { openIssue(state.rows[state.selected].id); return; }
    else if (e.key === "Escape") { closeIssue(); return; }
    else return;
    e.preventDefault();
    const list = $("#list");
    const top = state.selected * ROW_H;
    if (top < list.scrollTop) list.scrollTop = top;
    else if (top + ROW_H > list.scrollTop + list.clientHeight) list.scrollTop = top + ROW_H - list.clientHeight;
    renderList();
  });
}

function changeFilter() {
  state.limit = PAGE;
  state.selected = 0;
  $("#list").scrollTop = 0;
  resubscribe();
}

function fillSelect(sel, rows, text) {
  const current = $(sel).value;
  $(sel).replaceChildren($(sel).firstElementChild, ...rows.map((r) => el("option", { value: r.id }, text(r))));
  $(sel).value = current;
}

performance.mark("app:modules");
const schemaDoc = await (await fetch("app-schema.json")).json();
performance.mark("app:schema");
const client = new Client({ url: params.get("server") ?? "", schema: schemaDoc, name: params.get("db") ?? "querysync-demo", budgetBytes: BUDGET });
window.demo.client = client;
client.onState((s, err) => {
  const c = $("#conn");
  c.className = `conn ${s}`;
  c.textContent = s === "update-needed" ? "update needed" : s;
  c.title = err?.message ?? s;
  if (s === "update-needed" && !$(".banner")) {
    document.body.insertBefore(el("div", { class: "banner" }, `This app is out of date: ${err?.message ?? "the server needs a newer client; reload the app."}`), $(".layout"));
  }
});
await client.start();
performance.mark("app:started");
setupFilters();
resubscribe(); // the visible view first, so it hydrates first
performance.mark("app:subscribed");
for (const [tableName, sel, text] of [["user", "#f-assignee", (r) => r.name], ["label", "#f-label", (r) => r.name], ["project", "#f-project", (r) => r.name]]) {
  client.subscribe({ table: tableName }, (snap) => {
    for (const r of snap.rows) lookups[tableName].set(r.id, r);
    fillSelect(sel, snap.rows, text);
    render(); // names in the rows come from these lookups
  });
}
// Preload issues so that filters are answered locally: the whole table when it fits the budget
// comfortably (Linear's way), else the newest window the server allows (?preload=N forces one).
// Only once the first view is complete: the server hydrates what is declared together in one
// poke, and the first list must not wait for the whole table.
let preloaded = PRELOAD_OFF;
await firstViewComplete;
if (!PRELOAD_OFF) client.subscribe({ table: "issue_label" }, () => {}, { rows: false });
const total = client.subscribe({ table: "issue", aggregate: { measures: { n: { fn: "count" } } } }, (snap) => {
  if (preloaded || !snap.complete) return;
  preloaded = true;
  const q = { table: "issue", related: { labels: {} } };
  if (PRELOAD !== null || (snap.rows[0]?.n ?? 0) > PRELOAD_ALL_UP_TO) Object.assign(q, { orderBy: [["modified", "desc"]], limit: Math.min(PRELOAD ?? MAX_LIMIT, MAX_LIMIT) });
  client.subscribe(q, (preload) => { if (preload.complete) window.demo.preloaded = true; }, { rows: false });
  queueMicrotask(() => total.unsubscribe());
});
