// jobq dashboard: vanilla JS, no build step. Every call goes to the same API with the user's
// token, so the page shows exactly what the API lets that token see (an admin everything, a
// user only their own jobs). Routes live in the URL fragment: #/queues, #/jobs?queue=&status=,
// #/job/<id>?user=, #/dlq/<queue>, #/schedules, #/metrics/<queue>, #/audit.
"use strict";

// Behind a named stage (/prod/dashboard) the API is under /prod.
const BASE = location.pathname.replace(/\/dashboard(\/.*)?$/, "");
const STATES = ["waiting", "active", "delayed", "completed", "failed", "cancelled", "stalled", "waiting-children"];
const FINISHED = new Set(["completed", "failed", "cancelled"]);
const PAGE_SIZE = 20;

const session = {
  token: null, claims: {}, admin: false, readOnly: false, forcedReadOnly: false, features: null, queues: [], websocketUrl: null,
};
let stopPage = () => {};

// ---- DOM helpers ------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") el.style.cssText = v; // CSSOM, which the page's CSP allows (style attributes it does not)
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");
// replaceChildren, minus the nulls conditional parts leave (it would print them as "null").
function put(el, ...nodes) { el.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false)); }
function mount(...nodes) { put(main(), ...nodes); }
function statusTag(s) { return h("span", { class: `status s-${s}`, "data-status": s }, s); }
function pretty(v) { return v === null || v === undefined ? "—" : JSON.stringify(v, null, 2); }
function fmtMs(v) { return v === null || v === undefined ? "—" : v >= 10000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`; }
function fmtTime(iso) { return iso ? new Date(iso).toLocaleString() : "—"; }
function ago(iso) {
  if (!iso) return "—";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 60) return `${Math.max(0, Math.round(s))}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}
function until(iso) {
  const s = (new Date(iso).getTime() - Date.now()) / 1000;
  if (s <= 0) return "due";
  return s < 3600 ? `in ${Math.ceil(s / 60)} min` : s < 86400 ? `in ${Math.round(s / 3600)} h` : `in ${Math.round(s / 86400)} d`;
}
function percent(progress) {
  let v = progress && typeof progress === "object" ? (progress.percent ?? progress.progress ?? 0) : progress;
  v = Number(v);
  return Number.isFinite(v) ? Math.max(0, Math.min(100, v)) : 0;
}
function toast(message, error = false) {
  const el = h("div", { class: error ? "toast error" : "toast", role: "status" }, message);
  document.body.append(el);
  setTimeout(() => el.remove(), error ? 7000 : 3500);
}
function banner(message, error = false) {
  const el = $("#banner");
  el.hidden = !message;
  el.className = error ? "banner error" : "banner";
  el.textContent = message || "";
}
function every(ms, fn) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { if (!stopped) banner(e.message, true); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
function ownerParam(user) { return user ? `userId=${encodeURIComponent(user)}` : ""; }
function qs(params) {
  const parts = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  return parts.length ? `?${parts.join("&")}` : "";
}
const enc = encodeURIComponent;

// A small modal form: resolves to the values, or null when cancelled.
function ask(title, fields, confirmLabel = "OK", danger = false) {
  return new Promise((resolve) => {
    const inputs = {};
    const body = fields.map((f) => {
      let input;
      if (f.options) input = h("select", { name: f.name }, f.options.map((o) => h("option", { value: o, selected: o === f.value }, o)));
      else input = h("input", { name: f.name, type: f.type || "text", value: f.value ?? "", placeholder: f.placeholder || "" });
      inputs[f.name] = input;
      return [h("label", {}, f.label), input];
    });
    const dialog = h("dialog", { class: "ask" },
      h("h2", {}, title),
      ...body,
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => { dialog.close(); resolve(null); } }, "Cancel"),
        h("button", {
          type: "button", class: danger ? "danger" : "primary", "data-confirm": "1",
          onclick: () => {
            const values = Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value]));
            dialog.close(); resolve(values);
          },
        }, confirmLabel)));
    dialog.addEventListener("close", () => setTimeout(() => dialog.remove(), 0));
    document.body.append(dialog);
    dialog.showModal();
  });
}

// ---- the API ----------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "NETWORK", `cannot reach the API: ${e.message}`);
  }
  let payload = null;
  if (response.status !== 204) {
    try { payload = await response.json(); } catch { payload = null; }
  }
  if (response.status === 401) {
    signOut("Your session is not valid (expired or rejected token). Sign in again.");
    throw new ApiError(401, "UNAUTHORIZED", "not signed in");
  }
  if (!response.ok) {
    const err = payload && payload.error;
    throw new ApiError(response.status, err ? err.code : "HTTP_ERROR", err ? err.message : (payload && payload.message) || `HTTP ${response.status}`);
  }
  return payload && "data" in payload ? payload.data : payload;
}

async function features() {
  if (session.features) return session.features;
  let paths = {};
  try {
    const doc = await (await fetch(`${BASE}/openapi.json`)).json();
    paths = doc.paths || {};
  } catch { /* an API without its document: the basics only */ }
  const del = (paths["/jobs/{job_id}"] || {}).delete || {};
  session.features = {
    remove: (del.parameters || []).some((p) => p.name === "action"),
    flows: Object.keys(paths).some((p) => p.startsWith("/flows")),
    scheduleEdit: Boolean((paths["/schedules/{name}"] || {}).patch),
  };
  return session.features;
}

function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(part + "=".repeat((4 - (part.length % 4)) % 4)))));
  } catch { return {}; }
}

// ---- session ----------------------------------------------------------------------------------
function readFragmentToken() {
  // A sign-in link: #token=<jwt>[&readonly=1]. The token leaves the address bar at once.
  const hash = location.hash.replace(/^#/, "");
  if (!hash.startsWith("token=")) return;
  const params = new URLSearchParams(hash);
  sessionStorage.setItem("jobq.token", params.get("token"));
  if (params.get("readonly") === "1") sessionStorage.setItem("jobq.readonly", "1");
  history.replaceState(null, "", `${location.pathname}#/`);
}

function signOut(message) {
  sessionStorage.removeItem("jobq.token");
  session.token = null;
  session.features = null;
  stopPage();
  renderSignIn(message);
}

async function start() {
  // A sign-in link opened in a tab already showing the dashboard only changes the fragment.
  window.addEventListener("hashchange", () => {
    if (location.hash.startsWith("#token=")) { readFragmentToken(); location.reload(); }
  });
  readFragmentToken();
  session.token = sessionStorage.getItem("jobq.token");
  try {
    const config = await (await fetch(`${BASE}/dashboard/config.json`)).json();
    session.forcedReadOnly = Boolean(config.readOnly);
    session.websocketUrl = config.websocketUrl || null;
  } catch { session.forcedReadOnly = false; }
  if (!session.token) { renderSignIn(); return; }
  session.claims = decodeClaims(session.token);
  session.readOnly = session.forcedReadOnly || sessionStorage.getItem("jobq.readonly") === "1";
  // Admin or not is the API's answer, not the token's look: GET /queues is admin only.
  try {
    session.queues = await api("GET", "/queues");
    session.admin = true;
  } catch (e) {
    if (e.status === 401) return;
    if (e.status !== 403) { banner(e.message, true); }
    session.admin = false;
    session.queues = [];
  }
  await features();
  renderChrome();
  window.addEventListener("hashchange", route);
  route();
}

function renderChrome() {
  document.body.classList.toggle("readonly", session.readOnly);
  const links = session.admin
    ? [["#/queues", "Queues"], ["#/jobs", "Jobs"], ["#/dlq", "Dead letters"], ["#/schedules", "Schedules"], ["#/metrics", "Metrics"], ["#/audit", "Audit"]]
    : [["#/jobs", "My jobs"]];
  put($("#nav"), ...links.map(([href, label]) => h("a", { href, "data-nav": label }, label)));
  const roToggle = session.forcedReadOnly ? null : h("button", {
    class: "small", title: "Hide every action that changes something",
    onclick: () => {
      session.readOnly = !session.readOnly;
      sessionStorage.setItem("jobq.readonly", session.readOnly ? "1" : "0");
      renderChrome(); route();
    },
  }, session.readOnly ? "Allow changes" : "Read-only");
  put($("#who"), 
    h("span", { id: "user", "data-user": session.claims.sub || "" }, session.claims.sub || "?"),
    session.admin ? h("span", { class: "tag admin" }, "admin") : h("span", { class: "tag" }, "user"),
    session.readOnly ? h("span", { class: "tag ro", id: "readonly-tag" }, "read-only") : null,
    roToggle,
    h("button", { class: "small", onclick: () => signOut() }, "Sign out"));
}

function renderSignIn(message) {
  put($("#nav"));
  put($("#who"));
  banner(message || "", Boolean(message));
  const area = h("textarea", { id: "token-input", placeholder: "eyJhbGciOi…", spellcheck: "false" });
  mount(h("div", { class: "signin panel" },
    h("h1", {}, "Sign in to jobq"),
    h("p", {}, "Paste a token (JWT) from the identity provider the API trusts: an ID or access token whose issuer and audience match the stack's JwtIssuer and JwtAudience. It stays in this tab (session storage) and is sent only to this API."),
    area,
    h("div", { class: "toolbar" },
      h("button", {
        class: "primary", id: "sign-in",
        onclick: () => {
          const token = area.value.trim().replace(/^Bearer\s+/i, "");
          if (!token) return;
          sessionStorage.setItem("jobq.token", token);
          location.hash = "#/";
          location.reload();
        },
      }, "Sign in")),
    h("p", { class: "muted" }, "Locally, `python3 dev.py local` prints a link that signs in as a local admin.")));
}

// ---- routing ----------------------------------------------------------------------------------
function route() {
  stopPage();
  stopPage = () => {};
  banner("");
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const page = parts[0] || (session.admin ? "queues" : "jobs");
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("on", a.getAttribute("href") === `#/${page}`);
  const pages = { queues: pageQueues, jobs: pageJobs, job: pageJob, dlq: pageDlq, schedules: pageSchedules, metrics: pageMetrics, audit: pageAudit };
  const render = pages[page] || pageNotFound;
  if (!session.admin && render !== pageJobs && render !== pageJob) { pageJobs(parts, params); return; }
  render(parts, params);
}
function pageNotFound() { mount(h("p", { class: "empty" }, "No such page.")); }
function change(el) { el.classList.add("change"); if (session.readOnly) el.disabled = true; return el; }

// ---- queues -----------------------------------------------------------------------------------
function pageQueues() {
  const table = h("tbody");
  mount(
    h("h1", {}, "Queues", h("span", { class: "muted", id: "refreshed" }, "")),
    h("table", { id: "queues" },
      h("thead", {}, h("tr", {},
        h("th", {}, "queue"), h("th", {}, "health"),
        ...STATES.map((s) => h("th", { class: "num" }, s)),
        h("th", { class: "num" }, "DLQ"),
        h("th", { title: "unfinished jobs (waiting, delayed, active) per priority band" }, "by priority"),
        h("th", { class: "num", title: "jobs finished per minute, last hour" }, "rate/min"),
        h("th", { class: "num", title: "failed / finished, last hour" }, "failure"),
        h("th", { class: "num", title: "processing time of completed jobs, last hour" }, "avg / p95"))),
      table));
  stopPage = every(3000, async () => {
    const queues = await api("GET", "/queues");
    session.queues = queues;
    put(table, ...queues.map(queueRow));
    $("#refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  });
}

function queueRow(q) {
  const s = q.liveStats;
  const toggle = change(h("button", {
    class: "small", "data-action": q.paused ? "resume" : "pause",
    onclick: async () => {
      try {
        await api("POST", `/queues/${enc(q.name)}/${q.paused ? "resume" : "pause"}`);
        toast(`${q.name} ${q.paused ? "resumed" : "paused"}`);
        route();
      } catch (e) { toast(e.message, true); }
    },
  }, q.paused ? "Resume" : "Pause"));
  const clean = change(h("button", { class: "small", "data-action": "clean", onclick: () => cleanQueue(q.name) }, "Clean…"));
  return h("tr", { "data-queue": q.name },
    h("td", { class: "nowrap" },
      h("a", { href: `#/jobs?queue=${enc(q.name)}` }, h("strong", {}, q.name)), " ",
      q.paused ? h("span", { class: "status s-paused", "data-paused": q.name }, "paused") : null,
      h("div", { class: "toolbar", style: "margin:4px 0 0;flex-wrap:nowrap" },
        toggle, clean, h("a", { href: `#/metrics/${enc(q.name)}`, class: "small" }, "metrics"))),
    h("td", { class: "health" }, h("span", { class: `status h-${q.healthStatus}`, "data-health": q.name }, q.healthStatus),
      q.healthReasons.length ? h("div", { class: "reasons" }, q.healthReasons.join("; ")) : null),
    ...STATES.map((state) => h("td", { class: "num" },
      h("a", { href: `#/jobs?queue=${enc(q.name)}&status=${state}`, "data-count": `${q.name}:${state}` }, s[state] ?? 0))),
    h("td", { class: "num" }, h("a", { href: `#/dlq/${enc(q.name)}`, "data-dlq": q.name }, q.dlqDepth)),
    h("td", { class: "nowrap small", "data-priority": q.name }, priorityLine(q.byPriority)),
    h("td", { class: "num" }, q.processingRate.toFixed(1)),
    h("td", { class: "num" }, `${(q.failureRate * 100).toFixed(1)}%`),
    h("td", { class: "num nowrap" }, `${fmtMs(q.averageProcessingTime)} / ${fmtMs(q.p95ProcessingTime)}`));
}

// "critical 2 · low 40": the unfinished jobs of each band that has any (waiting + delayed + active).
function priorityLine(byPriority) {
  const parts = Object.entries(byPriority || {})
    .map(([band, c]) => [band, (c.waiting || 0) + (c.delayed || 0) + (c.active || 0), c])
    .filter(([, n]) => n > 0)
    .map(([band, n, c]) => h("span", { title: `${band}: ${c.waiting} waiting, ${c.delayed} delayed, ${c.active} active`, "data-band": band }, `${band} ${n}`));
  if (!parts.length) return "–";
  return parts.flatMap((p, i) => (i ? [" · ", p] : [p]));
}

async function cleanQueue(name) {
  const v = await ask(`Clean ${name}`, [
    { name: "status", label: "Remove jobs that are", options: ["completed", "failed", "cancelled"], value: "completed" },
    { name: "minutes", label: "and finished more than … minutes ago", type: "number", value: "60" },
    { name: "limit", label: "at most", type: "number", value: "1000" },
  ], "Remove", true);
  if (!v) return;
  try {
    const r = await api("POST", `/queues/${enc(name)}/clean`, { status: v.status, olderThan: Number(v.minutes) * 60000, limit: Number(v.limit) });
    toast(`removed ${r.removed} ${v.status} job(s)${r.hasMore ? "; more remain" : ""}`);
    route();
  } catch (e) { toast(e.message, true); }
}

// ---- jobs of a queue (or of a user) -----------------------------------------------------------
function pageJobs(_parts, params) {
  const me = session.claims.sub;
  const filters = {
    queue: params.get("queue") || (session.admin && !params.get("user") ? (session.queues[0] || {}).name : "") || "",
    status: params.get("status") || "",
    user: params.get("user") || "",
    id: params.get("id") || "",
    type: params.get("type") || "",
    from: params.get("from") || "",
    to: params.get("to") || "",
  };
  const state = { cursors: [null], index: 0, next: null, jobs: [], selected: new Map() };

  const setFilter = (patch) => { location.hash = `#/jobs${qs({ ...filters, ...patch })}`; };
  const counts = session.admin && filters.queue ? (session.queues.find((q) => q.name === filters.queue) || {}).liveStats || {} : {};
  const tabs = h("div", { class: "tabs", id: "state-tabs" },
    ["", ...STATES].map((s) => h("a", { href: `#/jobs${qs({ ...filters, status: s })}`, class: filters.status === s ? "on" : "", "data-tab": s || "all" },
      s || "all", s && counts[s] !== undefined ? h("span", { class: "count", "data-tab-count": s }, counts[s]) : null)));
  async function refreshCounts() {
    if (!session.admin || !filters.queue) return;
    session.queues = await api("GET", "/queues");
    const stats = (session.queues.find((q) => q.name === filters.queue) || {}).liveStats || {};
    for (const el of tabs.querySelectorAll("[data-tab-count]")) el.textContent = stats[el.dataset.tabCount] ?? 0;
  }

  const queueSelect = h("select", { name: "queue", onchange: (e) => setFilter({ queue: e.target.value }) },
    filters.user ? h("option", { value: "" }, "all queues") : null,
    session.queues.map((q) => h("option", { value: q.name, selected: q.name === filters.queue }, q.name)));
  const field = (name, placeholder, type = "text") => h("input", { name, placeholder, type, value: filters[name] });
  const form = h("form", { class: "toolbar", id: "search", onsubmit: (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(e.target).entries());
    setFilter(data);
  } },
    session.admin ? queueSelect : field("queue", "queue"),
    field("id", "job id"), field("type", "type"), session.admin ? field("user", "user id") : null,
    h("label", { class: "muted" }, "from"), field("from", "", "datetime-local"),
    h("label", { class: "muted" }, "to"), field("to", "", "datetime-local"),
    h("button", { type: "submit", class: "primary" }, "Search"),
    h("button", { type: "button", onclick: () => setFilter({ id: "", type: "", user: "", from: "", to: "" }) }, "Clear"));

  const body = h("tbody");
  const selectAll = h("input", { type: "checkbox", title: "select the page", onchange: (e) => {
    for (const job of state.jobs) e.target.checked ? state.selected.set(job.jobId, job) : state.selected.delete(job.jobId);
    draw();
  } });
  const countSel = h("span", { class: "muted", id: "selected-count" }, "");
  const bulk = (label, action, enabled = true, title = "") => change(h("button", {
    class: "small", "data-bulk": action, disabled: !enabled, title,
    onclick: () => bulkAction(action),
  }, label));
  const f = session.features || {};
  const pager = h("div", { class: "pager" },
    h("span", { class: "muted", id: "page-no" }, ""),
    h("button", { class: "small", id: "newer", onclick: () => { state.index -= 1; load(); } }, "← newer"),
    h("button", { class: "small", id: "older", onclick: () => { state.index += 1; load(); } }, "older →"));

  const title = filters.user ? `Jobs of ${filters.user}` : session.admin ? `Jobs of ${filters.queue || "?"}` : "My jobs";
  mount(
    h("h1", {}, title, session.admin && filters.queue ? h("a", { href: `#/metrics/${enc(filters.queue)}`, class: "small" }, "metrics") : null),
    tabs, form,
    h("div", { class: "toolbar" },
      h("span", { class: "grow" }, countSel),
      bulk("Retry selected", "retry"), bulk("Cancel selected", "cancel"),
      bulk("Remove selected", "remove", f.remove, f.remove ? "" : "this API cannot remove single jobs yet (use Clean on the queues page)"),
      h("button", { class: "small", onclick: () => load() }, "Refresh")),
    h("table", { id: "jobs" },
      h("thead", {}, h("tr", {}, h("th", {}, change(selectAll)), h("th", {}, "job"), h("th", {}, "type"), h("th", {}, "user"),
        h("th", {}, "status"), h("th", {}, "progress"), h("th", { class: "num" }, "attempts"), h("th", {}, "created"), h("th", {}, "error / result"))),
      body),
    pager);

  function draw() {
    if (!$("#newer")) return;  // the page was left before its listing arrived
    put(body, ...(state.jobs.length ? state.jobs.map(jobRow) : [h("tr", {}, h("td", { colspan: 9, class: "empty" }, "no jobs"))]));
    countSel.textContent = state.selected.size ? `${state.selected.size} selected` : "";
    selectAll.checked = state.jobs.length > 0 && state.jobs.every((j) => state.selected.has(j.jobId));
    $("#newer").disabled = state.index === 0;
    $("#older").disabled = !state.next;
    $("#page-no").textContent = `page ${state.index + 1}`;
  }

  function jobRow(job) {
    const box = change(h("input", { type: "checkbox", "data-select": job.jobId, checked: state.selected.has(job.jobId), onchange: (e) => {
      e.target.checked ? state.selected.set(job.jobId, job) : state.selected.delete(job.jobId);
      draw();
    } }));
    const outcome = job.error ? h("span", { style: "color:var(--red)" }, job.error.slice(0, 200))
      : job.result !== null && job.result !== undefined ? h("span", { class: "mono muted" }, JSON.stringify(job.result).slice(0, 200)) : "";
    return h("tr", { "data-job": job.jobId, "data-owner": job.userId },
      h("td", {}, box),
      h("td", { class: "nowrap" }, h("a", { class: "mono", href: `#/job/${enc(job.jobId)}${qs({ user: job.userId })}` }, job.jobId)),
      h("td", { class: "nowrap" }, job.type, h("div", { class: "reasons" }, job.queue)),
      h("td", {}, job.userId),
      h("td", {}, statusTag(job.status), job.cancelRequested ? h("div", { class: "reasons" }, "cancel requested") : null),
      h("td", {}, h("div", { class: "bar" }, h("div", { style: `width:${job.status === "completed" ? 100 : percent(job.progress)}%` }))),
      h("td", { class: "num" }, `${job.attempts}/${job.maxAttempts}`),
      h("td", { title: fmtTime(job.createdAt) }, ago(job.createdAt)),
      h("td", { class: "outcome", title: job.error || (job.result !== null && job.result !== undefined ? JSON.stringify(job.result) : "") }, outcome));
  }

  function matches(job) {
    if (filters.type && !job.type.includes(filters.type)) return false;
    if (filters.from && new Date(job.createdAt) < new Date(filters.from)) return false;
    if (filters.to && new Date(job.createdAt) > new Date(filters.to)) return false;
    if (filters.queue && !session.admin && job.queue !== filters.queue) return false;
    return true;
  }

  function source(cursor) {
    const common = { status: filters.status, limit: filters.type || filters.from || filters.to ? 100 : PAGE_SIZE, cursor };
    if (filters.user) return `/jobs/user/${enc(filters.user)}${qs({ ...common, queue: filters.queue })}`;
    if (session.admin && filters.queue) return `/queues/${enc(filters.queue)}/jobs${qs(common)}`;
    return `/jobs/user/${enc(me)}${qs({ ...common, queue: filters.queue })}`;
  }

  async function load() {
    try {
      if (filters.id) {
        const path = `/jobs/${enc(filters.id)}${qs({ userId: filters.user })}`;
        try { state.jobs = [await api("GET", path)]; } catch (e) { if (e.status === 404) state.jobs = []; else throw e; }
        state.next = null;
      } else {
        // Newest first; type and time filters read pages until a page fills (at most 10 reads).
        let cursor = state.cursors[state.index];
        const found = [];
        for (let reads = 0; reads < 10; reads++) {
          const page = await api("GET", source(cursor));
          found.push(...page.jobs.filter(matches));
          cursor = page.nextCursor;
          const oldest = page.jobs.length ? page.jobs[page.jobs.length - 1].createdAt : null;
          if (!cursor || found.length >= PAGE_SIZE || (filters.from && oldest && new Date(oldest) < new Date(filters.from))) break;
        }
        state.jobs = found;
        state.next = cursor || null;
        if (filters.from && state.jobs.length && cursor) {
          const oldest = state.jobs[state.jobs.length - 1].createdAt;
          if (new Date(oldest) < new Date(filters.from)) state.next = null;
        }
        state.cursors[state.index + 1] = state.next;
      }
      draw();
      await refreshCounts();
    } catch (e) { banner(e.message, true); }
  }

  async function bulkAction(action) {
    const jobs = [...state.selected.values()];
    if (!jobs.length || session.readOnly) return;
    if (action !== "retry") {
      const ok = await ask(`${action === "cancel" ? "Cancel" : "Remove"} ${jobs.length} job(s)?`, [], action === "cancel" ? "Cancel jobs" : "Remove", true);
      if (!ok) return;
    }
    let done = 0;
    const errors = [];
    for (const job of jobs) {
      const owner = ownerParam(job.userId);
      try {
        if (action === "retry") await api("POST", `/jobs/${enc(job.jobId)}/retry${owner ? `?${owner}` : ""}`);
        else if (action === "cancel") await api("DELETE", `/jobs/${enc(job.jobId)}${owner ? `?${owner}` : ""}`);
        else await api("DELETE", `/jobs/${enc(job.jobId)}?action=remove${owner ? `&${owner}` : ""}`);
        done += 1;
        state.selected.delete(job.jobId);
      } catch (e) { errors.push(`${job.jobId}: ${e.message}`); }
    }
    toast(`${action}: ${done} done${errors.length ? `, ${errors.length} refused (${errors[0]})` : ""}`, errors.length > 0);
    load();
  }

  load();
  // The first page refreshes itself while nothing is selected (later pages hold still while you read them).
  const timer = setInterval(() => { if (state.index === 0 && state.selected.size === 0 && !filters.id) load(); }, 5000);
  stopPage = () => clearInterval(timer);
}

// ---- one job ----------------------------------------------------------------------------------
function pageJob(parts, params) {
  const jobId = parts[1];
  const user = params.get("user") || "";
  const owner = ownerParam(user);
  const suffix = owner ? `?${owner}` : "";
  const view = h("div", { id: "job-view" }, h("p", { class: "muted" }, "loading…"));
  mount(h("h1", {}, h("a", { href: "#/", onclick: (e) => { e.preventDefault(); history.back(); } }, "←"), "Job ", h("span", { class: "mono" }, jobId)), view);
  let logsSeen = -1;
  const logBox = h("pre", { id: "logs" }, "");

  async function act(label, method, path) {
    try { await api(method, path); toast(`${label}: done`); refresh(); } catch (e) { toast(e.message, true); }
  }

  async function loadLogs() {
    const lines = [];
    let cursor = null;
    do {
      const page = await api("GET", `/jobs/${enc(jobId)}/logs${qs({ userId: user, limit: 100, cursor })}`);
      lines.push(...page.lines);
      cursor = page.nextCursor;
    } while (cursor);
    if (lines.length !== logsSeen) {
      logsSeen = lines.length;
      logBox.textContent = lines.length ? lines.map((l) => `${l.at}  #${l.attempt ?? "-"}  ${l.message}`).join("\n") : "(no log lines)";
    }
  }

  // Its flow: the parent it reports to, and the tree of the whole flow from its root (GET /flows/{root}),
  // this job marked. Read on each change of the job and, while the flow runs, on its jobs' events
  // (the WebSocket's flow subscription) or every third look when polling.
  const flowBox = h("div", { id: "flow" }, "");
  let flowRunning = false, flowAsked = false, flowTimer = null;
  const flowNode = (n, owner) => h("li", { "data-flow-job": n.jobId, "data-flow-status": n.status || "", class: n.jobId === jobId ? "here" : "" },
    n.jobId === jobId ? h("span", { class: "mono" }, n.jobId) : h("a", { class: "mono", href: `#/job/${enc(n.jobId)}${qs({ user: owner })}` }, n.jobId), " ",
    n.status ? statusTag(n.status) : h("span", { class: "muted" }, "removed"), " ",
    h("span", { class: "muted" }, [n.queue, n.type].filter(Boolean).join(" / ")),
    n.dependency ? h("span", { class: "muted" }, ` · ${n.dependency}`) : null,
    n.error ? h("div", { class: "reasons", style: "color:var(--red)" }, n.error) : null,
    n.children && n.children.length ? h("ul", {}, n.children.map((c) => flowNode(c, owner))) : null);
  async function loadFlow(job) {
    if (!(session.features || {}).flows) { put(flowBox, h("p", { class: "muted" }, "Flows (parent and children) are not available on this API.")); return; }
    const parent = job.parent ? h("p", { id: "flow-parent" }, "parent: ",
      h("a", { class: "mono", href: `#/job/${enc(job.parent.jobId)}${qs({ user: job.userId })}` }, job.parent.jobId),
      h("span", { class: "muted" }, ` on ${job.parent.queue}; if this job fails: ${job.parent.onFailure}`)) : null;
    const rootId = job.parent ? (job.parent.root || job.parent.jobId) : jobId;
    let tree = null;
    try { tree = await api("GET", `/flows/${enc(rootId)}${suffix}`); } catch (e) { if (e.status !== 404) throw e; }
    const inFlow = tree && tree.children && tree.children.length;
    flowRunning = Boolean(inFlow && !FINISHED.has(tree.status));
    let summary = null, drawn = null;
    if (inFlow) {
      const nodes = [];
      const walk = (n) => { nodes.push(n); (n.children || []).forEach(walk); };
      walk(tree);
      const done = nodes.filter((n) => FINISHED.has(n.status)).length;
      summary = h("p", { id: "flow-summary", class: "muted" }, "flow ",
        rootId === jobId ? h("span", { class: "mono" }, rootId) : h("a", { class: "mono", id: "flow-root", href: `#/job/${enc(rootId)}${qs({ user: job.userId })}` }, rootId),
        ` · ${nodes.length} jobs, ${done} finished`, flowRunning ? "" : ` · ${tree.status}`);
      // A root lists its children; a child shows the whole flow with itself marked.
      drawn = rootId === jobId
        ? h("ul", { class: "flow", id: "flow-children" }, tree.children.map((c) => flowNode(c, job.userId)))
        : h("ul", { class: "flow", id: "flow-tree" }, flowNode(tree, job.userId));
    }
    put(flowBox, parent, summary, drawn, !parent && !inFlow ? h("p", { class: "muted" }, "not part of a flow") : null);
    if (inFlow && flowRunning && socket && socket.readyState === 1 && !flowAsked) {
      flowAsked = true;
      socket.send(JSON.stringify({ action: "subscribe", flowId: rootId, ...(user ? { userId: job.userId } : {}) }));
    }
    lastJob = job;
  }
  let lastJob = null;
  const reloadFlow = () => {  // many jobs of a flow may change at once: one read for them
    clearTimeout(flowTimer);
    flowTimer = setTimeout(() => { if (lastJob && !stopped) loadFlow(lastJob).catch(() => {}); }, 300);
  };

  let last = null, ticks = 0;
  async function refresh() {
    let job;
    try { job = await api("GET", `/jobs/${enc(jobId)}${suffix}`); } catch (e) {
      // 404: none of yours has this id; 403: a user asked for someone else's namespace (?userId=). Either way, nothing shown.
      if (e.status === 404 || e.status === 403) {
        put(view, h("p", { class: "empty", id: "job-missing" }, e.status === 404 ? "No such job (or not yours)." : e.message));
        stopPage(); return;
      }
      throw e;
    }
    const key = JSON.stringify([job.status, job.progress, job.progressMessage, job.attempts, job.updatedAt]);
    // Log lines are items of their own: read them when the job changed, else every fifth look.
    ticks += 1;
    if (key !== last || ticks % 5 === 0) await loadLogs();
    if (key === last) {
      if (flowRunning && liveTag.dataset.live !== "push" && ticks % 3 === 0) await loadFlow(job);
      return;
    }
    last = key;
    const f = session.features || {};
    const actions = h("div", { class: "toolbar" },
      ["failed", "cancelled"].includes(job.status) ? change(h("button", { class: "primary", id: "retry", onclick: () => act("retry", "POST", `/jobs/${enc(jobId)}/retry${suffix}`) }, "Retry")) : null,
      ["waiting", "delayed", "active", "stalled"].includes(job.status) && !job.cancelRequested
        ? change(h("button", { class: "danger", id: "cancel", onclick: () => act("cancel", "DELETE", `/jobs/${enc(jobId)}${suffix}`) }, "Cancel")) : null,
      f.remove ? change(h("button", { class: "danger", id: "remove", onclick: async () => {
        if (await ask(`Remove job ${jobId}?`, [], "Remove", true)) { await act("remove", "DELETE", `/jobs/${enc(jobId)}?action=remove${owner ? `&${owner}` : ""}`); history.back(); }
      } }, "Remove")) : null);
    const pct = job.status === "completed" ? 100 : percent(job.progress);
    put(view, 
      h("div", { class: "panel" },
        h("div", { class: "toolbar" }, statusTag(job.status), job.cancelRequested ? h("span", { class: "tag" }, "cancel requested") : null,
          h("span", { class: "muted" }, `${job.queue} / ${job.type} · owner ${job.userId}`), h("span", { class: "grow" }), actions),
        h("div", { class: "bar big" }, h("div", { id: "progress", "data-progress": pct, style: `width:${pct}%` })),
        h("div", { class: "muted", id: "progress-label", style: "margin-top:4px" }, `${pct}%${job.progressMessage ? ` · ${job.progressMessage}` : ""}`)),
      h("div", { class: "grid" },
        h("div", { class: "panel" }, h("dl", { class: "kv" },
          ...[["attempts", `${job.attempts} of ${job.maxAttempts}${job.retries ? ` (${job.retries} manual retries)` : ""}`],
            ["priority", job.priority], ["backoff", `${job.backoff.type}, ${job.backoff.delay} ms`], ["delay", `${job.delay} ms`],
            ["created", fmtTime(job.createdAt)], ["run at", fmtTime(job.runAt)], ["started", fmtTime(job.startedAt)],
            ["completed", fmtTime(job.completedAt)], ["failed", fmtTime(job.failedAt)], ["cancelled", fmtTime(job.cancelledAt)],
            ["processing time", fmtMs(job.processingTime)], ["updated", fmtTime(job.updatedAt)]]
            .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
        h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "data"), h("pre", { id: "data" }, pretty(job.data)))),
      h("div", { class: "grid" },
        h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "result"), h("pre", { id: "result" }, pretty(job.result))),
        h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "error"), h("pre", { id: "error", style: job.error ? "color:var(--red)" : "" }, job.error || "—"))),
      h("h2", {}, "attempts"),
      h("table", { id: "history" }, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "started"), h("th", {}, "ended"), h("th", {}, "outcome"), h("th", {}, "error"))),
        h("tbody", {}, job.history.length ? job.history.map((a) => h("tr", {}, h("td", {}, a.attempt), h("td", {}, fmtTime(a.startedAt)),
          h("td", {}, fmtTime(a.endedAt)), h("td", {}, a.outcome ? statusTag(a.outcome) : statusTag("active")), h("td", {}, a.error || "")))
          : h("tr", {}, h("td", { colspan: 5, class: "empty" }, "not started yet")))),
      h("h2", {}, "logs"), logBox,
      h("h2", {}, "flow"), flowBox);
    loadFlow(job).catch((e) => put(flowBox, h("p", { class: "muted" }, e.message)));
  }
  // Live: the job's events are pushed over the API's WebSocket (README: Live events). A progress
  // event moves the bar in place; any other change re-reads the job. A quiet socket is checked
  // every 15 s. Without a WebSocket, or when it fails, the page polls: every second while the job
  // runs, every 5 s once it has ended (a retry from elsewhere shows up).
  let stopped = false, timer = null, socket = null;
  const liveTag = h("span", { id: "live", class: "live", "data-live": "" }, "");
  $("h1", main()).append(" ", liveTag);
  const showVia = (via, why) => {
    liveTag.dataset.live = via;
    liveTag.textContent = via === "push" ? "● live" : "polling";
    liveTag.title = via === "push" ? "changes are pushed over the WebSocket" : `polling${why ? `: ${why}` : ""}`;
  };
  const poll = (why) => {
    if (stopped) return;
    showVia("poll", why);
    clearTimeout(timer);
    const tick = async () => {
      try { await refresh(); } catch (e) { banner(e.message, true); }
      if (!stopped) timer = setTimeout(tick, last && FINISHED.has(JSON.parse(last)[0]) ? 5000 : 1000);
    };
    tick();
  };
  const onEvent = (event) => {
    if (event.type === "job:progress" && last && !FINISHED.has(JSON.parse(last)[0])) {
      const pct = percent(event.progress);
      const bar = $("#progress");
      if (bar) { bar.dataset.progress = pct; bar.style.width = `${pct}%`; }
      const label = $("#progress-label");
      if (label) label.textContent = `${pct}%${event.message ? ` · ${event.message}` : ""}`;
      loadLogs().catch(() => {}); // a processor logs as it reports: at most once a second (progress is coalesced)
      return;
    }
    refresh().catch((e) => banner(e.message, true));
  };
  const push = () => {
    let opened = false;
    try {
      socket = new WebSocket(`${session.websocketUrl}?token=${enc(session.token)}`);
    } catch (e) { poll(`WebSocket not available (${e.message})`); return; }
    // A socket that neither opens nor fails (a proxy holding it) gives way to polling after 5 s.
    const giveUp = setTimeout(() => { if (liveTag.dataset.live !== "push" && socket) { socket.onclose = null; socket.close(); poll("no answer from the WebSocket"); } }, 5000);
    socket.onopen = () => {
      opened = true;
      socket.send(JSON.stringify({ action: "subscribe", jobId, ...(user ? { userId: user } : {}) }));
    };
    socket.onmessage = (m) => {
      let event;
      try { event = JSON.parse(m.data); } catch { return; }
      if (event.flowId && event.type === "subscribed") return;  // the flow's subscription (loadFlow asks for it)
      if (event.type === "error" && flowAsked && liveTag.dataset.live === "push") { flowRunning = false; return; }  // flows not pushed here
      if (event.type === "flow:completed" || (event.jobId !== jobId && String(event.type).startsWith("job:"))) { reloadFlow(); return; }
      if (event.type === "subscribed") {
        clearTimeout(giveUp);
        showVia("push");
        // Subscribed first, read second: nothing written after this read is missed.
        refresh().catch((e) => banner(e.message, true));
        const check = async () => {
          try { await refresh(); } catch (e) { banner(e.message, true); }
          if (!stopped) timer = setTimeout(check, 15000);
        };
        timer = setTimeout(check, 15000);
      } else if (event.type === "error") {
        socket.onclose = null; socket.close(); poll(event.message);
      } else if (event.jobId === jobId && String(event.type).startsWith("job:")) onEvent(event);
    };
    socket.onclose = () => { clearTimeout(giveUp); if (!stopped) poll(opened ? "the WebSocket closed" : "the WebSocket could not be opened"); };
  };
  if (session.websocketUrl && "WebSocket" in window) push(); else poll("the API names no WebSocket");
  stopPage = () => {
    stopped = true; clearTimeout(timer);
    if (socket) { socket.onclose = null; socket.close(); }
  };
}

// ---- dead letters -----------------------------------------------------------------------------
function queuePicker(current, hrefOf, showDlq = false) {
  return h("div", { class: "tabs" }, session.queues.map((q) => h("a", { href: hrefOf(q.name), class: q.name === current ? "on" : "" }, q.name,
    showDlq ? h("span", { class: "count" }, q.dlqDepth) : null)));
}

function pageDlq(parts) {
  const queue = parts[1] || (session.queues[0] || {}).name;
  const selected = new Set();
  const body = h("tbody");
  const summary = h("span", { class: "muted", id: "dlq-total" }, "");
  mount(
    h("h1", {}, "Dead letters"),
    queuePicker(queue, (n) => `#/dlq/${enc(n)}`, true),
    h("div", { class: "toolbar" }, h("span", { class: "grow" }, summary),
      change(h("button", { class: "small", id: "redrive-selected", onclick: () => redrive([...selected]) }, "Redrive selected")),
      change(h("button", { class: "small", id: "redrive-all", onclick: () => redrive(null) }, "Redrive all")),
      change(h("button", { class: "small danger", id: "purge", onclick: purge }, "Purge")),
      h("button", { class: "small", onclick: () => load() }, "Refresh")),
    h("table", { id: "dead-letters" }, h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "job"), h("th", {}, "status now"),
      h("th", {}, "reason"), h("th", { class: "num" }, "receives"), h("th", {}, "dead since"))), body));

  async function load() {
    const list = await api("GET", `/queues/${enc(queue)}/dead-letters?limit=100`);
    summary.textContent = `about ${list.approximateTotal} message(s) in the dead-letter queue of ${queue}`;
    put(body, ...(list.deadLetters.length ? list.deadLetters.map((d) => h("tr", { "data-dead-letter": d.jobId || d.messageId },
      h("td", {}, d.jobId ? change(h("input", { type: "checkbox", checked: selected.has(d.jobId), onchange: (e) => e.target.checked ? selected.add(d.jobId) : selected.delete(d.jobId) })) : null),
      h("td", {}, d.jobId ? h("a", { class: "mono", href: `#/job/${enc(d.jobId)}${qs({ user: d.job ? d.job.userId : "" })}` }, d.jobId) : h("span", { class: "muted" }, "(no job id)")),
      h("td", {}, d.job ? statusTag(d.job.status) : h("span", { class: "muted" }, "removed")),
      h("td", { style: "color:var(--red)" }, d.reason || ""),
      h("td", { class: "num" }, d.receiveCount),
      h("td", { title: fmtTime(d.sentAt) }, ago(d.sentAt))))
      : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, "the dead-letter queue is empty"))]));
  }
  async function redrive(jobIds) {
    if (jobIds && !jobIds.length) { toast("select dead letters first", true); return; }
    try {
      const r = await api("POST", `/queues/${enc(queue)}/dead-letters/redrive`, jobIds ? { jobIds } : {});
      toast(`redriven ${r.redriven.length}, requeued ${r.requeued.length}, skipped ${r.skipped.length}`);
      selected.clear();
      load();
    } catch (e) { toast(e.message, true); }
  }
  async function purge() {
    if (!(await ask(`Purge every dead letter of ${queue}?`, [], "Purge", true))) return;
    try { const r = await api("DELETE", `/queues/${enc(queue)}/dead-letters`); toast(`purged ${r.purged}`); load(); } catch (e) { toast(e.message, true); }
  }
  if (!queue) { mount(h("p", { class: "empty" }, "no queues")); return; }
  stopPage = every(5000, load);
}

// ---- audit ------------------------------------------------------------------------------------
function pageAudit() {
  const body = h("tbody");
  const more = h("button", { class: "small", id: "audit-older" }, "Older");
  mount(h("h1", {}, "Audit"),
    h("p", { class: "muted" }, "Administrative actions, newest first: who, when, what, and API Gateway's request id."),
    h("table", { id: "audit" }, h("thead", {}, h("tr", {}, ["when", "who", "action", "target", "request", "body"].map((c) => h("th", {}, c)))), body),
    h("div", { class: "toolbar" }, more));
  let cursor = null;
  async function load() {
    const page = await api("GET", `/audit${qs({ limit: 50, cursor })}`);
    cursor = page.nextCursor;
    more.disabled = !cursor;
    body.append(...page.entries.map((e) => h("tr", { "data-request": e.requestId || "" },
      h("td", { title: e.at }, fmtTime(e.at)),
      h("td", {}, e.clientId ? `${e.actor} (client)` : e.actor, e.groups.length ? h("div", { class: "reasons" }, e.groups.join(", ")) : null),
      h("td", {}, h("strong", {}, e.action), h("div", { class: "reasons mono" }, e.route)),
      h("td", { class: "mono" }, Object.entries(e.target).map(([k, v]) => `${k}=${v}`).join(" ")),
      h("td", { class: "mono" }, e.requestId || "—"),
      h("td", { class: "mono" }, e.body == null ? "" : JSON.stringify(e.body).slice(0, 200)))));
    if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "no administrative actions yet")));
  }
  more.onclick = () => load().catch((e) => toast(e.message, true));
  load().catch((e) => toast(e.message, true));
}

// ---- schedules --------------------------------------------------------------------------------
function pageSchedules() {
  const body = h("tbody");
  mount(h("h1", {}, "Schedules"),
    h("table", { id: "schedules" }, h("thead", {}, h("tr", {}, ["name", "queue / type", "when", "time zone", "state", "runs", "last run", "next run", ""].map((c) => h("th", {}, c)))), body));
  const act = async (label, method, path) => {
    try { await api(method, path); toast(`${label}: done`); load(); } catch (e) { toast(e.message, true); }
  };
  async function edit(s) {
    const v = await ask(`Edit ${s.name}`, [
      { name: "cron", label: "cron (5 fields; empty for an interval)", value: s.cron || "" },
      { name: "every", label: "or every … minutes", type: "number", value: s.every ? String(s.every / 60000) : "" },
      { name: "timezone", label: "time zone (IANA)", value: s.timezone },
      { name: "limit", label: "run limit (empty: none)", type: "number", value: s.limit ?? "" },
    ], "Save");
    if (!v) return;
    const patch = { timezone: v.timezone || "UTC", limit: v.limit ? Number(v.limit) : null };
    if (v.cron) patch.cron = v.cron; else if (v.every) patch.every = Number(v.every) * 60000;
    try { await api("PATCH", `/schedules/${enc(s.name)}`, patch); toast(`${s.name} saved`); load(); } catch (e) { toast(e.message, true); }
  }
  async function load() {
    const all = [];
    let cursor = null;
    do { const page = await api("GET", `/schedules${qs({ limit: 100, cursor })}`); all.push(...page.schedules); cursor = page.nextCursor; } while (cursor);
    const canEdit = (session.features || {}).scheduleEdit;
    put(body, ...(all.length ? all.map((s) => h("tr", { "data-schedule": s.name },
      h("td", {}, h("strong", {}, s.name), s.description ? h("div", { class: "reasons" }, s.description) : null),
      h("td", {}, `${s.queue} / ${s.type}`),
      h("td", { class: "mono" }, s.cron || (s.every ? `every ${s.every / 60000} min` : s.expression)),
      h("td", {}, s.timezone),
      h("td", {}, h("span", { class: `status ${s.state === "active" ? "s-completed" : s.state === "paused" ? "s-paused" : ""}` }, s.state)),
      h("td", { class: "num" }, `${s.runCount}${s.limit ? ` / ${s.limit}` : ""}`),
      h("td", {}, s.lastJobId ? h("a", { href: `#/job/${enc(s.lastJobId)}${qs({ user: s.createdBy })}` }, ago(s.lastRunAt)) : ago(s.lastRunAt)),
      h("td", { "data-next-run": s.name, title: s.nextRunAt || "" }, fmtTime(s.nextRunAt), s.nextRunAt ? h("div", { class: "reasons" }, until(s.nextRunAt)) : null),
      h("td", {}, h("div", { class: "toolbar", style: "margin:0;flex-wrap:nowrap" },
        s.state === "active" ? change(h("button", { class: "small", onclick: () => act("pause", "POST", `/schedules/${enc(s.name)}/pause`) }, "Pause")) : null,
        s.state === "paused" ? change(h("button", { class: "small", onclick: () => act("resume", "POST", `/schedules/${enc(s.name)}/resume`) }, "Resume")) : null,
        change(h("button", { class: "small", onclick: () => act("trigger", "POST", `/schedules/${enc(s.name)}/trigger`) }, "Trigger")),
        canEdit ? change(h("button", { class: "small", "data-edit": s.name, onclick: () => edit(s) }, "Edit…")) : null,
        change(h("button", { class: "small danger", onclick: async () => {
          if (await ask(`Delete schedule ${s.name}?`, [], "Delete", true)) act("delete", "DELETE", `/schedules/${enc(s.name)}`);
        } }, "Delete"))))))
      : [h("tr", {}, h("td", { colspan: 9, class: "empty" }, "no schedules (jobq schedules add …)"))]));
  }
  stopPage = every(10000, load);
}

// ---- metrics ----------------------------------------------------------------------------------
function pageMetrics(parts, params) {
  const queue = parts[1] || (session.queues[0] || {}).name;
  const hours = Number(params.get("hours") || 24);
  const resolution = params.get("resolution") || (hours <= 6 ? "minute" : "hour");
  const view = h("div", {});
  const choice = (label, p) => h("a", { href: `#/metrics/${enc(queue)}${qs(p)}`, class: p.hours === hours && p.resolution === resolution ? "on" : "" }, label);
  mount(h("h1", {}, `Metrics · ${queue || "?"}`),
    queuePicker(queue, (n) => `#/metrics/${enc(n)}${qs({ hours, resolution })}`),
    h("div", { class: "tabs" }, choice("1 h / minute", { hours: 1, resolution: "minute" }), choice("6 h / minute", { hours: 6, resolution: "minute" }),
      choice("24 h / hour", { hours: 24, resolution: "hour" }), choice("24 h / minute", { hours: 24, resolution: "minute" })),
    view);
  if (!queue) return;
  stopPage = every(15000, async () => {
    const m = await api("GET", `/queues/${enc(queue)}/metrics${qs({ hours, resolution })}`);
    const t = m.totals;
    const card = (k, v) => h("div", { class: "card" }, h("div", { class: "v" }, v), h("div", { class: "k" }, k));
    put(view, 
      h("div", { class: "cards", id: "metric-totals" }, card("created", t.created), card("completed", t.completed), card("failed", t.failed),
        card("throughput / min", t.throughput.toFixed(2)), card("failure rate", `${(t.failureRate * 100).toFixed(1)}%`),
        card("average", fmtMs(t.averageProcessingTime)), card("p95", fmtMs(t.p95ProcessingTime))),
      h("div", { class: "grid" },
        chart("Throughput (jobs finished per interval)", m.points, [
          { key: "completed", color: "#16a34a", label: "completed" }, { key: "failed", color: "#dc2626", label: "failed" }], "bars", resolution),
        chart("Processing time (ms)", m.points, [
          { key: "p95ProcessingTime", color: "#7c3aed", label: "p95" }, { key: "averageProcessingTime", color: "#0ea5e9", label: "average" }], "lines", resolution)));
  });
}

// Inline SVG: stacked bars or lines over the points, with a y axis and a few time labels.
function chart(title, points, series, kind, resolution) {
  const NS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, text) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const W = 640, H = 220, L = 44, R = 8, T = 10, B = 24;
  const values = points.map((p) => kind === "bars" ? series.reduce((a, x) => a + (p[x.key] || 0), 0) : Math.max(...series.map((x) => p[x.key] || 0)));
  // Counts get an even whole maximum, so the middle grid line is a whole number too.
  const max = kind === "bars" ? Math.max(2, Math.ceil(Math.max(...values, 0) / 2) * 2) : Math.max(1, ...values);
  const x = (i) => L + (i + 0.5) * ((W - L - R) / Math.max(1, points.length));
  const y = (v) => H - B - (v / max) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  for (const frac of [0, 0.5, 1]) {
    const v = max * frac;
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e5e7eb" }));
    svg.append(s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7785" }, kind === "lines" ? fmtMs(v) : Math.round(v)));
  }
  const step = Math.max(1, Math.ceil(points.length / 6));
  points.forEach((p, i) => {
    if (i % step === 0) {
      const d = new Date(p.timestamp);
      const label = resolution === "hour" ? `${d.getHours()}:00` : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      svg.append(s("text", { x: x(i), y: H - 6, "text-anchor": "middle", "font-size": 11, fill: "#6b7785" }, label));
    }
  });
  if (kind === "bars") {
    const w = Math.max(1, ((W - L - R) / Math.max(1, points.length)) * 0.8);
    points.forEach((p, i) => {
      let base = 0;
      for (const ser of series) {
        const v = p[ser.key] || 0;
        if (v > 0) svg.append(s("rect", { x: x(i) - w / 2, y: y(base + v), width: w, height: y(base) - y(base + v), fill: ser.color }, undefined));
        base += v;
      }
    });
  } else {
    for (const ser of series) {
      const pts = points.map((p, i) => (p[ser.key] === null || p[ser.key] === undefined ? null : `${x(i)},${y(p[ser.key])}`)).filter(Boolean);
      if (pts.length) svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: ser.color, "stroke-width": 2 }));
      if (pts.length === 1) { const [cx, cy] = pts[0].split(","); svg.append(s("circle", { cx, cy, r: 3, fill: ser.color })); }
    }
  }
  return h("div", { class: "chart", "data-chart": kind },
    h("div", { class: "toolbar", style: "margin:0 0 6px" }, h("strong", {}, title), h("span", { class: "grow" }),
      h("span", { class: "legend" }, series.map((ser) => h("span", {}, h("i", { style: `background:${ser.color}` }), ser.label)))),
    svg);
}

document.addEventListener("DOMContentLoaded", start);
