// A waitlist offer: show the held slot, accept (first accept wins) or decline.
"use strict";
const $ = (id) => document.getElementById(id);
const url = `/v1/offers/${encodeURIComponent(BOOT.token)}`;
let offer = null;

function result(text, kind) {
  const box = $("result");
  box.replaceChildren(el("p", { class: `notice ${kind}`, id: "result-text" }, text));
  box.hidden = false;
}

function outcomeText(body) {
  if (body.code === "offer_taken" || body.reason === "offer_taken") return t("offer_taken");
  if (body.code === "offer_expired" || body.reason === "offer_expired") return t("offer_expired");
  return problemText(body);
}

const STATE_TEXT = { taken: "offer_taken", expired: "offer_expired", declined: "offer_declined", accepted: "offer_accepted" };

async function load() {
  const res = await api("GET", url);
  if (!res.ok) { $("offer").replaceChildren(el("p", { class: "notice error", id: "offer-error" }, res.status === 404 ? t("offer_unknown") : outcomeText(res.body))); return; }
  offer = res.body;
  const store = offer.store_id ? await api("GET", `/pages/api/stores/${encodeURIComponent(offer.store_id)}`) : { ok: false };
  const exam = store.ok ? (store.body.exam_types.find((e) => e.code === offer.exam_type) || {}).name : null;
  const start = offer.local_start;
  $("offer").replaceChildren(
    el("p", {}, t("offer_intro")),
    el("p", { class: "chosen", id: "offer-when" }, `${wallDate(start)} ${wallTime(start)}`),
    el("p", {}, [store.ok ? store.body.name : offer.store_id, exam || offer.exam_type].filter(Boolean).join(" · ")),
    el("p", { class: "muted" }, `${t("offer_hold")} ${localIso(offer.hold_until, store.ok ? store.body.timezone : "UTC").replace("T", " ")}`),
    el("button", { type: "button", class: "primary", id: "accept", onclick: accept }, t("accept")),
    el("button", { type: "button", class: "secondary", id: "decline", onclick: decline }, t("decline")),
  );
  if (offer.state !== "live") {
    $("accept").disabled = $("decline").disabled = true;
    if (STATE_TEXT[offer.state]) result(t(STATE_TEXT[offer.state]), "error");
  }
}

async function accept() {
  const res = await settle(await api("POST", `${url}/accept`, {}));
  if (res.ok && res.body.local_start) result(`${t("confirmed")} ${wallDate(res.body.local_start)} ${t("booked_at")} ${wallTime(res.body.local_start)}`, "ok");
  else result(outcomeText(res.body), "error");
  $("accept").disabled = $("decline").disabled = true;
}

async function decline() {
  const res = await settle(await api("POST", `${url}/decline`, {}));
  result(res.ok ? t("offer_declined") : outcomeText(res.body), res.ok ? "ok" : "error");
  $("accept").disabled = $("decline").disabled = true;
}

document.addEventListener("DOMContentLoaded", load);
