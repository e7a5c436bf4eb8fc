// Customer booking page: store -> exam -> day -> free slot -> name/phone -> result.
"use strict";
const state = { stores: [], store: null, exam: null, slot: null, near: null, key: newKey() };
const $ = (id) => document.getElementById(id);

async function loadStores() {
  const params = new URLSearchParams({ q: $("store-search").value.trim() });
  if (state.near) { params.set("lat", state.near[0]); params.set("lon", state.near[1]); }
  const res = await api("GET", "/pages/api/stores?" + params);
  state.stores = res.ok ? res.body.items : [];
  renderStores();
  markInteractive();
  if (BOOT.store_id && !state.store) {
    // a link to one store (?store=): it may be beyond the first screenful of the list
    let preset = state.stores.find((s) => s.store_id === BOOT.store_id);
    if (!preset) {
      const one = await api("GET", `/pages/api/stores/${encodeURIComponent(BOOT.store_id)}`);
      if (one.ok) { preset = one.body; state.stores.unshift(preset); }
    }
    if (preset) chooseStore(preset);
  }
}

function renderStores() {
  const list = $("stores");
  list.replaceChildren();
  if (!state.stores.length) { list.append(el("li", { class: "muted" }, t("no_stores"))); return; }
  for (const store of state.stores) {
    const distance = store.distance_km !== null && store.distance_km !== undefined
      ? ` · ${store.distance_km} ${t("km")}` : "";
    list.append(el("li", {}, el("button", {
      type: "button", class: "store-option" + (state.store === store ? " selected" : ""),
      dataset: { storeId: store.store_id }, onclick: () => chooseStore(store),
    }, el("strong", {}, store.name), el("div", { class: "muted" }, (store.address || "") + distance))));
  }
}

function chooseStore(store) {
  state.store = store; state.exam = null; state.slot = null;
  renderStores();
  const list = $("exams");
  list.replaceChildren();
  for (const exam of store.exam_types) {
    list.append(el("li", {}, el("button", {
      type: "button", class: "exam-option", dataset: { code: exam.code },
      onclick: (ev) => chooseExam(exam, ev.currentTarget),
    }, el("strong", {}, exam.name), ` · ${exam.duration_minutes} ${t("minutes")}`,
      exam.preparation_notes ? el("div", { class: "muted" }, exam.preparation_notes) : null)));
  }
  $("step-exam").hidden = false;
  $("step-day").hidden = true;
  $("step-contact").hidden = true;
  $("step-exam").scrollIntoView({ behavior: "smooth", block: "start" });
  if (store.exam_types.length === 1) chooseExam(store.exam_types[0], list.querySelector("button"));
}

function chooseExam(exam, button) {
  state.exam = exam; state.slot = null;
  document.querySelectorAll(".exam-option").forEach((b) => b.classList.toggle("selected", b === button));
  const today = localDate(state.store.timezone, 0);
  const day = $("day");
  day.min = today;
  if (!day.value || day.value < today) day.value = today;
  $("step-day").hidden = false;
  $("step-contact").hidden = true;
  loadSlots();
}

const slotsTurn = latestOnly();

async function loadSlots() {
  const latest = slotsTurn();
  const box = $("slots");
  const day = $("day").value;
  state.slot = null;
  $("step-contact").hidden = true;
  if (!day) return;
  if (day < localDate(state.store.timezone, 0)) {
    box.replaceChildren(el("p", { class: "notice error", id: "day-error" }, t("past_day")));
    return;
  }
  box.replaceChildren(el("p", { class: "muted" }, t("loading")));
  const params = new URLSearchParams({ date: day, exam_type: state.exam.code });
  const res = await api("GET", `/v1/stores/${encodeURIComponent(state.store.store_id)}/availability?${params}`);
  if (!latest()) return; // a newer choice asked again meanwhile
  if (!res.ok) { box.replaceChildren(el("p", { class: "notice error" }, problemText(res.body))); return; }
  const now = Date.now();
  const slots = res.body.slots.filter((s) => s.free_count > 0 && Date.parse(s.start_utc) > now);
  box.replaceChildren(...(slots.length ? slots.map((s) => el("button", {
    type: "button", class: "slot", dataset: { start: s.start }, onclick: (ev) => chooseSlot(s.start, ev.currentTarget),
  }, s.local_time)) : [el("p", { class: "muted" }, t("no_slots"))]));
}

function chooseSlot(start, button) {
  state.slot = start;
  state.key = newKey(); // a new choice is a new request; a double click on confirm is not
  document.querySelectorAll(".slot").forEach((b) => b.classList.toggle("selected", b === button));
  $("chosen").textContent = `${state.store.name} · ${state.exam.name} · ${wallDate(start)} ${wallTime(start)}`;
  $("step-contact").hidden = false;
  $("result").hidden = true;
  $("step-contact").scrollIntoView({ behavior: "smooth", block: "start" });
}

async function confirmBooking(slot) {
  const start = slot || state.slot;
  if (slot) state.key = newKey();
  const button = $("confirm");
  button.disabled = true;
  showResult(el("p", { class: "muted" }, t("pending")), "pending");
  const res = await settle(await api("POST", "/pages/api/bookings", {
    store_id: state.store.store_id, exam_type: state.exam.code, slot_start: start,
    name: $("name").value, phone: $("phone").value, locale: LOCALE, channel: "web",
  }, state.key));
  button.disabled = false;
  if (res.ok) return showConfirmed(res.body);
  if (res.body.code === "pending") return showResult(el("p", { class: "notice" }, t("pending")), "pending");
  if (res.body.code === "slot_taken") return showTaken(res.body.alternatives || []);
  if (res.body.code === "duplicate" && res.body.existing_booking_id) {
    return showResult(el("p", { class: "notice" }, t("e_duplicate")), "duplicate");
  }
  showResult(el("p", { class: "notice error", id: "error-text" }, problemText(res.body)), "error");
  showMessage(problemText(res.body));
}

function showConfirmed(booking) {
  const opt = booking.optometrist_name;
  showResult([
    el("p", { class: "notice ok", id: "confirmed-text" },
      `${t("confirmed")} ${wallDate(booking.local_start)} ${t("booked_at")} ${wallTime(booking.local_start)} · ${state.store.name}`),
    opt ? el("p", {}, `${t("with_optometrist")}: ${opt}`) : null,
    el("p", {}, el("a", { id: "manage-link", class: "button secondary", href: booking.manage_url }, t("manage")), " ",
      el("a", { id: "ics-link", class: "button secondary", href: booking.ics_url, download: "booking.ics" }, t("add_calendar"))),
  ], "confirmed");
  $("step-contact").hidden = true;
}

function showTaken(alternatives) {
  const items = alternatives.map((a) => el("button", {
    type: "button", class: "slot alternative", dataset: { start: a.start },
    onclick: () => confirmBooking(a.start),
  }, wallDate(a.start) === wallDate(state.slot || a.start) ? wallTime(a.start) : `${wallDate(a.start).slice(5)} ${wallTime(a.start)}`));
  showResult([
    el("p", { class: "notice error", id: "taken-text" }, t("taken")),
    el("p", {}, alternatives.length ? t("alternatives") : t("no_alternatives")),
    el("div", { class: "slots" }, items),
  ], "taken");
  loadSlots();
  $("step-contact").hidden = false;
}

function showResult(content, outcome) {
  const box = $("result");
  box.replaceChildren(...[content].flat().filter(Boolean));
  box.dataset.outcome = outcome;
  box.hidden = false;
  box.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

document.addEventListener("DOMContentLoaded", () => {
  let timer = null;
  $("store-search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(loadStores, 200); });
  $("locate").addEventListener("click", () => {
    if (!navigator.geolocation) return;
    navigator.geolocation.getCurrentPosition((pos) => {
      state.near = [pos.coords.latitude, pos.coords.longitude];
      loadStores();
    }, () => showMessage(t("no_stores")), { timeout: 8000 });
  });
  $("day").addEventListener("change", loadSlots);
  $("confirm").addEventListener("click", () => confirmBooking());
  loadStores();
  // Location first when the browser already allows it (no prompt on load otherwise).
  if (navigator.permissions && navigator.geolocation) {
    navigator.permissions.query({ name: "geolocation" }).then((p) => {
      if (p.state === "granted") $("locate").click();
    }).catch(() => {});
  }
});
