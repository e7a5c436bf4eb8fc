"""Book, reschedule and cancel through the real booking API and processor: the notify worker
process sends exactly those three messages, in order, in the customer's locale and the store's
local time, to a real signed-webhook receiver."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from optisync_common.settings import DEV_SECRET
from services.notify.domain.signing import SIGNATURE_HEADER, staff_token, verify

from .storesetup import free_at, publish_store, store_events, wait_for_availability

pytestmark = pytest.mark.e2e

DAY = dt.date(2031, 3, 3)  # a Monday, far ahead; Berlin is UTC+1 then


class Receiver:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        received = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                verify(
                    DEV_SECRET,
                    self.headers.get(SIGNATURE_HEADER),
                    body,
                    now=time.time(),
                    max_skew_s=60,
                )
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # 30 s was too short once with two CPU-burning loops beside the suite (the third message
    # had not come yet; the first two came in order)
    def wait(self, count: int, timeout: float = 60.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)


def test_book_reschedule_cancel_reach_the_customer_in_order(running_stack, endpoints, unique_id):
    api, notify = running_stack["booking-api"], running_stack["notify-api"]
    store_id = f"notify-{unique_id}"
    receiver = Receiver()
    try:
        token = staff_token(DEV_SECRET, "e2e-manager")
        configured = httpx.put(
            f"{notify}/v1/stores/{store_id}/notify-config",
            json={"channels": {"*": {"kind": "webhook", "url": receiver.url}}},
            headers={"Authorization": f"Bearer {token}"}, timeout=10,
        )  # fmt: skip
        assert configured.status_code == 200, configured.text
        events = store_events(store_id, DAY, {"ann": ("09:00", "12:00")})
        # homed in this stack's region, so its own processor decides (the helper says "eu")
        events[0] = events[0].model_copy(update={"region": "cn"})
        publish_store(endpoints, store_id, events)
        wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "11:00") == 1, timeout=90)
        booking = {
            "store_id": store_id, "exam_type": "standard", "channel": "wechat",
            "slot_start": f"{DAY}T11:00:00+01:00",
            "customer": {"customer_ref": f"c-{unique_id}", "name": "王芳", "chat_id": "wx-1",
                         "locale": "zh-CN"},
        }  # fmt: skip
        deadline = time.monotonic() + 30
        while True:  # the API may learn the store's exam types a moment after its free slots
            created = httpx.post(
                f"{api}/v1/bookings",
                json=booking,
                headers={"Idempotency-Key": f"{store_id}-b"},
                timeout=30,
            )
            if created.status_code != 422 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert created.status_code == 201, created.text
        booking_id = created.json()["booking_id"]
        moved = httpx.post(
            f"{api}/v1/bookings/{booking_id}/reschedule",
            json={"slot_start": f"{DAY}T10:30:00+01:00"},
            headers={"Idempotency-Key": f"{store_id}-r"},
            timeout=30,
        )
        assert moved.status_code == 200, moved.text
        cancelled = httpx.post(
            f"{api}/v1/bookings/{booking_id}/cancel",
            json={"by": "customer"},
            headers={"Idempotency-Key": f"{store_id}-c"},
            timeout=30,
        )
        assert cancelled.status_code == 200, cancelled.text

        got = receiver.wait(3)
        assert [m["kind"] for m in got] == ["confirmation", "change", "cancellation"]
        assert all(m["booking_id"] == booking_id and m["locale"] == "zh-CN" for m in got)
        assert "2031年3月3日（周一）11:00" in got[0]["text"]
        assert "2031年3月3日（周一）11:00" in got[1]["text"] and "10:30" in got[1]["text"]
        assert "2031年3月3日（周一）10:30" in got[2]["text"] and "已取消" in got[2]["text"]
        assert len({m["notification_id"] for m in got}) == 3
        time.sleep(1.0)  # nothing else follows (reminders are due only in 2031)
        assert len(receiver.messages) == 3
    finally:
        receiver.server.shutdown()
