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

async function load() {
  const res = await api("GET", url);
  if (!res.ok) { $("offer").replaceChildren(el("p", { class: "notice error", id: "offer-error" }, res.status === 404 ? t("offer_unknown") : outcomeText(res.body))); return; }
  offer = res.body;
  const start = offer.local_start || offer.slot_start || "";
  $("offer").replaceChildren(
    el("p", {}, t("offer_intro")),
    el("p", { class: "chosen" }, `${wallDate(start)} ${wallTime(start)}`),
    offer.hold_until ? el("p", { class: "muted" }, `${t("offer_hold")} ${new Date(offer.hold_until).toLocaleString(LOCALE)}`) : null,
    el("button", { type: "button", class: "primary", id: "accept", onclick: accept }, t("accept")),
    el("button", { type: "button", class: "secondary", id: "decline", onclick: decline }, t("decline")),
  );
}

async function accept() {
  const res = await settle(await api("POST", `${url}/accept`, { customer_ref: offer.customer_ref }));
  if (res.ok && res.body.local_start) result(`${t("confirmed")} ${wallDate(res.body.local_start)} ${wallTime(res.body.local_start)}`, "ok");
  else result(outcomeText(res.body), "error");
  $("accept").disabled = $("decline").disabled = true;
}

async function decline() {
  const res = await settle(await api("POST", `${url}/decline`, { customer_ref: offer.customer_ref }));
  result(res.ok ? t("offer_declined") : outcomeText(res.body), res.ok ? "ok" : "error");
  $("accept").disabled = $("decline").disabled = true;
}

document.addEventListener("DOMContentLoaded", load);
