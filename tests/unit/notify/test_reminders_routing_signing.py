"""Reminder times (store-local, DST), keyword routing, rating replies, signatures, backoff,
circuit breaker."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from schemas.events.messages import StaffRole
from services.notify.domain import reminders
from services.notify.domain.resilience import CircuitBreaker, backoff_s
from services.notify.domain.routing import DEFAULT_RULES, RoutingRule, parse_rating, route
from services.notify.domain.signing import SignatureError, sign, staff_of_token, staff_token, verify

UTC = dt.UTC


def test_day_offsets_follow_local_wall_time_across_dst():
    # Berlin springs forward on 2026-03-29: 10:00 CEST on the 29th; 24 h "before" in local time
    # is 10:00 CET on the 28th, which is 23 real hours earlier.
    slot = dt.datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    due = reminders.due_time(slot, 1440, "Europe/Berlin")
    assert due == dt.datetime(2026, 3, 28, 9, 0, tzinfo=UTC)
    assert reminders.due_time(slot, 120, "Europe/Berlin") == slot - dt.timedelta(hours=2)


def test_schedule_skips_reminders_no_longer_useful():
    slot = dt.datetime(2026, 3, 5, 2, 0, tzinfo=UTC)
    notice = dt.timedelta(minutes=30)
    full = reminders.schedule(
        slot, (1440, 120), "Asia/Shanghai", now=slot - dt.timedelta(days=3), min_notice=notice
    )
    assert [(o, due) for o, due, _ in full] == [
        (1440, slot - dt.timedelta(hours=24)),
        (120, slot - dt.timedelta(hours=2)),
    ]
    # the 24 h reminder is stale once the 2 h one is due
    assert full[0][2] == slot - dt.timedelta(hours=2)
    assert full[1][2] == slot - notice
    # booked 5 hours ahead: only the 2 h reminder
    late = reminders.schedule(
        slot, (1440, 120), "Asia/Shanghai", now=slot - dt.timedelta(hours=5), min_notice=notice
    )
    assert [o for o, _, _ in late] == [120]
    assert (
        reminders.schedule(
            slot,
            (1440, 120),
            "Asia/Shanghai",
            now=slot - dt.timedelta(minutes=20),
            min_notice=notice,
        )
        == []
    )


@pytest.mark.parametrize(
    ("text", "locale", "role", "rule"),
    [
        ("请问散瞳检查后多久能开车？", "zh-CN", StaffRole.OPTOMETRIST, "zh-dilation"),
        ("我想配隐形眼镜", "zh-CN", StaffRole.CONTACT_LENS_SPECIALIST, "zh-contact-lens"),
        ("验光价格是多少", "zh-CN", StaffRole.FRONT_DESK, "zh-price"),
        ("Do I need DILATION drops?", "en", StaffRole.OPTOMETRIST, "en-dilation"),
        (
            "Can I get contact lenses fitted?",
            "en",
            StaffRole.CONTACT_LENS_SPECIALIST,
            "en-contact-lens",
        ),
        ("What is the price of an exam?", "en", StaffRole.FRONT_DESK, "en-price"),
        ("隐形 please", "en", StaffRole.CONTACT_LENS_SPECIALIST, "zh-contact-lens"),
        ("Where do I park?", "en", StaffRole.FRONT_DESK, None),
        ("你们几点开门", "zh-CN", StaffRole.FRONT_DESK, None),
    ],
)
def test_keyword_routing(text, locale, role, rule):
    decision = route(text, locale, DEFAULT_RULES)
    assert (decision.role, decision.rule_id) == (role, rule)


def test_priority_decides_between_matching_rules():
    rules = [
        RoutingRule("a", "en", ("lens",), StaffRole.FRONT_DESK, 50),
        RoutingRule("b", "en", ("lens",), StaffRole.OPTOMETRIST, 5),
    ]
    assert route("lens?", "en", rules).rule_id == "b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", (5, False)),
        (" 4分", (4, False)),
        ("３", (3, False)),
        ("2 stars, too long a wait", (2, True)),
        ("15", None),
        ("6", None),
        ("great", None),
        ("0", None),
    ],
)
def test_rating_replies(text, expected):
    assert parse_rating(text) == expected


def test_signature_roundtrip_and_rejections():
    body = b'{"a":1}'
    header = sign("s3cret", 1000, body)
    assert verify("s3cret", header, body, now=1010, max_skew_s=300) == header.split("v1=")[1]
    cases = [
        (None, "signature_missing"),
        ("garbage", "signature_malformed"),
        (sign("other", 1000, body), "signature_invalid"),
        (sign("s3cret", 1000, b'{"a":2}'), "signature_invalid"),
        (sign("s3cret", 100, body), "signature_expired"),
    ]
    for bad, code in cases:
        with pytest.raises(SignatureError) as info:
            verify("s3cret", bad, body, now=1010, max_skew_s=300)
        assert info.value.code == code


def test_staff_tokens():
    token = staff_token("k" * 20, "opt-7")
    assert staff_of_token("k" * 20, token) == "opt-7"
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert staff_of_token("k" * 20, tampered) is None
    assert staff_of_token("other", token) is None


def test_backoff_grows_with_jitter_and_is_capped():
    rng = random.Random(7)
    delays = [backoff_s(a, 1.0, 30.0, rng) for a in range(1, 8)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(30.0, 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert delays[-1] <= 30.0


def test_circuit_breaker_opens_then_half_opens():
    breaker = CircuitBreaker(failures=3, open_s=10)
    for t in range(3):
        assert breaker.allow(t)
        breaker.record_failure(t)
    assert breaker.state == "open" and not breaker.allow(5)
    assert breaker.retry_at(5) == 12
    assert breaker.allow(13)  # one trial
    assert not breaker.allow(13.5)
    breaker.record_failure(14)
    assert not breaker.allow(15)
    assert breaker.allow(25)
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow(26)
