// Front-desk console: today's/tomorrow's bookings per optometrist, free times, actions, live.
"use strict";
const $ = (id) => document.getElementById(id);
const store = BOOT.store;
const sid = encodeURIComponent(store.store_id);
const state = { offset: 0, bookings: new Map(), exam: null, moving: null, walkin: null, reload: null, waitlistReloads: [] };

const day = () => localDate(store.timezone, state.offset);
const optName = (id) => (store.optometrists || {})[id] || id;
const examName = (code) => ((store.exam_types || []).find((e) => e.code === code) || { name: code }).name;

async function loadBookings() {
  const shown = day();
  const found = new Map();
  let cursor = null;
  do {
    const params = new URLSearchParams({ date: shown, limit: "200" });
    if (cursor) params.set("cursor", cursor);
    const res = await api("GET", `/v1/stores/${sid}/bookings?${params}`);
    if (!res.ok) { showMessage(problemText(res.body)); return; }
    res.body.items.forEach((b) => found.set(b.booking_id, b));
    cursor = res.body.next_cursor;
  } while (cursor);
  if (shown !== day()) return; // the tab changed meanwhile
  // Keep what the live feed and the actions brought that MongoDB does not have yet.
  for (const [id, b] of state.bookings) if (wallDate(b.local_start) === shown) found.set(id, lastChanged(found.get(id), b));
  state.bookings = found;
  renderTimeline();
  markInteractive();
}

function renderTimeline() {
  const lanes = new Map(Object.keys(store.optometrists || {}).map((id) => [id, []]));
  for (const b of state.bookings.values()) {
    if (wallDate(b.local_start) !== day()) continue;
    if (!lanes.has(b.optometrist_id)) lanes.set(b.optometrist_id, []);
    lanes.get(b.optometrist_id).push(b);
  }
  const box = $("timeline");
  box.replaceChildren();
  for (const [opt, items] of lanes) {
    items.sort((a, b) => a.slot_start.localeCompare(b.slot_start));
    const lane = el("div", { class: "lane", dataset: { optometristId: opt } }, el("h3", {}, optName(opt)));
    let lastEnd = null;
    for (const b of items) {
      const active = b.status !== "cancelled" && b.status !== "displaced";
      if (active && lastEnd && wallTime(b.local_start) > lastEnd) {
        lane.append(el("div", { class: "gap" }, `${t("free")} ${lastEnd}–${wallTime(b.local_start)}`));
      }
      lane.append(bookingCard(b));
      if (active) lastEnd = wallTime(b.local_end);
    }
    if (!items.length) lane.append(el("p", { class: "muted" }, t("no_bookings")));
    box.append(lane);
  }
  if (!lanes.size) box.append(el("p", { class: "muted" }, t("no_bookings")));
}

function bookingCard(b) {
  const actions = [];
  const act = (key, path, body) => el("button", { type: "button", class: `act-${key}`, onclick: () => action(b, path, body) }, t(key));
  if (b.status === "confirmed") {
    actions.push(act("check_in", "check-in", {}), act("no_show", "no-show", {}),
      el("button", { type: "button", class: "act-move", onclick: () => startMove(b) }, t("move")),
      act("cancel", "cancel", { by: "store", reason: "cancelled by the front desk" }));
  } else if (b.status === "checked_in") {
    actions.push(act("complete", "complete", {}));
  }
  return el("div", { class: `booking ${b.status}${b.fresh ? " fresh" : ""}`, dataset: { bookingId: b.booking_id, status: b.status } },
    el("div", {}, el("strong", { class: "time" }, `${wallTime(b.local_start)}–${wallTime(b.local_end)}`), " ",
      el("span", { class: "customer" }, (b.customer && b.customer.name) || b.customer_ref),
      el("span", { class: "badge" }, b.channel), el("span", { class: "badge status" }, statusText(b.status))),
    el("div", { class: "muted" }, examName(b.exam_type)),
    actions.length ? el("div", { class: "actions" }, actions) : null);
}

async function action(b, path, body) {
  const res = await settle(await api("POST", `/v1/bookings/${encodeURIComponent(b.booking_id)}/${path}`, body));
  if (res.ok && res.body.booking_id) { upsert(res.body); return; }
  showMessage(problemText(res.body));
}

function upsert(b, fresh) {
  // A stale answer must not overwrite a newer state from the live feed.
  if (lastChanged(b, state.bookings.get(b.booking_id)) !== b) return;
  state.bookings.set(b.booking_id, Object.assign({}, b, { fresh: !!fresh }));
  renderTimeline();
}

const slotsTurn = latestOnly();

async function loadSlots() {
  const latest = slotsTurn();
  const box = $("slots");
  if (!state.exam) return;
  const params = new URLSearchParams({ date: day(), exam_type: state.exam });
  const res = await api("GET", `/v1/stores/${sid}/availability?${params}`);
  if (!latest()) return; // a newer choice asked again meanwhile
  if (!res.ok) { box.replaceChildren(el("p", { class: "muted" }, problemText(res.body))); return; }
  const now = Date.now();
  const slots = res.body.slots.filter((s) => s.free_count > 0 && Date.parse(s.start_utc) > now);
  box.replaceChildren(...(slots.length ? slots.map((s) => el("button", {
    type: "button", class: "slot", dataset: { start: s.start }, title: `${s.free_count} ${t("free")}`,
    onclick: () => pickSlot(s.start),
  }, s.local_time)) : [el("p", { class: "muted" }, t("no_slots"))]));
}

function startMove(b) {
  state.moving = b;
  if (state.exam !== b.exam_type) { state.exam = b.exam_type; $("exam").value = b.exam_type; loadSlots(); }
  $("moving").textContent = `${t("moving")} ${(b.customer && b.customer.name) || ""} ${wallTime(b.local_start)}`;
  $("moving").hidden = false;
  $("walkin").hidden = true;
}

async function pickSlot(start) {
  if (state.moving) {
    const b = state.moving;
    state.moving = null;
    $("moving").hidden = true;
    const res = await settle(await api("POST", `/v1/bookings/${encodeURIComponent(b.booking_id)}/reschedule`, { slot_start: start }));
    if (res.ok && res.body.booking_id) upsert(res.body); else showMessage(problemText(res.body));
    loadSlots();
    return;
  }
  state.walkin = start;
  $("walkin-slot").textContent = `${examName(state.exam)} · ${wallDate(start)} ${wallTime(start)}`;
  $("walkin").hidden = false;
}

async function bookWalkin(ev) {
  ev.preventDefault();
  const res = await settle(await api("POST", "/pages/api/bookings", {
    store_id: store.store_id, exam_type: state.exam, slot_start: state.walkin,
    name: $("w-name").value, phone: $("w-phone").value, locale: LOCALE, channel: $("w-channel").value,
  }));
  if (res.ok && res.body.booking_id && res.body.local_start) {
    upsert(res.body, true);
    $("walkin").hidden = true;
    $("w-name").value = ""; $("w-phone").value = "";
    showMessage(`${wallTime(res.body.local_start)} ${(res.body.customer || {}).name || ""} ✓`, "info");
  } else if (res.body.code === "slot_taken") {
    showMessage(t("taken"));
  } else {
    showMessage(problemText(res.body));
  }
  loadSlots();
}

async function loadWaitlist() {
  const box = $("waitlist");
  const res = await api("GET", `/v1/stores/${sid}/waitlist?${new URLSearchParams({ date: day() })}`);
  if (!res.ok) { box.replaceChildren(el("p", { class: "muted" }, t("waitlist_unavailable"))); return; }
  const entries = res.body.entries || [];
  if (!entries.length) { box.replaceChildren(el("p", { class: "muted" }, t("no_bookings"))); return; }
  box.replaceChildren(el("ul", { class: "messages" }, entries.map((e) => el("li", { class: "wl-entry", dataset: { entryId: e.waitlist_entry_id, status: e.status } },
    el("strong", {}, (e.customer && e.customer.name) || e.customer_ref), el("span", { class: "badge" }, e.status),
    el("div", { class: "muted" }, `${examName(e.exam_type)} · ${e.date_from}${e.date_to !== e.date_from ? "–" + e.date_to : ""} ${e.time_from || ""}${e.time_to ? "–" + e.time_to : ""}`),
    (e.offers || []).map((o) => el("div", { class: "wl-offer", dataset: { state: o.state } },
      `${t("offers")}: ${wallDate(o.local_start).slice(5)} ${wallTime(o.local_start)} · ${optName(o.optometrist_id)} · ${o.state}`))))));
}

function addMessage(m) {
  const list = $("messages");
  list.prepend(el("li", { class: "msg", dataset: { role: m.role } },
    el("span", { class: "badge" }, m.role), el("span", { class: "badge" }, m.channel), " ", m.text));
}

function scheduleWaitlist(delays) {
  (state.waitlistReloads || []).forEach(clearTimeout);
  state.waitlistReloads = delays.map((ms) => setTimeout(loadWaitlist, ms));
}

function scheduleReload(ms) {
  clearTimeout(state.reload);
  state.reload = setTimeout(() => { loadBookings(); loadSlots(); }, ms);
}

// MongoDB follows decisions a moment later (seconds on a busy host): a booking decided just
// before the feed opened is in neither the first read nor the feed, so read again a bit later.
const CATCH_UP_MS = [0, 2000, 6000];

function connect() {
  const source = new EventSource(`/console/${sid}/events`);
  const live = $("live-status");
  source.addEventListener("open", () => {
    live.className = "live on"; live.textContent = t("live");
    CATCH_UP_MS.forEach((ms) => setTimeout(() => scheduleReload(0), ms));
  });
  source.addEventListener("error", () => { live.className = "live off"; live.textContent = t("offline"); });
  source.addEventListener("booking", (ev) => {
    const b = JSON.parse(ev.data).booking;
    if (wallDate(b.local_start) === day()) upsert(b, true);
    scheduleReload(1500); loadSlots();
  });
  source.addEventListener("change", (ev) => {
    const m = JSON.parse(ev.data);
    const b = state.bookings.get(m.booking_id);
    if (b) {
      const patch = Object.assign({}, m.set);
      // the event carries UTC instants: the wall times follow in the store's zone
      if (patch.slot_start) patch.local_start = localIso(patch.slot_start, store.timezone);
      if (patch.slot_end) patch.local_end = localIso(patch.slot_end, store.timezone);
      upsert(Object.assign({}, b, patch, { updated_at: m.at }), true);
    }
    scheduleReload(800); loadSlots();
  });
  // The event comes straight from Kafka, the waitlist list from MongoDB, which the projector
  // writes a moment later (more under load): read it now and again a few times after.
  source.addEventListener("event", () => { loadWaitlist(); scheduleWaitlist([500, 1500, 3500, 7500]); });
  source.addEventListener("message", (ev) => addMessage(JSON.parse(ev.data).message));
  source.addEventListener("resync", () => { scheduleReload(0); loadWaitlist(); });
}

function showDay(offset) {
  state.offset = offset;
  $("tab-today").classList.toggle("active", offset === 0);
  $("tab-tomorrow").classList.toggle("active", offset === 1);
  state.bookings = new Map();
  renderTimeline();
  loadBookings(); loadSlots(); loadWaitlist();
}

document.addEventListener("DOMContentLoaded", () => {
  const select = $("exam");
  for (const e of store.exam_types || []) select.append(el("option", { value: e.code }, `${e.name} (${e.duration_minutes} ${t("minutes")})`));
  state.exam = select.value || null;
  select.addEventListener("change", () => { state.exam = select.value; loadSlots(); });
  $("tab-today").addEventListener("click", () => showDay(0));
  $("tab-tomorrow").addEventListener("click", () => showDay(1));
  $("walkin").addEventListener("submit", bookWalkin);
  $("w-close").addEventListener("click", () => { $("walkin").hidden = true; });
  const feeds = $("feeds");
  for (const [opt, url] of Object.entries(BOOT.feeds || {})) feeds.append(el("li", {}, el("a", { href: url }, optName(opt))));
  showDay(new URLSearchParams(location.search).get("day") === "tomorrow" ? 1 : 0);
  connect();
});
