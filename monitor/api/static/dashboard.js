// incident-monitor dashboard: plain JavaScript and inline SVG, no build step, nothing fetched from elsewhere.
// Every text that comes from the store is put into the page with textContent (never as HTML), so a post
// cannot inject markup.
"use strict";

const TOKEN_KEY = "incident-monitor-token";
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#5c940d", "#495057"];
const state = { alerts: [], keys: [], selected: null, cursor: null, search: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  const response = await fetch(url, { headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) } });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("the token was not accepted");
    throw new Error("unauthorized");
  }
  const body = await response.json();
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => `${d.loc.at(-1)}: ${d.msg}`).join("; ") : body.detail;
    throw new Error(detail || response.statusText);
  }
  return body;
}

function showLogin(message) {
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  status(message || "", Boolean(message));
  $("token").focus();
}

// --- alerts -----------------------------------------------------------------------------------------

function alertId(a) { return `${a.kind}:${a.key}`; }

async function loadAlerts() {
  const body = await api("/api/alerts", { status: $("alert-status").value, limit: 200 });
  state.alerts = body.items;
  const list = $("alerts");
  list.replaceChildren();
  for (const a of state.alerts) {
    const item = el("li", { "data-alert": alertId(a), "data-id": String(a.id) });
    item.append(el("span", { class: "badge " + a.status }, a.status), el("strong", {}, `${a.kind} ${a.key}`),
      el("span", { class: "meta" }, `  ${fmt(a.opened_at || a.first_seen)} · ${a.max_count} reporters at most`));
    item.addEventListener("click", () => { location.hash = "alert=" + encodeURIComponent(alertId(a)); });
    list.append(item);
  }
  if (!state.alerts.length) list.append(el("li", { class: "meta" }, "no alerts"));
}

function openAlert(id) {
  const candidates = state.alerts.filter((a) => alertId(a) === id || String(a.id) === id);
  const a = candidates[0];
  if (!a) { status(`alert ${id} not found`, true); return; }
  state.selected = a;
  for (const li of $("alerts").children) li.classList.toggle("selected", li.dataset.id === String(a.id));
  $("alert-detail").hidden = false;
  $("alert-title").textContent = `${a.kind} ${a.key} — ${a.status}`;
  const body = $("alert-events").tBodies[0];
  body.replaceChildren();
  for (const e of a.events) {
    const row = el("tr");
    for (const v of [e.event, fmt(e.at), e.count, e.expected, e.score]) row.append(el("td", {}, v === undefined ? "" : String(v)));
    body.append(row);
  }
  const samples = $("alert-samples");
  samples.replaceChildren();
  for (const p of a.sample_posts) {
    const li = el("li");
    li.append(el("div", { class: "meta" }, `${p.key} · ${fmt(p.created_at)}`), el("div", {}, p.text));
    samples.append(li);
  }
  const key = a.kind === "overall" ? "overall" : alertId(a);
  // a source alert (the bot's own: a collector went silent) has no count series to draw
  if (a.kind !== "source" && !state.keys.includes(key)) state.keys.unshift(key);
  drawChart();
  $("alert-detail").scrollIntoView({ block: "nearest" });
}

// --- chart ------------------------------------------------------------------------------------------

async function drawChart() {
  const keys = state.keys.slice(0, COLORS.length);
  // Around the selected alert: a day before its first report to six hours after it resolved (or the latest data).
  const range = {};
  if (state.selected) {
    const a = state.selected;
    range.since = new Date(Date.parse(a.first_seen) - 24 * 3600e3).toISOString();
    if (a.resolved_at) range.until = new Date(Date.parse(a.resolved_at) + 6 * 3600e3).toISOString();
  }
  const results = await Promise.all(keys.map((key) => api("/api/counts", { key, bucket: "1h", ...range }).catch((err) => {
    status(`${key}: ${err.message}`, true);
    return null;
  })));
  const series = results.map((r, i) => r && { key: keys[i], points: r.series, color: COLORS[i] }).filter(Boolean);
  const svg = $("chart");
  svg.replaceChildren();
  $("legend").replaceChildren();
  const all = series.flatMap((s) => s.points);
  if (!all.length) { svg.append(el("svg:text", { x: 20, y: 30, class: "label" }, "no counts yet")); return; }
  const times = all.map((p) => Date.parse(p.t));
  const t0 = Math.min(...times), t1 = Math.max(...times) + 3600e3;
  const ymax = Math.max(1, ...all.map((p) => Math.max(p.count, p.expected || 0)));
  const W = 900, H = 260, L = 36, B = 22, T = 8;
  const x = (t) => L + (W - L - 6) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => H - B - (H - B - T) * v / ymax;
  // alert episodes first, under the lines
  for (const a of state.alerts) {
    const key = a.kind === "overall" ? "overall" : alertId(a);
    if (!keys.includes(key)) continue;
    const start = Date.parse(a.opened_at || a.first_seen);
    const end = a.resolved_at ? Date.parse(a.resolved_at) : t1;
    if (end < t0 || start > t1) continue;
    const rect = el("svg:rect", { class: "episode" + (state.selected && state.selected.id === a.id ? " selected" : ""),
      x: x(Math.max(start, t0)), y: T, width: Math.max(2, x(Math.min(end, t1)) - x(Math.max(start, t0))), height: H - B - T,
      "data-alert": alertId(a) });
    rect.append(el("svg:title", {}, `${alertId(a)} ${a.status}`));
    svg.append(rect);
  }
  svg.append(el("svg:line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }),
    el("svg:line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    el("svg:text", { x: 4, y: T + 10, class: "label" }, String(Math.round(ymax * 10) / 10)),
    el("svg:text", { x: 4, y: H - B, class: "label" }, "0"),
    el("svg:text", { x: L, y: H - 6, class: "label" }, fmt(new Date(t0).toISOString())),
    el("svg:text", { x: W - 150, y: H - 6, class: "label" }, fmt(new Date(t1).toISOString())));
  for (const s of series) {
    const pts = s.points.map((p) => `${x(Date.parse(p.t)).toFixed(1)},${y(p.count).toFixed(1)}`).join(" ");
    svg.append(el("svg:polyline", { class: "series", points: pts, stroke: s.color, "data-key": s.key }));
    if (s.points.some((p) => p.expected !== null)) {
      const ex = s.points.map((p) => `${x(Date.parse(p.t)).toFixed(1)},${y(p.expected || 0).toFixed(1)}`).join(" ");
      svg.append(el("svg:polyline", { class: "expected", points: ex, stroke: s.color }));
    }
    const item = el("span");
    const swatch = el("i");
    swatch.style.background = s.color;
    item.append(swatch, document.createTextNode(`${s.key} (dashed: expected)`));
    $("legend").append(item);
  }
  $("chart-title").textContent = `${fmt(new Date(t0).toISOString())} – ${fmt(new Date(t1).toISOString())}`;
}

// --- search -----------------------------------------------------------------------------------------

function highlighted(text, spans) {
  const frag = document.createDocumentFragment();
  const chars = Array.from(text); // spans count code points, as Python does
  let at = 0;
  for (const [start, end] of spans || []) {
    if (start > at) frag.append(document.createTextNode(chars.slice(at, start).join("")));
    frag.append(el("mark", {}, chars.slice(start, end).join("")));
    at = end;
  }
  if (at < chars.length) frag.append(document.createTextNode(chars.slice(at).join("")));
  return frag;
}

async function runSearch(more) {
  if (!more) {
    state.search = { q: $("q").value.trim(), broker: $("broker").value.trim(), order: $("order").value };
    state.cursor = null;
    $("results").replaceChildren();
  }
  try {
    const body = await api("/api/posts", { ...state.search, limit: 20, cursor: state.cursor });
    for (const p of body.items) {
      const li = el("li", { class: "result" });
      const meta = `${p.source}:${p.id} · ${fmt(p.created_at)} · ${p.label || "unlabelled"}` +
        (p.brokers.length ? " · " + p.brokers.join(", ") : "") + (p.tickers.length ? " · " + p.tickers.join(", ") : "");
      const textDiv = el("div", { class: "text" });
      textDiv.append(highlighted(p.text, p.highlights));
      li.append(el("div", { class: "meta" }, meta), textDiv);
      $("results").append(li);
    }
    state.cursor = body.next_cursor;
    $("more").hidden = !state.cursor;
    $("search-info").textContent = `${$("results").children.length} posts shown` + (state.cursor ? " (more available)" : "");
    $("search-info").className = "";
  } catch (err) {
    $("search-info").textContent = err.message;
    $("search-info").className = "error";
  }
}

// --- routing and start ------------------------------------------------------------------------------

function fmt(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString("ja-JP", { timeZone: "Asia/Tokyo", dateStyle: "short", timeStyle: "short" }) + " JST";
}

function route() {
  // #alert=KIND:KEY (or an alert id); the Slack messages' ?broker=NAME&since=... links land on that broker's alert.
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("alert")) return openAlert(hash.get("alert"));
  const query = new URLSearchParams(location.search);
  for (const kind of ["broker", "ticker"]) {
    if (query.get(kind)) {
      if (kind === "broker") $("broker").value = query.get(kind);
      return openAlert(`${kind}:${query.get(kind)}`);
    }
  }
}

async function start() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin();
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  try {
    await api("/api/posts", { limit: 1 });
    status("connected");
    await loadAlerts();
    if (!state.keys.length) {
      const brokers = [...new Set(state.alerts.filter((a) => a.kind === "broker").map((a) => alertId(a)))];
      state.keys = brokers.length ? brokers.slice(0, 4) : ["overall"];
    }
    await drawChart();
    route();
    document.body.dataset.ready = "true";
  } catch (err) {
    if (err.message !== "unauthorized") status(err.message, true);
  }
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  start();
});
$("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(); });
$("search").addEventListener("submit", (e) => { e.preventDefault(); runSearch(false); });
$("more").addEventListener("click", () => runSearch(true));
$("alert-status").addEventListener("change", async () => { await loadAlerts(); await drawChart(); });
$("add-key").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("key-input").value.trim();
  if (key && !state.keys.includes(key)) state.keys.push(key);
  $("key-input").value = "";
  drawChart();
});
window.addEventListener("hashchange", route);
start();
