"""The HQ dashboard in headless Chromium against the whole stack (every service a process):
its numbers match the analytics API, and a visit booked through the booking API shows up on
the open page without a reload. Screenshots (laptop and tablet, en and zh-CN) are saved under
.run/artifacts/."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, Page

from deploy.local.infra import Endpoints

from .storesetup import free_at, publish_store, store_events, wait_for_availability

pytestmark = pytest.mark.e2e

DAY = dt.date(2031, 4, 7)  # a Monday far ahead; Berlin is on summer time (UTC+2)
COUNT_CARDS = ("requested", "confirmed", "cancelled", "checked_in", "no_show", "rejected")
RATE_CARDS = ("conversion", "cancellation_rate")


async def _book(client: httpx.AsyncClient, store_id: str, hhmm: str, n: int) -> dict[str, Any]:
    body = {
        "store_id": store_id, "exam_type": "standard", "channel": "web",
        "slot_start": f"{DAY.isoformat()}T{hhmm}:00+02:00",
        "customer": {"customer_ref": f"an-{store_id}-{n}", "name": f"Visitor {n}", "locale": "en"},
    }  # fmt: skip
    resp = await client.post(
        "/v1/bookings", json=body, headers={"Idempotency-Key": f"{store_id}-{n}"}
    )
    answer: dict[str, Any] = resp.json()
    for _ in range(600):
        if resp.status_code != 202:
            break
        state = (await client.get(answer["status_url"])).json()
        if state["status"] == "done":
            return {**state["body"], "http": state["http_status"]}
        await asyncio.sleep(0.1)
    return {**answer, "http": resp.status_code}


async def _overview(client: httpx.AsyncClient, query: dict[str, str]) -> dict[str, Any]:
    resp = await client.get("/v1/overview", params=query)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def _wait_api(client: httpx.AsyncClient, query: dict[str, str], confirmed: int) -> dict:
    for _ in range(600):
        data = await _overview(client, query)
        if data["totals"]["counts"].get("confirmed", 0) >= confirmed:
            return data
        await asyncio.sleep(0.2)
    raise AssertionError(f"analytics never counted {confirmed} confirmed: {data['totals']}")


async def _card(page: Page, name: str) -> str | None:
    return await page.get_attribute(f'[data-kpi="{name}"] .value', "data-raw")


async def _cards_match(page: Page, totals: dict[str, Any]) -> None:
    for name in COUNT_CARDS:
        assert await _card(page, name) == str(totals["counts"].get(name, 0)), name
        shown = await page.text_content(f'[data-kpi="{name}"] .value')
        assert shown == f"{totals['counts'].get(name, 0):,}"
    for name in RATE_CARDS:
        value = totals["rates"][name]
        raw = await _card(page, name)
        assert (raw == "") if value is None else (float(raw or "nan") == value), name
        shown = await page.text_content(f'[data-kpi="{name}"] .value')
        assert shown == ("–" if value is None else f"{value * 100:.1f}%")


async def test_dashboard_shows_the_api_numbers_and_a_new_booking_live(
    running_stack: dict[str, str],
    endpoints: Endpoints,
    unique_id: str,
    browser: Browser,
    artifacts_dir: Path,
) -> None:
    store_id = f"an-dash-{unique_id}"
    booking_api, analytics_api = running_stack["booking-api"], running_stack["analytics-api"]
    events = store_events(store_id, DAY, {"opt-a": ("09:00", "13:00")})
    await asyncio.to_thread(publish_store, endpoints, store_id, events)
    await asyncio.to_thread(
        wait_for_availability, booking_api, store_id, DAY, lambda v: free_at(v, "10:00") == 1
    )
    # Facts are dated the store-local day they happen (today in Berlin), not the slot's day;
    # a day either side covers a run across midnight.
    today = dt.datetime.now(ZoneInfo("Europe/Berlin")).date()
    query = {
        "store_id": store_id,
        "from": (today - dt.timedelta(days=1)).isoformat(),
        "to": (today + dt.timedelta(days=1)).isoformat(),
    }
    async with (
        httpx.AsyncClient(base_url=booking_api, timeout=30) as booking,
        httpx.AsyncClient(base_url=analytics_api, timeout=30) as analytics,
    ):
        first = [await _book(booking, store_id, t, i) for i, t in enumerate(("09:00", "09:30"))]
        assert [b["http"] for b in first] == [201, 201], first
        taken = await _book(booking, store_id, "09:00", 9)  # the same slot again: rejected
        assert taken["http"] == 409, taken
        before = await _wait_api(analytics, query, confirmed=2)
        while before["totals"]["counts"].get("rejected", 0) < 1:
            await asyncio.sleep(0.2)
            before = await _overview(analytics, query)

        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(f"{analytics_api}/dashboard?lang=en&" + httpx.QueryParams(query).__str__())
        await page.wait_for_selector("body[data-loaded=true]")
        await page.evaluate("window.__sameDocument = true")
        await _cards_match(page, before["totals"])
        assert before["totals"]["counts"]["requested"] == 3
        assert before["totals"]["rates"]["conversion"] == pytest.approx(2 / 3)
        row = page.locator(f'#stores tr[data-key="{store_id}"] td[data-kpi="confirmed"]')
        assert await row.get_attribute("data-raw") == "2"

        booked = await _book(booking, store_id, "10:00", 3)
        assert booked["http"] == 201, booked
        await page.wait_for_function(
            """() => document.querySelector('[data-kpi="confirmed"] .value')
                     ?.dataset.raw === "3" """,
            timeout=60_000,
        )
        assert await page.evaluate("window.__sameDocument") is True  # no reload happened
        after = await _overview(analytics, query)
        assert after["totals"]["counts"]["confirmed"] == 3
        assert after["totals"]["counts"]["requested"] == 4
        await page.wait_for_function(
            """() => document.querySelector('[data-kpi="requested"] .value')
                     ?.dataset.raw === "4" """,
            timeout=60_000,
        )
        await _cards_match(page, after["totals"])
        await page.screenshot(path=str(artifacts_dir / "analytics-dashboard-laptop.png"),
                              full_page=True)  # fmt: skip

        await page.set_viewport_size({"width": 768, "height": 1024})
        await page.goto(f"{analytics_api}/dashboard?lang=zh-CN&" + str(httpx.QueryParams(query)))
        await page.wait_for_selector("body[data-loaded=true]")
        assert await page.text_content('[data-kpi="confirmed"] .label') == "已确认"
        assert await _card(page, "confirmed") == "3"
        # Readable on a tablet: the cards wrap instead of overflowing the page sideways.
        overflow = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0
        await page.screenshot(path=str(artifacts_dir / "analytics-dashboard-tablet-zh.png"),
                              full_page=True)  # fmt: skip
        await page.close()
