// Optometrist's day: own bookings across stores; complete an exam and send its result summary.
"use strict";
const $ = (id) => document.getElementById(id);
const me = BOOT.optometrist_id;
const tz = BOOT.stores[0].timezone;
const REFRESH_MS = 3000;
let lastShown = null;
// Summaries being typed, by booking id: kept across redraws, even one that briefly shows the
// booking without its summary box (MongoDB a step behind a completion made here).
const drafts = new Map();
// A load draws only if no later one has begun, so answers arriving out of order never go back.
const loadTurn = latestOnly();
// Bookings as this page's own actions decided them, shown until the list catches up.
const decided = new Map();

function newest(b) {
  const shown = lastChanged(decided.get(b.booking_id), b);
  if (shown === b) decided.delete(b.booking_id);
  return shown;
}

async function load() {
  const latest = loadTurn();
  const date = $("day").value;
  const mine = [];
  for (const store of BOOT.stores) {
    let cursor = null;
    do {
      const params = new URLSearchParams({ date, limit: "200" });
      if (cursor) params.set("cursor", cursor);
      const res = await api("GET", `/v1/stores/${encodeURIComponent(store.store_id)}/bookings?${params}`);
      if (!res.ok) { showMessage(problemText(res.body)); return; }
      res.body.items.map(newest).filter((b) => b.optometrist_id === me && b.status !== "cancelled")
        .forEach((b) => mine.push([store, b]));
      cursor = res.body.next_cursor;
    } while (cursor);
  }
  if (!latest()) return;
  mine.sort((a, b) => a[1].slot_start.localeCompare(b[1].slot_start));
  // Re-read every few seconds (the list is MongoDB's, which follows decisions a moment later);
  // redraw only on a change, so a summary being typed is not wiped.
  const shown = JSON.stringify(mine.map(([, b]) => [b.booking_id, b.status, b.slot_start]));
  if (shown === lastShown) return;
  lastShown = shown;
  $("schedule").replaceChildren(...(mine.length ? mine.map(([s, b]) => item(s, b)) : [el("li", { class: "muted" }, t("no_bookings"))]));
}

function item(store, b) {
  const exam = (store.exam_types.find((e) => e.code === b.exam_type) || { name: b.exam_type }).name;
  const li = el("li", { class: "visit", dataset: { bookingId: b.booking_id, status: b.status } },
    el("strong", {}, `${wallTime(b.local_start)}–${wallTime(b.local_end)}`), ` ${(b.customer && b.customer.name) || ""} · ${exam}`,
    el("span", { class: "badge" }, statusText(b.status)), el("span", { class: "muted" }, ` ${store.name}`));
  if (b.status === "checked_in" || b.status === "confirmed") {
    li.append(" ", el("button", { type: "button", class: "act-complete", onclick: async () => {
      const res = await settle(await api("POST", `/v1/bookings/${encodeURIComponent(b.booking_id)}/complete`, { optometrist_id: me }));
      // the answer is the booking as decided (MongoDB may not have it yet)
      if (res.ok && res.body.booking_id) {
        decided.set(b.booking_id, res.body);
        li.replaceWith(item(store, res.body));
      } else showMessage(problemText(res.body));
    } }, t("complete")));
  }
  if (b.status === "completed") {
    const text = el("textarea", { rows: "2", maxlength: "2000", class: "summary" });
    text.value = drafts.get(b.booking_id) || "";
    text.addEventListener("input", () => drafts.set(b.booking_id, text.value));
    li.append(el("label", {}, el("span", {}, t("summary")), text),
      el("button", { type: "button", class: "act-summary", onclick: async () => {
        if (!text.value.trim()) { showMessage(t("summary_empty")); text.focus(); return; }
        const res = await settle(await api("POST", `/v1/bookings/${encodeURIComponent(b.booking_id)}/summary`, { optometrist_id: me, summary: text.value.trim() }));
        showMessage(res.ok ? t("summary_sent") : problemText(res.body), res.ok ? "info" : "");
      } }, t("send_summary")));
  }
  return li;
}

document.addEventListener("DOMContentLoaded", () => {
  $("who").textContent = BOOT.name;
  $("feed-link").href = BOOT.feed_url;
  $("day").value = localDate(tz, new URLSearchParams(location.search).get("day") === "tomorrow" ? 1 : 0);
  $("day").addEventListener("change", () => { lastShown = null; load(); });
  load().then(markInteractive).finally(refreshLater);
});

// The next re-read starts REFRESH_MS after the previous one ended, never while it runs: a fixed
// interval began a new read every 3 s, each superseding the one before, so once a read took
// longer than that (a slow or busy database) none drew and the page stood still.
function refreshLater() {
  setTimeout(() => load().finally(refreshLater), REFRESH_MS);
}
