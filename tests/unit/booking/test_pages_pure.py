"""Pure parts of the pages: manage-link tokens, phone numbers, the store directory, i18n."""

from __future__ import annotations

import datetime as dt

import pytest

from optisync_common.clock import FixedClock
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    OptometristLeft,
    StoreRegistered,
)
from services.booking.web.directory import StoreDirectory, distance_km
from services.booking.web.i18n import pick_locale
from services.booking.web.phone import InvalidPhone, normalize_phone
from services.booking.web.tokens import (
    ExpiredToken,
    InvalidToken,
    feed_token,
    manage_token,
    read_feed_token,
    read_manage_token,
)

SECRET = b"test-secret"
NOW = dt.datetime(2031, 3, 1, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=30)


def test_a_manage_token_names_its_booking_and_customer_until_it_expires() -> None:
    token = manage_token(SECRET, "b-1", "cust-9", LATER)
    grant = read_manage_token(SECRET, token, NOW)
    assert (grant.booking_id, grant.customer_ref, grant.expires_at) == ("b-1", "cust-9", LATER)
    with pytest.raises(ExpiredToken):
        read_manage_token(SECRET, token, LATER)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: "x" + t,  # body changed
        lambda t: t.split(".")[0],  # signature missing
        lambda t: "",
        lambda t: "%%%.###",
    ],
)
def test_a_tampered_manage_token_is_refused(tamper) -> None:
    token = manage_token(SECRET, "b-1", "cust-9", LATER)
    with pytest.raises(InvalidToken):
        read_manage_token(SECRET, tamper(token), NOW)


def test_a_token_from_another_secret_or_purpose_is_refused() -> None:
    token = manage_token(SECRET, "b-1", "cust-9", LATER)
    with pytest.raises(InvalidToken):
        read_manage_token(b"other", token, NOW)
    with pytest.raises(InvalidToken):
        read_feed_token(SECRET, token)  # a manage link is not a feed link
    assert read_feed_token(SECRET, feed_token(SECRET, "opt-1")) == "opt-1"


@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("138 0013 8000", "+8613800138000"),
        ("+86 138-0013-8000", "+8613800138000"),
        ("0086 13800138000", "+8613800138000"),
        ("１３８００１３８０００", "+8613800138000"),  # full-width digits
        ("+49 (151) 2345 6789", "+4915123456789"),
        ("+1 415 555 0100", "+14155550100"),
    ],
)
def test_phone_numbers_are_normalised_to_e164(typed: str, e164: str) -> None:
    assert normalize_phone(typed) == e164


@pytest.mark.parametrize(
    "typed", ["", "12345", "0151 2345678", "+86 123 4567 8901", "+12", "abc", "+0123456789"]
)
def test_invalid_phone_numbers_are_refused(typed: str) -> None:
    with pytest.raises(InvalidPhone):
        normalize_phone(typed)


def _directory() -> StoreDirectory:
    d = StoreDirectory()
    hours = {"mon": [{"open": "09:00", "close": "18:00"}]}
    d.apply(
        "sh",
        StoreRegistered(store_id="sh", name="Shanghai Nanjing Rd", region="cn",
                        timezone="Asia/Shanghai", opening_hours=hours,
                        latitude=31.2352, longitude=121.4747, address="Nanjing Rd 1"),
    )  # fmt: skip
    d.apply(
        "bj",
        StoreRegistered(store_id="bj", name="Beijing Wangfujing", region="cn",
                        timezone="Asia/Shanghai", opening_hours=hours,
                        latitude=39.9149, longitude=116.4109),
    )  # fmt: skip
    d.apply("nowhere", StoreRegistered(store_id="nowhere", name="Online desk", region="cn",
                                       timezone="Asia/Shanghai", opening_hours=hours))  # fmt: skip
    d.apply("sh", ExamTypeDefined(code="std", name="Standard", duration_minutes=30,
                                  required_skill="general",
                                  preparation_notes="Bring glasses"))  # fmt: skip
    d.apply("sh", ExamTypeDefined(code="old", name="Old", duration_minutes=30,
                                  required_skill="general", active=False))  # fmt: skip
    d.apply("sh", OptometristJoined(optometrist_id="o1", name="Dr Li", skills=["general"],
                                    home_store_id="sh", store_ids=["sh"]))  # fmt: skip
    return d


def test_the_directory_lists_nearest_first_then_stores_without_a_position() -> None:
    d = _directory()
    near_beijing = (39.9, 116.4)
    rows = d.listing(near=near_beijing)
    assert [r["store_id"] for r in rows] == ["bj", "sh", "nowhere"]
    assert rows[0]["distance_km"] < 5 < 1000 < rows[1]["distance_km"]
    assert rows[2]["distance_km"] is None
    assert [r["store_id"] for r in d.listing()] == ["bj", "nowhere", "sh"]  # by name


def test_the_directory_searches_name_and_address_and_shows_active_exams_only() -> None:
    d = _directory()
    assert [r["store_id"] for r in d.listing("nanjing")] == ["sh"]
    (sh,) = d.listing("Nanjing Rd 1")
    assert [e["code"] for e in sh["exam_types"]] == ["std"]
    assert sh["exam_types"][0]["preparation_notes"] == "Bring glasses"


def test_a_departing_optometrist_is_shown_until_the_store_local_effective_date() -> None:
    announced = _directory()
    announced.apply("sh", OptometristLeft(optometrist_id="o1", effective_date=dt.date(2999, 1, 1)))
    assert (entry := announced.get("sh")) is not None and entry.optometrists == {"o1": "Dr Li"}
    clock = FixedClock(dt.datetime(2026, 12, 30, 12, tzinfo=dt.UTC))  # 20:00 in Shanghai
    d = StoreDirectory(clock)
    d.apply("sh", StoreRegistered(store_id="sh", name="Nanjing Rd", region="cn",
                                  timezone="Asia/Shanghai", opening_hours={}))  # fmt: skip
    d.apply("sh", OptometristJoined(optometrist_id="o1", name="Dr Li", skills=["general"],
                                    home_store_id="sh", store_ids=["sh"]))  # fmt: skip
    d.apply("sh", OptometristLeft(optometrist_id="o1", effective_date=dt.date(2026, 12, 31)))
    entry = d.get("sh")
    assert entry is not None and entry.optometrists == {"o1": "Dr Li"}  # announced ahead
    clock.set(dt.datetime(2026, 12, 30, 16, tzinfo=dt.UTC))  # 31 December 00:00 in Shanghai
    assert entry.optometrists == {}
    d.apply("sh", OptometristJoined(optometrist_id="o1", name="Dr Li", skills=["general"],
                                    home_store_id="sh", store_ids=["sh"]))  # fmt: skip
    assert entry.optometrists == {"o1": "Dr Li"}  # rehired


def test_distance_is_great_circle() -> None:
    assert distance_km((31.2304, 121.4737), (39.9042, 116.4074)) == pytest.approx(1067, abs=10)


@pytest.mark.parametrize(
    ("explicit", "header", "expected"),
    [
        (None, "zh-TW,zh;q=0.9,en;q=0.8", "zh-CN"),
        (None, "en-GB,en;q=0.9", "en"),
        ("zh-CN", "en", "zh-CN"),
        ("en", "zh-CN", "en"),
        (None, "de-DE", "en"),
        ("xx", None, "en"),
    ],
)
def test_page_locale(explicit: str | None, header: str | None, expected: str) -> None:
    assert pick_locale(explicit, header) == expected
