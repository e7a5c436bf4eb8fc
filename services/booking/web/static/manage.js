// Manage link: see the booking, add it to a calendar, cancel, reschedule, join the waitlist.
"use strict";
const $ = (id) => document.getElementById(id);
let booking = BOOT.booking;
const store = BOOT.store;
const base = `/pages/api/manage/${BOOT.token}`;

function exam() {
  return (store.exam_types || []).find((e) => e.code === booking.exam_type) || { code: booking.exam_type, name: booking.exam_type };
}

function render() {
  const opt = (store.optometrists || {})[booking.optometrist_id] || booking.optometrist_id;
  $("booking").replaceChildren(
    el("h2", {}, `${store.name} · ${exam().name}`),
    el("p", { class: "chosen", id: "when" }, `${wallDate(booking.local_start)} ${wallTime(booking.local_start)}–${wallTime(booking.local_end)}`),
    el("p", {}, `${t("with_optometrist")}: ${opt}`),
    el("p", {}, `${t("status")}: `, el("span", { id: "status" }, statusText(booking.status))),
    store.address ? el("p", { class: "muted" }, store.address) : null,
  );
  const open = booking.status === "confirmed" || booking.status === "displaced";
  $("cancel").hidden = !open;
  $("reschedule").hidden = !open;
  $("ics-link").href = BOOT.ics_url;
}

async function refresh() {
  const res = await api("GET", base);
  if (res.ok) { booking = lastChanged(booking, res.body); render(); }
}

const slotsTurn = latestOnly();

async function loadSlots() {
  const latest = slotsTurn();
  const box = $("slots");
  const day = $("day").value;
  if (!day) return;
  if (day < localDate(store.timezone || booking.timezone, 0)) {
    box.replaceChildren(el("p", { class: "notice error", id: "day-error" }, t("past_day")));
    return;
  }
  const params = new URLSearchParams({ date: day, exam_type: booking.exam_type });
  const res = await api("GET", `/v1/stores/${encodeURIComponent(booking.store_id)}/availability?${params}`);
  if (!latest()) return; // a newer choice asked again meanwhile
  if (!res.ok) { box.replaceChildren(el("p", { class: "notice error" }, problemText(res.body))); return; }
  const now = Date.now();
  const slots = res.body.slots.filter((s) => s.free_count > 0 && Date.parse(s.start_utc) > now);
  box.replaceChildren(...(slots.length ? slots.map((s) => el("button", {
    type: "button", class: "slot", dataset: { start: s.start }, onclick: () => move(s.start),
  }, s.local_time)) : [el("p", { class: "muted" }, t("no_slots"))]));
}

async function move(start) {
  const res = await settle(await api("POST", `${base}/reschedule`, { slot_start: start }));
  if (res.ok && res.body.booking_id) {
    booking = res.body; render();
    result(el("p", { class: "notice ok", id: "result-text" }, `${t("rescheduled")} ${wallDate(booking.local_start)} ${wallTime(booking.local_start)}`));
    loadSlots();
  } else if (res.body.code === "slot_taken") {
    result(el("p", { class: "notice error", id: "result-text" }, t("taken")));
    loadSlots();
  } else {
    result(el("p", { class: "notice error", id: "result-text" }, problemText(res.body)));
  }
}

async function cancel() {
  if (!confirm(t("cancel_confirm"))) return;
  const res = await settle(await api("POST", `${base}/cancel`, {}));
  if (res.ok && res.body.booking_id) {
    booking = res.body; render();
    result(el("p", { class: "notice ok", id: "result-text" }, t("cancelled")));
  } else {
    result(el("p", { class: "notice error", id: "result-text" }, problemText(res.body)));
  }
}

async function joinWaitlist() {
  const from = $("wl-from").value, to = $("wl-to").value || from;
  if (!from || from < localDate(store.timezone || booking.timezone, 0)) { result(el("p", { class: "notice error" }, t("past_day"))); return; }
  const res = await settle(await api("POST", "/v1/waitlist", {
    store_id: booking.store_id, exam_type: booking.exam_type, date_from: from, date_to: to, channel: "web",
    customer: { customer_ref: booking.customer_ref, name: booking.customer.name, phone: booking.customer.phone, locale: LOCALE },
  }));
  if (res.ok) result(el("p", { class: "notice ok", id: "result-text" }, t("waitlist_joined")));
  else if (res.status === 404 || res.status === 405) result(el("p", { class: "notice error" }, t("waitlist_unavailable")));
  else result(el("p", { class: "notice error", id: "result-text" }, problemText(res.body)));
}

function result(content) {
  const box = $("result");
  box.replaceChildren(content);
  box.hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  render();
  const tz = store.timezone || booking.timezone;
  $("day").min = $("wl-from").min = $("wl-to").min = localDate(tz, 0);
  $("day").value = wallDate(booking.local_start) >= localDate(tz, 0) ? wallDate(booking.local_start) : localDate(tz, 0);
  $("day").addEventListener("change", loadSlots);
  $("cancel").addEventListener("click", cancel);
  $("wl-join").addEventListener("click", joinWaitlist);
  loadSlots().then(markInteractive);
  // The store may move the booking meanwhile: follow it while the page is open.
  setInterval(() => { if (!document.hidden) refresh(); }, 10000);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
});
