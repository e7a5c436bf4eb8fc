// OptiSync HQ dashboard: polls /v1/overview and renders cards, inline-SVG charts and tables.
// Plain browser JavaScript, no libraries.
"use strict";

const CONFIG = JSON.parse(document.getElementById("config").textContent);
const T = {
  en: {
    views: "Availability views", requested: "Requests", confirmed: "Confirmed",
    conversion: "Conversion", checked_in: "Attended", attendance: "Attendance",
    rejected: "Rejected", cancelled: "Cancellations", cancellation_rate: "Cancellation rate",
    cancelled_late: "Late cancellations", no_show: "No-shows", no_show_rate: "No-show rate",
    reassigned: "Reassigned", displaced: "Displaced", waitlist_offered: "Waitlist offers",
    waitlist_filled: "Waitlist fills", waitlist_fill_rate: "Waitlist fill rate",
    delivery_success: "Notifications delivered", avg_rating: "Average rating",
    store: "Store", region: "Region", period: "Period", none: "none", z: "z",
  },
  "zh-CN": {
    views: "可预约查看", requested: "预约请求", confirmed: "已确认", conversion: "转化率",
    checked_in: "已到店", attendance: "到店率", rejected: "被拒", cancelled: "取消",
    cancellation_rate: "取消率", cancelled_late: "临时取消", no_show: "爽约",
    no_show_rate: "爽约率", reassigned: "改派", displaced: "需改期", waitlist_offered: "候补邀约",
    waitlist_filled: "候补成功", waitlist_fill_rate: "候补成功率",
    delivery_success: "通知送达率", avg_rating: "平均评分", store: "门店", region: "区域",
    period: "周期", none: "无", z: "z",
  },
};
const L = T[CONFIG.lang] || T.en;
const CARDS = [
  ["views", "count"], ["requested", "count"], ["confirmed", "count"], ["conversion", "rate"],
  ["checked_in", "count"], ["attendance", "rate"], ["cancelled", "count"],
  ["cancellation_rate", "rate"], ["no_show", "count"], ["no_show_rate", "rate"],
  ["rejected", "count"], ["reassigned", "count"], ["displaced", "count"],
  ["waitlist_offered", "count"], ["waitlist_filled", "count"], ["waitlist_fill_rate", "rate"],
  ["delivery_success", "rate"], ["avg_rating", "rating"],
];
const TABLE_COLUMNS = [
  ["requested", "count"], ["confirmed", "count"], ["conversion", "rate"],
  ["checked_in", "count"], ["cancelled", "count"], ["cancellation_rate", "rate"],
  ["no_show", "count"], ["no_show_rate", "rate"], ["waitlist_filled", "count"],
  ["avg_rating", "rating"],
];
const SVG = "http://www.w3.org/2000/svg";
const locale = CONFIG.lang === "zh-CN" ? "zh-CN" : "en";
const form = document.getElementById("filters");
let storeNames = {};

function fmt(value, kind) {
  if (value === null || value === undefined) return "–";
  if (kind === "rate") return (value * 100).toFixed(1) + "%";
  if (kind === "rating") return value.toFixed(2);
  return Number(value).toLocaleString(locale);
}

function valueOf(row, name) {
  if (name in row.rates) return row.rates[name];
  return row.counts[name] || 0;
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function params() {
  const p = new URLSearchParams(location.search);
  const out = new URLSearchParams();
  for (const name of ["region", "store_id", "from", "to", "granularity"]) {
    if (p.get(name)) out.set(name, p.get(name));
  }
  return out;
}

function syncForm() {
  const p = new URLSearchParams(location.search);
  for (const field of form.elements) {
    if (field.name && p.get(field.name) !== null) field.value = p.get(field.name);
  }
}

function setParam(name, value) {
  const p = new URLSearchParams(location.search);
  if (value) p.set(name, value); else p.delete(name);
  if (name === "region") p.delete("store_id");
  history.replaceState(null, "", "?" + p.toString());
  syncForm();
  refresh();
}

form.addEventListener("change", (event) => setParam(event.target.name, event.target.value));
for (const a of document.querySelectorAll(".langs a")) {
  a.addEventListener("click", (event) => {
    event.preventDefault();
    const p = new URLSearchParams(location.search);
    p.set("lang", a.dataset.lang);
    location.search = p.toString();
  });
}

function renderCards(totals) {
  const box = document.getElementById("cards");
  box.replaceChildren();
  for (const [name, kind] of CARDS) {
    const value = valueOf(totals, name);
    const card = el("div", { class: "card", "data-kpi": name });
    card.append(el("span", { class: "label" }, L[name]));
    card.append(el("span", { class: "value", "data-raw": value === null ? "" : String(value) },
      fmt(value, kind)));
    box.append(card);
  }
}

function lineChart(target, rows, series, kind) {
  const box = document.getElementById(target);
  const width = Math.max(box.clientWidth || 600, 280), height = 220;
  const pad = { l: 48, r: 12, t: 12, b: 28 };
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const values = rows.flatMap((r) => series.map(([n]) => valueOf(r, n) || 0));
  const max = Math.max(kind === "rate" ? 0.01 : 1, ...values);
  const x = (i) => pad.l + (rows.length < 2 ? 0.5 : i / (rows.length - 1)) *
    (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / max) * (height - pad.t - pad.b);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  for (const f of [0, 0.5, 1]) {
    add("line", { x1: pad.l, x2: width - pad.r, y1: y(max * f), y2: y(max * f), class: "grid" });
    add("text", { x: pad.l - 6, y: y(max * f) + 4, class: "axis", "text-anchor": "end" },
      fmt(max * f, kind === "rate" ? "rate" : "count"));
  }
  const step = Math.max(1, Math.ceil(rows.length / 7));
  rows.forEach((r, i) => {
    if (i % step === 0) {
      add("text", { x: x(i), y: height - 8, class: "axis", "text-anchor": "middle" },
        r.period.slice(5) || r.period);
    }
  });
  series.forEach(([name], s) => {
    const points = rows.map((r, i) => `${x(i).toFixed(1)},${y(valueOf(r, name) || 0).toFixed(1)}`);
    add("polyline", { points: points.join(" "), class: `line s${s}` });
    if (rows.length <= 45) {  // markers keep a single period (one point) visible
      rows.forEach((r, i) => add("circle", { cx: x(i), cy: y(valueOf(r, name) || 0), r: 3,
        class: `point s${s}` }));
    }
  });
  const legend = el("div", { class: "legend" });
  series.forEach(([name], s) => legend.append(el("span", { class: `key s${s}` }, L[name])));
  box.replaceChildren(svg, legend);
}

function renderTable(id, rows, firstHeader, onPick, label) {
  const table = document.getElementById(id);
  table.replaceChildren();
  const head = el("tr");
  head.append(el("th", {}, firstHeader));
  for (const [name] of TABLE_COLUMNS) head.append(el("th", {}, L[name]));
  table.append(el("thead"));
  table.tHead.append(head);
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr", { "data-key": row.key });
    const first = el("td", {});
    const link = el("a", { href: "#" }, label(row));
    link.addEventListener("click", (event) => { event.preventDefault(); onPick(row); });
    first.append(link);
    tr.append(first);
    for (const [name, kind] of TABLE_COLUMNS) {
      const value = valueOf(row, name);
      tr.append(el("td", { "data-kpi": name, "data-raw": value === null ? "" : String(value) },
        fmt(value, kind)));
    }
    body.append(tr);
  }
  table.append(body);
}

function renderList(id, items, show) {
  const list = document.getElementById(id);
  list.replaceChildren();
  if (!items.length) list.append(el("li", { class: "muted" }, L.none));
  for (const item of items) list.append(el("li", { "data-store": item.store_id }, show(item)));
}

function render(data) {
  renderCards(data.totals);
  lineChart("chart-volume", data.series,
    [["requested"], ["confirmed"], ["cancelled"], ["no_show"]], "count");
  lineChart("chart-rates", data.series,
    [["conversion"], ["cancellation_rate"], ["no_show_rate"]], "rate");
  renderTable("regions", data.by_region, L.region, (r) => setParam("region", r.key), (r) => r.key);
  renderTable("stores", data.by_store, L.store, (r) => setParam("store_id", r.key),
    (r) => storeNames[r.key] || r.key);
  const name = (s) => storeNames[s.store_id] || s.store_id;
  renderList("best-conversion", data.best_conversion, (s) => `${name(s)} ${fmt(s.value, "rate")}`);
  renderList("worst-cancellation", data.worst_cancellation,
    (s) => `${name(s)} ${fmt(s.value, "rate")}`);
  const abnormal = [
    ...data.abnormal_cancellation.map((a) => [a, "cancellation_rate"]),
    ...data.abnormal_no_show.map((a) => [a, "no_show_rate"]),
  ];
  renderList("abnormal", abnormal.map(([a]) => a), (a) => {
    const metric = abnormal.find(([b]) => b === a)[1];
    return `${name(a)}: ${L[metric]} ${fmt(a.value, "rate")} (${L.z} ${a.z.toFixed(1)})`;
  });
  const p = params();
  p.set("group_by", "store");
  document.getElementById("csv").href = "/v1/kpis.csv?" + p.toString();
  document.getElementById("updated").textContent = new Date().toLocaleTimeString(locale);
  document.body.dataset.loaded = "true";
}

async function loadStores() {
  const response = await fetch("/v1/stores");
  if (!response.ok) return;
  const stores = await response.json();
  storeNames = Object.fromEntries(stores.map((s) => [s.store_id, s.name]));
  const regionSelect = form.elements.region, storeSelect = form.elements.store_id;
  const regions = [...new Set(stores.map((s) => s.region).filter(Boolean))].sort();
  for (const r of regions) {
    if (![...regionSelect.options].some((o) => o.value === r)) {
      regionSelect.append(el("option", { value: r }, r));
    }
  }
  for (const s of stores) {
    if (![...storeSelect.options].some((o) => o.value === s.store_id)) {
      const label = s.name === s.store_id ? s.store_id : `${s.name} (${s.store_id})`;
      storeSelect.append(el("option", { value: s.store_id }, label));
    }
  }
  syncForm();
}

let inFlight = false;
async function refresh() {
  if (inFlight) return;
  inFlight = true;
  const dot = document.getElementById("live");
  try {
    const response = await fetch("/v1/overview?" + params().toString());
    if (!response.ok) throw new Error(String(response.status));
    const data = await response.json();
    if (!form.elements.from.value) form.elements.from.value = data.date_from;
    if (!form.elements.to.value) form.elements.to.value = data.date_to;
    render(data);
    dot.className = "dot ok";
  } catch (error) {
    dot.className = "dot down";
  } finally {
    inFlight = false;
  }
}

syncForm();
loadStores().then(refresh);
setInterval(refresh, CONFIG.refreshMs);
setInterval(loadStores, 30000);
