// The router's dashboard: polls /dashboard/data and draws it; ranks a request with /route and
// explains each candidate with /explain. The caller's key stays in this tab's sessionStorage and
// goes in the Authorization header, never in a URL. Text from the router is set as text, never
// parsed as HTML.
"use strict";

const KEY_ITEM = "router-dashboard-key";
const POLL_MS = 3000;

const byId = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function headers() {
  const key = sessionStorage.getItem(KEY_ITEM);
  const sent = { "content-type": "application/json" };
  if (key) sent.authorization = "Bearer " + key;
  return sent;
}

async function call(method, path, body) {
  const reply = await fetch(path, {
    method,
    headers: headers(),
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await reply.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { json = null; }
  if (!reply.ok) {
    const message = json && json.error ? json.error.message : text;
    const error = new Error(`${reply.status}: ${message}`);
    error.status = reply.status;
    throw error;
  }
  return json;
}

// Figures as text.
const dash = "–";
const count = (n) => (n === null || n === undefined ? dash : String(Math.round(n)));
const rate = (r) => (r === null || r === undefined ? dash : (100 * r).toFixed(1) + "%");
const usd = (x) => (x === null || x === undefined ? dash : "$" + x.toFixed(x >= 1 ? 2 : 6));
const fixed = (x, digits) => (x === null || x === undefined ? dash : x.toFixed(digits));

function duration(s) {
  if (s === null || s === undefined) return dash;
  if (s === 0) return "0 s";
  if (s < 1e-3) return (s * 1e6).toFixed(1) + " µs";
  if (s < 1) return (s * 1e3).toPrecision(3) + " ms";
  return s.toPrecision(3) + " s";
}

function when(unix) {
  if (!unix) return "never";
  return new Date(unix * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function age(s) {
  if (s === null || s === undefined) return dash;
  const units = [["d", 86400], ["h", 3600], ["min", 60]];
  for (const [unit, size] of units) if (s >= size) return (s / size).toFixed(1) + " " + unit;
  return Math.round(s) + " s";
}

function table(id, head, rows) {
  const header = el("tr", {}, ...head.map(([label, cls]) => el("th", { class: cls }, label)));
  const body = rows.map(({ key, cells }) =>
    el("tr", { "data-key": key },
      ...cells.map(([value, cls, field]) => el("td", { class: cls, "data-field": field }, value))));
  byId(id).replaceChildren(header, ...body);
}

function counts(id, label, values) {
  const rows = Object.entries(values).map(([key, n]) => ({
    key, cells: [[key, null, "label"], [count(n), "num", "value"]],
  }));
  if (!rows.length) rows.push({ key: "", cells: [["none yet", "muted"], ["", ""]] });
  table(id, [[label], ["count", "num"]], rows);
}

function figures(parent, pairs) {
  parent.replaceChildren(el("div", { class: "figures" },
    ...pairs.map(([label, value, id]) =>
      el("div", { class: "figure" }, el("span", {}, label), el("b", { id }, value)))));
}

function unavailable(message) {
  const notice = byId("notice");
  notice.textContent = message;
  notice.hidden = false;
  const absent = "not available here: see above";
  for (const id of ["decisions-total", "completions-total", "failovers-total", "shed-total"]) {
    byId(id).textContent = dash;
  }
  for (const id of ["decisions-by-mode", "decisions-by-model", "completions-by-outcome",
    "answered-by-model", "failovers-by-cause", "latency", "caches", "models"]) {
    byId(id).replaceChildren(el("caption", { class: "unavailable" }, absent));
  }
  byId("spend").replaceChildren(el("p", { class: "unavailable" }, absent));
}

function drawTraffic(traffic) {
  byId("decisions-total").textContent = count(traffic.decisions);
  byId("completions-total").textContent = count(traffic.completions);
  byId("failovers-total").textContent = count(traffic.failovers);
  byId("shed-total").textContent = count(traffic.shed_requests);
  counts("decisions-by-mode", "mode", traffic.decisions_by_mode);
  counts("decisions-by-model", "model", traffic.decisions_by_model);
  counts("completions-by-outcome", "outcome", traffic.completions_by_outcome);
  counts("answered-by-model", "model", traffic.answered_by_model);
  counts("failovers-by-cause", "cause", traffic.failovers_by_cause);
}

function drawLatency(latency) {
  const names = {
    decision: "decision (cache or scorer)",
    ranking: "scorer's ranking",
    completion: "completion (its answering attempt)",
    time_to_first_token: "time to first token (streams)",
  };
  table("latency", [["of"], ["count", "num"], ["p50", "num"], ["p90", "num"], ["p99", "num"]],
    Object.entries(names).map(([key, label]) => {
      const h = latency[key];
      return {
        key, cells: [[label, "label"], [count(h.count), "num", "count"], [duration(h.p50_s), "num", "p50"],
          [duration(h.p90_s), "num", "p90"], [duration(h.p99_s), "num", "p99"]],
      };
    }));
}

function drawCaches(caches) {
  const row = (key, label, r) => ({
    key, cells: [[label], [count(r.hits), "num", "hits"], [count(r.misses), "num", "misses"],
      [rate(r.hit_rate), "num", "hit_rate"]],
  });
  const sticky = caches.sticky_sessions;
  table("caches", [["lookups"], ["hits", "num"], ["misses", "num"], ["hit rate", "num"]], [
    row("decision-l1", "decision cache, in process (L1)", caches.decision_cache.l1),
    row("decision-l2", "decision cache, Redis (L2)", caches.decision_cache.l2),
    row("response-memory", "response cache, memory", caches.response_cache.memory),
    row("response-redis", "response cache, Redis", caches.response_cache.redis),
    row("sticky", `sticky sessions (${count(sticky.moves)} moved)`, sticky),
  ]);
}

function drawSpend(spend) {
  const parent = byId("spend");
  figures(parent, [
    ["spent " + spend.day, usd(spend.spent_usd), "spend-today"],
    ["held by calls in flight", usd(spend.reserved_usd), "spend-reserved"],
    ["daily limit", spend.limit_usd === null ? "none" : usd(spend.limit_usd), "spend-limit"],
    ["answered since start", usd(spend.since_start_usd), "spend-since-start"],
  ]);
  if (spend.limit_usd) {
    const used = Math.min(1, (spend.spent_usd + spend.reserved_usd) / spend.limit_usd);
    parent.append(el("div", { class: "bar", title: rate(used) + " of the limit" },
      el("div", { style: `width: ${(100 * used).toFixed(1)}%` })));
  }
}

function drawFreeQuota(quota) {
  const parent = byId("free-quota");
  if (!quota.enabled) {
    parent.replaceChildren(el("p", { class: "muted", id: "free-off" },
      "Free variants are off (free_models = false)."));
    return;
  }
  const limit = (n) => (n > 0 ? count(n) : "no limit known");
  figures(parent, [
    ["left now", quota.left === null ? "no limit known" : count(quota.left), "free-left"],
    ["used this minute / limit", `${count(quota.used_this_minute)} / ${limit(quota.per_minute_limit)}`],
    ["used today / limit", `${count(quota.used_today)} / ${limit(quota.per_day_limit)}`],
    ["account tier", quota.tier],
  ]);
  if (quota.blocked_until * 1000 > Date.now()) {
    parent.append(el("p", { class: "open" },
      `left out of routing until ${when(quota.blocked_until)}: ${quota.blocked_reason}`));
  }
}

function drawCatalogue(catalogue) {
  const parent = byId("catalogue");
  figures(parent, [
    ["version", catalogue.version, "catalogue-version"],
    ["age", age(catalogue.age_s), "catalogue-age"],
    ["source", catalogue.source],
    ["routable by default", `${catalogue.routable} of ${catalogue.models}`, "catalogue-routable"],
    ["last refresh", when(catalogue.last_refresh_attempt)],
    ["last success", when(catalogue.last_refresh_success)],
  ]);
  if (catalogue.stale) parent.append(el("p", { class: "open" }, "stale: refreshes keep failing"));
  if (catalogue.last_refresh_error) {
    parent.append(el("p", { class: "open" }, "last error: " + catalogue.last_refresh_error));
  }
  const rules = Object.entries(catalogue.excluded_by_rule).sort((a, b) => b[1] - a[1]);
  parent.append(el("h3", {}, "What the eligibility rules keep out of default routes"),
    el("p", { id: "excluded-by-rule" },
      rules.length ? rules.map(([rule, n]) => `${rule} ${n}`).join(", ") : "nothing"));
  if (catalogue.refreshes_by_outcome) {
    const outcomes = Object.entries(catalogue.refreshes_by_outcome);
    parent.append(el("h3", {}, "Refreshes by outcome, since start (every router of this process)"),
      el("p", {}, outcomes.length ? outcomes.map(([o, n]) => `${o} ${count(n)}`).join(", ") : "none"));
  }
  if (catalogue.history) {
    parent.append(el("h3", {}, "Latest refreshes of this router"));
    const history = el("table", { id: "refresh-history" });
    parent.append(history);
    table("refresh-history", [["when"], ["outcome"], ["catalogue after"], ["why"]],
      catalogue.history.map((event) => ({
        key: event.outcome,
        cells: [[when(event.at)], [event.outcome, null, "outcome"], [event.version],
          [event.reason, "muted"]],
      })));
  }
}

let lastModels = [];
let pollTimer = null;

function drawModels() {
  const all = byId("all-models").checked;
  const filter = byId("model-filter").value.trim().toLowerCase();
  const order = { open: 0, half_open: 1, closed: 2 };
  const shown = lastModels
    .filter((m) => all || m.circuit !== "closed" || m.learned_ttft_s !== null
      || m.learned_tokens_per_s !== null || m.decisions > 0 || m.answered > 0)
    .filter((m) => !filter || m.id.toLowerCase().includes(filter))
    .sort((a, b) => order[a.circuit] - order[b.circuit] || b.decisions - a.decisions
      || a.id.localeCompare(b.id));
  const rows = shown.map((m) => ({
    key: m.id,
    cells: [
      [m.id, null, "model"],
      [m.circuit.replace("_", "-"), m.circuit, "circuit"],
      [m.open_until ? when(m.open_until) : "", "muted", "open_until"],
      [duration(m.learned_ttft_s), "num", "learned_ttft"],
      [duration(m.catalogue_ttft_s), "num muted", "catalogue_ttft"],
      [fixed(m.learned_tokens_per_s, 1), "num", "learned_tokens_per_s"],
      [fixed(m.catalogue_tokens_per_s, 1), "num muted", "catalogue_tokens_per_s"],
      [m.catalogue_source, "muted", "catalogue_source"],
      [m.latency_source, null, "latency_source"],
      [count(m.decisions), "num", "decisions"],
      [count(m.answered), "num", "answered"],
      [m.free_left === null ? "" : count(m.free_left), "num", "free_left"],
    ],
  }));
  table("models", [["model"], ["circuit"], ["open until"], ["learned TTFT", "num"],
    ["catalogue TTFT", "num"], ["learned tok/s", "num"], ["catalogue tok/s", "num"],
    ["catalogue's source"], ["figures in use"], ["decisions", "num"], ["answered", "num"],
    ["free left", "num"]], rows);
  byId("models").prepend(el("caption", { class: "muted" },
    `${shown.length} of ${lastModels.length} models`));
}

function draw(data) {
  const where = data.local ? "router in this process" : "remote router";
  byId("status").textContent = `${where}; updated ${when(data.generated_at)}, every ${POLL_MS / 1000} s`;
  byId("status").className = "";
  drawCatalogue(data.catalogue);
  drawFreeQuota(data.free_quota);
  if (!data.local) {
    unavailable(data.unavailable);
    return;
  }
  byId("notice").hidden = true;
  drawTraffic(data.traffic);
  drawLatency(data.latency);
  drawCaches(data.caches);
  drawSpend(data.spend);
  lastModels = data.models;
  drawModels();
}

async function poll() {
  try {
    draw(await call("GET", "/dashboard/data"));
  } catch (error) {
    const status = byId("status");
    status.className = "error";
    status.textContent = error.status === 401
      ? `This router needs an API key: enter one above (${error.message}).`
      : `Could not read the figures: ${error.message}`;
  }
  // A poll started by a new key may overlap the one in flight: one timer remains.
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, POLL_MS);
}

// The decision form: a RouteRequest in the REST API's JSON.
function decisionRequest(form) {
  const values = new FormData(form);
  const text = (name) => String(values.get(name) || "").trim();
  const number = (name) => (text(name) === "" ? null : Number(text(name)));
  const list = (name) => text(name).split(",").map((s) => s.trim()).filter(Boolean);
  const request = { top_k: number("top_k") || 5, constraints: {} };
  if (text("mode") === "weights") {
    request.weights = {
      latency: number("w_latency") || 0, cost: number("w_cost") || 0, quality: number("w_quality") || 0,
    };
  } else {
    request.mode = text("mode");
  }
  if (number("prompt_tokens") || number("output_tokens")) {
    request.profile = {
      prompt_tokens: number("prompt_tokens") || 0, output_tokens: number("output_tokens") || 0,
    };
  }
  const constraints = request.constraints;
  if (number("min_context_tokens")) constraints.min_context_tokens = number("min_context_tokens");
  for (const name of ["max_prompt_price_per_mtok", "max_completion_price_per_mtok",
    "max_request_cost_usd", "max_ttft_seconds"]) {
    if (number(name) !== null) constraints[name] = number(name);
  }
  if (list("allow_models").length) constraints.allow_models = list("allow_models");
  if (list("deny_models").length) constraints.deny_models = list("deny_models");
  if (text("free") !== "any") constraints.free = text("free");
  return request;
}

async function decide(event) {
  event.preventDefault();
  const request = decisionRequest(event.target);
  const out = byId("decision");
  byId("decision-error").textContent = "";
  out.replaceChildren(el("p", { class: "muted" }, "ranking…"));
  try {
    const decision = await call("POST", "/route", request);
    const { top_k, ...routing } = request;
    const explained = await Promise.all(decision.candidates.map((c) =>
      call("POST", "/explain", { ...routing, model: c.model })));
    drawDecision(decision, explained);
  } catch (error) {
    out.replaceChildren();
    byId("decision-error").textContent = error.message;
  }
}

function drawDecision(decision, explained) {
  const w = decision.weights;
  const removed = Object.entries(decision.removed_by_constraint || {})
    .map(([rule, n]) => `${rule} ${n}`).join(", ");
  const head = el("p", {},
    `weights latency ${fixed(w.latency, 2)}, cost ${fixed(w.cost, 2)}, quality ${fixed(w.quality, 2)}; `
    + `${decision.eligible_models} eligible on catalogue ${decision.catalogue_version}`
    + (removed ? `; removed: ${removed}` : ""));
  const columns = ["#", "model", "score", "latency", "cost", "quality", "exp. time", "exp. cost",
    "latency figures", "quality figure"];
  const rows = [el("tr", {}, ...columns.map((c, i) => el("th", { class: i > 1 && i < 8 ? "num" : null }, c)))];
  decision.candidates.forEach((c, i) => {
    rows.push(el("tr", { "data-model": c.model, class: "candidate" },
      el("td", {}, i + 1), el("td", {}, c.model), el("td", { class: "num" }, fixed(c.score, 3)),
      el("td", { class: "num" }, fixed(c.terms.latency, 3)),
      el("td", { class: "num" }, fixed(c.terms.cost, 3)),
      el("td", { class: "num" }, fixed(c.terms.quality, 3)),
      el("td", { class: "num" }, duration(c.expected_latency_seconds) + (c.latency_estimated ? "*" : "")),
      el("td", { class: "num" }, usd(c.expected_cost_usd)),
      el("td", { class: "muted" }, c.latency_source),
      el("td", { class: "muted" }, c.quality_source + (c.quality_estimated ? "*" : ""))));
    rows.push(el("tr", { class: "explanation-row" },
      el("td", {}), el("td", { colspan: columns.length - 1, class: "explanation" },
        explained[i].summary.join("\n"))));
  });
  byId("decision").replaceChildren(head, el("table", { id: "ranking" }, ...rows),
    el("p", { class: "muted" }, "* estimated: a prior rather than a measurement"));
}

byId("api-key").value = sessionStorage.getItem(KEY_ITEM) || "";
byId("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = byId("api-key").value.trim();
  if (key) sessionStorage.setItem(KEY_ITEM, key); else sessionStorage.removeItem(KEY_ITEM);
  poll();
});
byId("all-models").addEventListener("change", drawModels);
byId("model-filter").addEventListener("input", drawModels);
byId("decision-form").addEventListener("submit", decide);
const modeField = byId("decision-form").elements.namedItem("mode");
const weighted = () => {
  for (const name of ["w_latency", "w_cost", "w_quality"]) {
    byId("decision-form").elements.namedItem(name).disabled = modeField.value !== "weights";
  }
};
modeField.addEventListener("change", weighted);
weighted();
poll();
