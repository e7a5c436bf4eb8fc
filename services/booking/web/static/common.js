// Shared helpers of the OptiSync pages: texts (zh-CN, en), JSON calls, times, messages.
"use strict";
const BOOT = JSON.parse(document.getElementById("boot").textContent);
const LOCALE = BOOT.locale === "zh-CN" ? "zh-CN" : "en";

const TEXTS = {
  en: {
    choose_store: "1. Store", search_store: "Search by name or address", nearest: "Nearest",
    choose_exam: "2. Exam", choose_day: "3. Day and time", your_details: "4. Your details",
    name: "Name", phone: "Mobile phone", phone_hint: "e.g. 138 0013 8000 or +49 151 2345678",
    confirm: "Confirm booking", minutes: "min", no_slots: "No free times on this day.",
    no_stores: "No store found.", loading: "Loading…", km: "km",
    confirmed: "Booked! See you on", booked_at: "at", with_optometrist: "Optometrist",
    taken: "Just taken: someone booked this time a moment ago.",
    alternatives: "Nearest free times:", no_alternatives: "No free time nearby.",
    manage: "Change or cancel", add_calendar: "Add to calendar", pending: "Your request is being processed…",
    cancel_booking: "Cancel booking", cancel_confirm: "Cancel this booking?",
    cancelled: "The booking is cancelled.", reschedule: "Pick another time",
    rescheduled: "Moved to", waitlist: "Waitlist", join_waitlist: "Join the waitlist",
    waitlist_hint: "Tell us which days suit you; we offer you a time as soon as one frees up.",
    waitlist_joined: "You are on the waitlist. We will message you when a time frees up.",
    waitlist_unavailable: "The waitlist is not available right now.",
    status: "Status", st_confirmed: "confirmed", st_cancelled: "cancelled", st_checked_in: "checked in",
    st_no_show: "no-show", st_completed: "completed", st_displaced: "needs a new time",
    today: "Today", tomorrow: "Tomorrow", timeline: "Bookings", free_slots: "Free times",
    live: "live", offline: "offline", messages: "Messages for the store", feeds: "Calendar feeds",
    check_in: "Check in", no_show: "No-show", complete: "Complete", move: "Move", cancel: "Cancel",
    book_for_caller: "Book", close: "Close", channel: "Channel", ch_phone: "Phone call",
    ch_front_desk: "Walk-in", moving: "Pick the new time for", no_bookings: "No bookings.",
    free: "free", unassigned: "Any optometrist", role: "for", subscribe_feed: "Subscribe (.ics)",
    summary: "Result summary for the customer", send_summary: "Send summary", summary_sent: "Summary sent.",
    summary_empty: "Please write the summary first.",
    offer_intro: "A time has freed up for you:", accept: "Accept", decline: "Decline",
    offer_hold: "Held for you until", offer_taken: "Sorry, someone else took this time.",
    offer_expired: "Sorry, this offer has expired.", offer_declined: "Offer declined.",
    offer_unknown: "This offer does not exist.", offer_accepted: "You accepted this time: it is booked for you.", entries: "Entries", offers: "Offers",
    past_day: "That day is in the past. Please choose today or a later day.",
    e_invalid_phone: "Please enter a valid mobile number (Chinese mobile or with country code, e.g. +49…).",
    e_invalid_name: "Please enter your name.", e_in_past: "That time is in the past. Please choose a later time.",
    e_not_on_grid: "That time is not bookable.", e_outside_opening_hours: "The store is closed at that time.",
    e_no_shift: "No optometrist works at that time.", e_no_skill: "No optometrist here offers this exam at that time.",
    e_unknown_store: "There is no such store.", e_unknown_exam_type: "The store does not offer this exam.",
    e_link_invalid: "This link is not valid.", e_link_expired: "This link has expired.",
    e_booking_not_ready: "Your booking is being prepared. Please try again in a moment.",
    e_invalid_transition: "This booking can no longer be changed.", e_unknown_booking: "Booking not found.",
    e_network: "No connection. Please try again.", e_server: "Something went wrong. Please try again.",
    e_invalid_request: "Please check your input.", e_duplicate: "You already have this booking.",
  },
  "zh-CN": {
    choose_store: "1. 门店", search_store: "按名称或地址搜索", nearest: "离我最近",
    choose_exam: "2. 检查项目", choose_day: "3. 日期和时间", your_details: "4. 您的信息",
    name: "姓名", phone: "手机号", phone_hint: "例如 138 0013 8000",
    confirm: "确认预约", minutes: "分钟", no_slots: "当天没有可预约的时间。",
    no_stores: "没有找到门店。", loading: "加载中…", km: "公里",
    confirmed: "预约成功！时间", booked_at: "", with_optometrist: "验光师",
    taken: "手慢了：这个时间刚刚被别人约走了。",
    alternatives: "最近的空闲时间：", no_alternatives: "附近没有空闲时间。",
    manage: "修改或取消", add_calendar: "添加到日历", pending: "正在处理您的预约…",
    cancel_booking: "取消预约", cancel_confirm: "确定取消此预约？",
    cancelled: "预约已取消。", reschedule: "改约其他时间",
    rescheduled: "已改约到", waitlist: "候补", join_waitlist: "加入候补",
    waitlist_hint: "告诉我们您方便的日期，一有空位我们就通知您。",
    waitlist_joined: "您已加入候补名单，有空位时我们会通知您。",
    waitlist_unavailable: "候补功能暂不可用。",
    status: "状态", st_confirmed: "已确认", st_cancelled: "已取消", st_checked_in: "已签到",
    st_no_show: "未到", st_completed: "已完成", st_displaced: "需改约",
    today: "今天", tomorrow: "明天", timeline: "预约", free_slots: "空闲时间",
    live: "实时", offline: "离线", messages: "门店消息", feeds: "日历订阅",
    check_in: "签到", no_show: "未到", complete: "完成", move: "改约", cancel: "取消",
    book_for_caller: "预约", close: "关闭", channel: "渠道", ch_phone: "电话",
    ch_front_desk: "到店", moving: "请选择新时间：", no_bookings: "暂无预约。",
    free: "空闲", unassigned: "任意验光师", role: "给", subscribe_feed: "订阅日历 (.ics)",
    summary: "给顾客的检查结果摘要", send_summary: "发送摘要", summary_sent: "摘要已发送。",
    summary_empty: "请先填写摘要。",
    offer_intro: "有一个时间为您空出来了：", accept: "接受", decline: "放弃",
    offer_hold: "为您保留至", offer_taken: "抱歉，这个时间已被别人约走。",
    offer_expired: "抱歉，此邀请已过期。", offer_declined: "已放弃此时间。",
    offer_unknown: "此邀请不存在。", offer_accepted: "您已接受此时间，预约已确认。", entries: "候补", offers: "邀请",
    past_day: "该日期已过，请选择今天或以后的日期。",
    e_invalid_phone: "请输入有效的手机号（中国大陆手机号，或带国家区号，如 +49…）。",
    e_invalid_name: "请输入姓名。", e_in_past: "该时间已过，请选择更晚的时间。",
    e_not_on_grid: "该时间不可预约。", e_outside_opening_hours: "门店该时间不营业。",
    e_no_shift: "该时间没有验光师值班。", e_no_skill: "该时间没有可做此项检查的验光师。",
    e_unknown_store: "没有这家门店。", e_unknown_exam_type: "门店不提供此项检查。",
    e_link_invalid: "此链接无效。", e_link_expired: "此链接已过期。",
    e_booking_not_ready: "您的预约正在准备中，请稍后重试。",
    e_invalid_transition: "此预约已无法修改。", e_unknown_booking: "找不到预约。",
    e_network: "网络连接失败，请重试。", e_server: "出错了，请重试。",
    e_invalid_request: "请检查输入。", e_duplicate: "您已有此预约。",
  },
};

function t(key) {
  return (TEXTS[LOCALE] && TEXTS[LOCALE][key]) || TEXTS.en[key] || key;
}

function translate(root) {
  (root || document).querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  (root || document).querySelectorAll("[data-tp]").forEach((el) => { el.placeholder = t(el.dataset.tp); });
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A JSON call that never throws: {ok, status, body}; problems carry `code`.
async function api(method, url, body, key) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["Idempotency-Key"] = key || newKey();
  let resp;
  try {
    resp = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    return { ok: false, status: 0, body: { code: "network" } };
  }
  let data = null;
  try { data = await resp.json(); } catch (e) { data = {}; }
  return { ok: resp.ok, status: resp.status, body: data || {} };
}

// Of two copies of one booking, the one changed last. A list read from MongoDB can be a step
// behind an action's answer (the decision itself), and must not undo it.
function lastChanged(a, b) {
  if (!a || !b) return a || b;
  return Date.parse(b.updated_at) > Date.parse(a.updated_at) ? b : a;
}

// For a request made again before its answer came (the day changed twice quickly): each call
// of the returned function starts a turn and returns a check that is true while it is the
// latest, so an older answer that arrives last does not replace a newer one.
function latestOnly() {
  let turn = 0;
  return () => { const mine = ++turn; return () => mine === turn; };
}

function newKey() {
  return (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).replace(/-/g, "");
}

// 202: the decision comes later; poll the status URL the API gave, every half second for up to
// SETTLE_POLLS times. Still undecided then: not ok, with code "pending", so no caller takes the
// 202's bare answer for the booking it asked for.
const SETTLE_POLLS = window.OPTISYNC_SETTLE_POLLS || 60;

async function settle(result) {
  if (result.status !== 202 || !result.body.status_url) return result;
  for (let i = 0; i < SETTLE_POLLS; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const state = await api("GET", result.body.status_url);
    if (state.ok && state.body.status === "done") {
      return { ok: state.body.http_status < 400, status: state.body.http_status,
               body: Object.assign({}, result.body, state.body.body) };
    }
  }
  return { ok: false, status: 202, body: Object.assign({}, result.body, { code: "pending" }) };
}

function problemText(body) {
  const code = (body && body.code) || "server";
  if (code === "invalid_request" && body.errors) {
    const fields = body.errors.map((e) => e.loc.join("."));
    if (fields.some((f) => f.includes("date"))) return t("past_day");
  }
  if (code === "pending") return t("pending");
  const key = "e_" + code;
  if (TEXTS.en[key]) return t(key);
  return (body && body.detail) || t("e_server");
}

function showMessage(text, kind) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = kind || "";
  box.hidden = false;
  clearTimeout(showMessage.timer);
  showMessage.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

// Store-local calendar date (YYYY-MM-DD) of now + `days` in `tz`.
function localDate(tz, days) {
  const d = new Date(Date.now() + (days || 0) * 86400000);
  return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(d);
}

// A UTC instant as the store's wall clock shows it: "YYYY-MM-DDTHH:MM".
function localIso(utc, tz) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", {
    timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).formatToParts(new Date(utc)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}`;
}

// "2031-03-03T09:30:00+01:00" -> "2031-03-03" / "09:30" (the wall time the store promised).
const wallDate = (iso) => iso.slice(0, 10);
const wallTime = (iso) => iso.slice(11, 16);

// The page shows its data and answers clicks (bench/pages.py reads this mark).
function markInteractive() {
  if (!performance.getEntriesByName("optisync-interactive").length) performance.mark("optisync-interactive");
}

function statusText(status) { return t("st_" + status); }

document.addEventListener("DOMContentLoaded", () => {
  translate();
  document.querySelectorAll("a[data-lang]").forEach((a) => {
    const url = new URL(location.href);
    url.searchParams.set("lang", a.dataset.lang);
    a.href = url.pathname + url.search;
  });
});
