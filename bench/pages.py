"""`python -m bench.pages`: first-load size and time to interactive of the pages, and how soon
a booking made elsewhere shows on an open front-desk console.

Starts (or reuses) the infrastructure of a profile (default `bench`, ports + 2000) and the
booking path as processes (booking-api, -processor, -projector), seeds one store with a busy
day, then loads each page in headless Debian chromium, every load in a fresh browser context
(cold cache, no service worker):

* bytes: everything the first load transfers (`performance` navigation + resource entries'
  transferSize), split into the page itself (HTML, CSS, JS) and its data calls;
* DOMContentLoaded, and *interactive*: the `optisync-interactive` mark each page sets once its
  data is rendered and its controls answer (all relative to navigation start);
* live: a booking POSTed over HTTP (channel wechat) -> its row on the open console (a
  MutationObserver in the page notes the time; same machine, same clock).

`python -m bench.pages [--loads 7] [--live 20] [--profile bench --port-offset 2000]`
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.async_api import Browser, async_playwright

from bench.platform import bench_infra, save_results
from bench.stats import percentiles
from deploy.local import infra, stack
from optisync_common.kafka import EventPublisher, make_producer
from optisync_common.settings import ServiceSettings
from schemas.envelope import new_envelope
from schemas.events.base import EventPayload
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    ShiftPublished,
    StoreRegistered,
)

REPO = Path(__file__).resolve().parents[1]
SERVICES = ["booking-api", "booking-processor", "booking-projector"]
TZ = "Asia/Shanghai"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
OPTOMETRISTS = ["li", "wang", "zhang"]

_MEASURE = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const resources = performance.getEntriesByType("resource");
  const mark = performance.getEntriesByName("optisync-interactive")[0];
  const isData = (r) => r.initiatorType === "fetch" || r.initiatorType === "xmlhttprequest";
  const sum = (list) => list.reduce((n, r) => n + (r.transferSize || 0), 0);
  return {
    page_bytes: nav.transferSize + sum(resources.filter((r) => !isData(r))),
    data_bytes: sum(resources.filter(isData)),
    requests: 1 + resources.length,
    dcl_ms: nav.domContentLoadedEventEnd,
    interactive_ms: mark ? mark.startTime : null,
  };
}"""

_WATCH = """(id) => new Promise((resolve) => {
  const seen = () => document.querySelector(`.booking[data-booking-id="${id}"]`);
  if (seen()) return resolve(performance.timeOrigin + performance.now());
  const observer = new MutationObserver(() => {
    if (seen()) { observer.disconnect(); resolve(performance.timeOrigin + performance.now()); }
  });
  observer.observe(document.body, { childList: true, subtree: true });
})"""


def _progress(msg: str) -> None:
    print(f"[bench-pages] {msg}", flush=True)


def _store_events(store_id: str, day: dt.date) -> list[EventPayload]:
    hours = {d: [{"open": "09:00", "close": "21:00"}] for d in range(7)}
    events: list[EventPayload] = [
        StoreRegistered(store_id=store_id, name=f"静安店 {store_id}", region="cn", timezone=TZ,
                        opening_hours=hours, locale="zh-CN", address="南京西路 1 号",
                        latitude=31.2290, longitude=121.4550),
        ExamTypeDefined(code="standard", name="标准验光", duration_minutes=30,
                        required_skill="general", preparation_notes="请带上您现在的眼镜。"),
        ExamTypeDefined(code="dilated", name="散瞳检查", duration_minutes=60,
                        required_skill="general", preparation_notes="散瞳后 4 小时内请勿驾车。"),
    ]  # fmt: skip
    for opt in OPTOMETRISTS:
        events += [
            OptometristJoined(optometrist_id=f"{store_id}-{opt}", name=f"{opt} 医生",
                              skills=["general"], home_store_id=store_id, store_ids=[store_id]),
            ShiftPublished(shift_id=f"{store_id}-{opt}-{day}", optometrist_id=f"{store_id}-{opt}",
                           store_id=store_id, date=day, start="09:00", end="21:00"),
        ]  # fmt: skip
    return events


async def _publish(endpoints: infra.Endpoints, store_id: str, events: list[EventPayload]) -> None:
    settings = endpoints.settings(ServiceSettings, service_name="bench", environment="test")
    producer = make_producer(settings)
    await producer.start()
    try:
        publisher = EventPublisher(producer)
        now = dt.datetime.now(dt.UTC)
        for payload in events:
            envelope = new_envelope(
                payload, region="cn", store_id=store_id, correlation_id="bench", occurred_at=now
            )
            await publisher.publish(envelope)
    finally:
        await producer.stop()


def _slot(day: dt.date, minutes_after_nine: int) -> str:
    start = dt.datetime.combine(day, dt.time(9), tzinfo=ZoneInfo(TZ))
    return (start + dt.timedelta(minutes=minutes_after_nine)).isoformat()


async def _seed(client: httpx.AsyncClient, store_id: str, day: dt.date, count: int) -> str:
    """`count` bookings on the day (a busy console); returns a manage URL of one of them."""
    manage_url = booking_id = ""
    for i in range(count):
        resp = await client.post("/pages/api/bookings", json={
            "store_id": store_id, "exam_type": "standard", "slot_start": _slot(day, 30 * (i // 3)),
            "name": f"顾客 {i}", "phone": f"+86 139 {i:04d} {i:04d}", "locale": "zh-CN",
        })  # fmt: skip
        if resp.status_code == 201:
            manage_url, booking_id = resp.json()["manage_url"], resp.json()["booking_id"]
    for _ in range(300):  # measure the page, not the projector catching up with the burst
        if (await client.get(f"/v1/bookings/{booking_id}")).status_code == 200:
            break
        await asyncio.sleep(0.1)
    return manage_url


async def _wait_for_store(client: httpx.AsyncClient, store_id: str, day: dt.date) -> None:
    for _ in range(300):
        params = {"date": day.isoformat(), "exam_type": "standard"}
        resp = await client.get(f"/v1/stores/{store_id}/availability", params=params)
        directory = await client.get(f"/pages/api/stores/{store_id}")
        if resp.status_code == 200 and resp.json()["slots"] and directory.status_code == 200:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the store never became bookable")


async def _load(browser: Browser, url: str) -> dict[str, Any]:
    context = await browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    page = await context.new_page()
    try:
        await page.goto(url)
        await page.wait_for_function(
            "performance.getEntriesByName('optisync-interactive').length > 0", timeout=30_000
        )
        await page.wait_for_load_state("networkidle")
        measured: dict[str, Any] = await page.evaluate(_MEASURE)
        return measured
    finally:
        await context.close()


async def _live(browser: Browser, client: httpx.AsyncClient, api: str, store_id: str,
                day: dt.date, samples: int, first_free: int) -> list[float]:  # fmt: skip
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{api}/console/{store_id}?day=tomorrow")
    await page.wait_for_selector("#live-status.on")
    await asyncio.sleep(1.0)
    latencies = []
    try:
        for i in range(samples):
            booking_id_box: dict[str, str] = {}
            body = {
                "store_id": store_id, "exam_type": "standard",
                "slot_start": _slot(day, first_free + 30 * (i // len(OPTOMETRISTS))),
                "channel": "wechat", "channel_message_id": uuid.uuid4().hex,
                "customer": {"customer_ref": f"wx-{uuid.uuid4().hex[:10]}", "name": f"微信 {i}"},
            }  # fmt: skip
            sent = time.time() * 1000
            resp = await client.post("/v1/bookings", json=body)
            if resp.status_code != 201:
                raise RuntimeError(f"live booking {i} refused: {resp.text}")
            booking_id_box["id"] = resp.json()["booking_id"]
            shown = await page.evaluate(_WATCH, booking_id_box["id"])
            latencies.append(shown - sent)
            await asyncio.sleep(0.2)
    finally:
        await context.close()
    return latencies


async def _run(args: argparse.Namespace, api: str, endpoints: infra.Endpoints) -> dict[str, Any]:
    store_id = f"bench-pages-{uuid.uuid4().hex[:6]}"
    day = (dt.datetime.now(ZoneInfo(TZ)) + dt.timedelta(days=1)).date()
    await _publish(endpoints, store_id, _store_events(store_id, day))
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        await _wait_for_store(client, store_id, day)
        _progress(f"seeding {args.bookings} bookings")
        manage_url = await _seed(client, store_id, day, args.bookings)
        pages = {
            "booking page": f"{api}/book?store={store_id}",
            "manage link": manage_url,
            "front-desk console": f"{api}/console/{store_id}?day=tomorrow",
            "optometrist day": f"{api}/optometrist/{store_id}-li?day=tomorrow",
        }
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=infra.ensure_chromium(), headless=True, args=CHROMIUM_ARGS
            )
            try:
                rows = []
                for name, url in pages.items():
                    _progress(f"loading {name} x{args.loads}")
                    loads = [await _load(browser, url) for _ in range(args.loads)]
                    rows.append(_summary(name, loads))
                _progress(f"live: {args.live} bookings -> console")
                first_free = 30 * -(-args.bookings // len(OPTOMETRISTS))
                live = await _live(browser, client, api, store_id, day, args.live, first_free)
            finally:
                await browser.close()
    p50, p90 = percentiles(live, 0.5, 0.9)
    live_row = {"samples": len(live), "p50_ms": p50, "p90_ms": p90,
                "max_ms": round(max(live), 1) if live else None}  # fmt: skip
    return {"pages": rows, "live": live_row}


def _summary(name: str, loads: list[dict[str, Any]]) -> dict[str, Any]:
    interactive = [x["interactive_ms"] for x in loads if x["interactive_ms"] is not None]
    first = loads[0]
    p50, p90 = percentiles(interactive, 0.5, 0.9)
    return {
        "page": name,
        "page_bytes": first["page_bytes"],
        "data_bytes": first["data_bytes"],
        "requests": first["requests"],
        "dcl_ms_p50": round(statistics.median(x["dcl_ms"] for x in loads), 1),
        "interactive_ms_p50": p50,
        "interactive_ms_p90": p90,
        "loads": len(loads),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    headers = ["page", "page KiB (HTML+CSS+JS)", "data KiB", "requests", "DOMContentLoaded ms",
               "interactive p50 ms", "interactive p90 ms"]  # fmt: skip
    cells = [[r["page"], round(r["page_bytes"] / 1024, 1), round(r["data_bytes"] / 1024, 1),
              r["requests"], r["dcl_ms_p50"], r["interactive_ms_p50"], r["interactive_ms_p90"]]
             for r in rows]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *cells, strict=False)]

    def line(values: list[Any]) -> str:
        return (
            "| " + " | ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=False)) + " |"
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pages: first load and live console latency")
    parser.add_argument("--loads", type=int, default=7, help="cold loads per page")
    parser.add_argument("--live", type=int, default=20, help="bookings timed to the console")
    parser.add_argument("--bookings", type=int, default=45, help="bookings seeded on the day")
    parser.add_argument("--profile", default="bench")
    parser.add_argument("--port-offset", type=int, default=2000)
    args = parser.parse_args(argv)
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    with bench_infra(args.profile, args.port_offset) as (cfg, endpoints):
        try:
            urls = stack.start_services(cfg, endpoints, port_offset=args.port_offset, only=SERVICES)
            result = asyncio.run(_run(args, urls["booking-api"], endpoints))
        finally:
            stack.stop_services(cfg)
    live = result["live"]
    report = (
        f"# Pages benchmark {run_id}\n\nmachine: {os.cpu_count()} cores; Kafka + Redis + FerretDB"
        f" + booking-api/-processor/-projector + headless Debian chromium on one box. Each page "
        f"loaded {args.loads} times, each in a fresh browser context (cold cache), mobile "
        "viewport, no network throttling. Bytes: what the first load transfers (page = HTML, "
        "CSS, JS; data = its API calls). Interactive: the page's own `optisync-interactive` "
        "mark (data rendered, controls live), from navigation start.\n\n"
        + _table(result["pages"])
        + f"\n\nLive console: a booking POSTed (channel wechat) -> its row on the open console: "
        f"p50 {live['p50_ms']} ms, p90 {live['p90_ms']} ms, max {live['max_ms']} ms "
        f"({live['samples']} bookings; target: within 1 s).\n"
    )
    print("\n" + report)
    save_results(run_id, "pages", report, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
