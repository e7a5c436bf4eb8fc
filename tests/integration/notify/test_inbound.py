"""Inbound customer messages: signed webhook -> messages.inbound.v1 -> keyword routing ->
messages.routed.v1 (or a rating -> feedback.events.v1); editable rules; the result summary."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import httpx
import orjson
import pytest

from optisync_common.resources import Resources
from schemas.events.booking import BookingCompleted, ExamResultPosted
from schemas.events.feedback import FeedbackReceived
from schemas.events.messages import MessageRouted
from schemas.registry import FEEDBACK_EVENTS, MESSAGES_ROUTED
from services.notify.adapters.worker import NotifyWorker
from services.notify.domain.signing import SIGNATURE_HEADER, sign, staff_token
from services.notify.settings import NotifySettings
from tests.integration.notify.conftest import SECRET
from tests.integration.notify.helpers import (
    MovableClock,
    TopicTail,
    WebhookReceiver,
    at_local,
    confirmed,
    envelope,
    publish_all,
)

STAFF = {"Authorization": f"Bearer {staff_token(SECRET, 'opt-1')}"}


def signed(body: bytes, *, at: int | None = None, secret: str = SECRET) -> dict[str, str]:
    return {
        SIGNATURE_HEADER: sign(secret, at or int(time.time()), body),
        "content-type": "application/json",
    }


async def post_message(
    api: httpx.AsyncClient,
    store: str,
    text: str,
    *,
    locale: str | None,
    customer: str = "cust-1",
    channel: str = "wechat",
) -> str:
    message_id = uuid.uuid4().hex
    body = {"message_id": message_id, "customer_ref": customer, "store_id": store, "text": text}
    if locale:
        body["locale"] = locale
    raw = orjson.dumps(body)
    response = await api.post(f"/v1/channels/{channel}/inbound", content=raw, headers=signed(raw))
    assert response.status_code == 202, response.text
    return message_id


async def test_keyword_routing_for_zh_and_en_messages(
    api: httpx.AsyncClient,
    worker: NotifyWorker,
    notify_settings: NotifySettings,
    store: str,
):
    routed = await TopicTail(notify_settings, MESSAGES_ROUTED).start()
    try:
        cases = {
            await post_message(api, store, "散瞳以后多久能看清？", locale="zh-CN"): (
                "optometrist",
                "zh-dilation",
            ),
            await post_message(api, store, "想试戴隐形眼镜", locale=None):  # store locale zh-CN
            ("contact_lens_specialist", "zh-contact-lens"),
            await post_message(api, store, "配镜价格多少", locale="zh-CN"): (
                "front_desk",
                "zh-price",
            ),
            await post_message(api, store, "Will the dilation drops sting?", locale="en"): (
                "optometrist",
                "en-dilation",
            ),
            await post_message(
                api, store, "Do you fit contact lenses?", locale="en", channel="whatsapp"
            ): ("contact_lens_specialist", "en-contact-lens"),
            await post_message(api, store, "Is there parking nearby?", locale="en"): (
                "front_desk",
                None,
            ),
        }
        got = await routed.collect(lambda e: e.payload.message_id in cases, len(cases))
        for e in got:
            assert isinstance(e.payload, MessageRouted)
            assert (str(e.payload.role), e.payload.rule_id) == cases[e.payload.message_id]
            assert e.payload.store_id == store
    finally:
        await routed.stop()


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({"content-type": "application/json"}, b"{}", 401, "signature_missing"),
        ({SIGNATURE_HEADER: "v1=abc"}, b"{}", 401, "signature_malformed"),
        ("other-secret", b'{"x":1}', 401, "signature_invalid"),
        ("expired", b'{"x":1}', 401, "signature_expired"),
        ("signed", b"{not json", 400, "malformed_json"),
        ("signed", b'{"message_id":"m","text":"hi"}', 422, "invalid_request"),
        (
            "signed",
            b'{"message_id":"m","customer_ref":"c","store_id":"s","text":""}',
            422,
            "invalid_request",
        ),
    ],
)
async def test_malformed_or_unsigned_inbound_requests_get_4xx(
    api: httpx.AsyncClient,
    headers,
    body: bytes,
    status: int,
    code: str,
):
    if headers == "other-secret":
        headers = signed(body, secret="not-the-secret-at-all")
    elif headers == "expired":
        headers = signed(body, at=int(time.time()) - 3600)
    elif headers == "signed":
        headers = signed(body)
    response = await api.post("/v1/channels/wechat/inbound", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


async def test_replayed_request_and_unknown_channel_are_rejected(
    api: httpx.AsyncClient, store: str
):
    raw = orjson.dumps(
        {
            "message_id": uuid.uuid4().hex,
            "customer_ref": "c",
            "store_id": store,
            "text": "hello",
            "locale": "en",
        }
    )
    headers = signed(raw)
    first = await api.post("/v1/channels/line/inbound", content=raw, headers=headers)
    assert first.status_code == 202
    again = await api.post("/v1/channels/line/inbound", content=raw, headers=headers)
    assert again.status_code == 409 and again.json()["code"] == "replayed_request"
    unknown = await api.post("/v1/channels/pigeon/inbound", content=raw, headers=signed(raw))
    assert unknown.status_code == 422


async def test_routing_rules_are_editable_through_the_api(
    api: httpx.AsyncClient,
    worker: NotifyWorker,
    notify_settings: NotifySettings,
    store: str,
    unique_id: str,
):
    rule = {
        "locale": "en",
        "keywords": [f"sunglasses{unique_id}"],
        "role": "optometrist",
        "priority": 1,
    }
    rule_id = f"itest-{unique_id}"
    denied = await api.put(f"/v1/routing-rules/{rule_id}", json=rule)
    assert denied.status_code == 401
    created = await api.put(f"/v1/routing-rules/{rule_id}", json=rule, headers=STAFF)
    assert created.status_code == 200, created.text
    listed = (await api.get("/v1/routing-rules")).json()
    assert any(r["rule_id"] == rule_id for r in listed)
    assert {"zh-dilation", "en-price"} <= {r["rule_id"] for r in listed}
    invalid = await api.put(
        f"/v1/routing-rules/{rule_id}", json={**rule, "role": "janitor"}, headers=STAFF
    )
    assert invalid.status_code == 422
    routed = await TopicTail(notify_settings, MESSAGES_ROUTED).start()
    try:
        await asyncio.sleep(1.2)  # the worker re-reads rules once a second
        mid = await post_message(api, store, f"Any SUNGLASSES{unique_id} deals?", locale="en")
        [event] = await routed.collect(lambda e: e.payload.message_id == mid, 1)
        assert (str(event.payload.role), event.payload.rule_id) == ("optometrist", rule_id)
    finally:
        await routed.stop()
        assert (await api.delete(f"/v1/routing-rules/{rule_id}", headers=STAFF)).status_code == 204
    assert (await api.delete(f"/v1/routing-rules/{rule_id}", headers=STAFF)).status_code == 404


async def test_result_summary_and_rating_reply(
    api: httpx.AsyncClient,
    worker: NotifyWorker,
    notify_settings: NotifySettings,
    resources: Resources,
    receiver: WebhookReceiver,
    store: str,
    clock: MovableClock,
):
    tz = "Asia/Shanghai"
    slot = at_local(dt.date.today() + dt.timedelta(days=2), "10:00", tz)
    done, open_ = f"{store}-done", f"{store}-open"
    now = clock.now()
    await publish_all(
        resources.publisher,
        [
            confirmed(store, done, slot, tz, locale="zh-CN", name="李雷", now=now),
            confirmed(store, open_, slot, tz, locale="zh-CN", now=now),
            envelope(
                BookingCompleted(booking_id=done, idempotency_key=f"c-{done}", optometrist_id="o1"),
                store,
                now,
            ),
        ],
    )
    got = await receiver.wait_for(store, 3)
    assert sorted(r.body["kind"] for r in got) == [
        "confirmation",
        "confirmation",
        "feedback_request",
    ]
    # The processor's answer to a PostExamResult command (see the booking e2e tests).
    summary = "双眼 -1.25，无需更换镜片"
    posted = ExamResultPosted(
        booking_id=done, idempotency_key=f"s-{done}", customer_ref=f"c-{done}",
        optometrist_id="o1", summary=summary,
    )  # fmt: skip
    await publish_all(resources.publisher, [envelope(posted, store, now)])
    got = await receiver.wait_for(store, 4)
    result = [r.body for r in got if r.body["kind"] == "exam_result"]
    assert len(result) == 1 and summary in result[0]["text"]
    assert result[0]["text"].startswith("李雷您好")

    feedback = await TopicTail(notify_settings, FEEDBACK_EVENTS).start()
    routed = await TopicTail(notify_settings, MESSAGES_ROUTED).start()
    try:
        await post_message(api, store, "5 服务很好", locale="zh-CN", customer=f"c-{done}")
        [event] = await feedback.collect(lambda e: e.payload.booking_id == done, 1)
        assert isinstance(event.payload, FeedbackReceived)
        assert (event.payload.rating, event.payload.comment_present) == (5, True)
        # the request is answered: another number is just a message for the front desk
        mid = await post_message(api, store, "4", locale="zh-CN", customer=f"c-{done}")
        [again] = await routed.collect(lambda e: e.payload.message_id == mid, 1)
        assert str(again.payload.role) == "front_desk"
    finally:
        await feedback.stop()
        await routed.stop()


async def test_store_and_chain_config_through_the_api(api: httpx.AsyncClient, unique_id: str, repo):
    chain, store = f"chain-{unique_id}", f"nt-cfg-{unique_id}"
    hook = {"kind": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s" * 20}
    chain_cfg = {"reminder_offsets_min": [2880, 60], "channels": {"*": hook}}
    assert (await api.put(f"/v1/chains/{chain}/notify-config", json=chain_cfg)).status_code == 401
    put = await api.put(f"/v1/chains/{chain}/notify-config", json=chain_cfg, headers=STAFF)
    assert put.status_code == 200 and put.json()["channels"]["*"]["secret"] == "***"
    bad = await api.put(
        f"/v1/stores/{store}/notify-config",
        headers=STAFF,
        json={"channels": {"web": {"kind": "smtp", "host": "h"}}},
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_channel_config"
    bad_tz = await api.put(
        f"/v1/stores/{store}/notify-config", headers=STAFF, json={"timezone": "Mars/Olympus"}
    )
    assert bad_tz.status_code == 422 and bad_tz.json()["code"] == "unknown_timezone"
    ok = await api.put(
        f"/v1/stores/{store}/notify-config",
        headers=STAFF,
        json={"chain_id": chain, "timezone": "Europe/Paris", "locale": "en"},
    )
    assert ok.status_code == 200
    profile = await repo.store(store)
    assert profile.reminder_offsets_min == (2880, 60) and profile.timezone == "Europe/Paris"
    assert (await repo.channel_spec(store, "line"))["url"] == hook["url"]
    assert (await api.get(f"/v1/stores/{store}/notify-config")).json()["chain_id"] == chain
    assert (await api.get("/v1/stores/none-such/notify-config")).status_code == 404
    assert (await api.get("/v1/notifications/none-such")).status_code == 404
