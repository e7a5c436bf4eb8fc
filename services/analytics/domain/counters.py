"""Which counters one event increments (pure: no I/O, no clock).

A KPI document holds the counters of one store on one store-local day. Every counter is a plain
count, so documents add up: a week, a region or the chain is the sum of its store-days.

Counter names are flat (`rejected__slot_taken`) so they can be `$inc`-ed as `counts.<name>`
(no dots inside a field name, which MongoDB and FerretDB refuse).

"Attended" is the `checked_in` count: the booking lifecycle only allows
confirmed -> checked_in -> completed (services/booking/domain/model.py), so every completed visit
was checked in once, and counting `completed` as well would count the same visit twice.
"""

from __future__ import annotations

from collections.abc import Mapping

Increments = dict[str, int]

# Booking facts whose kind maps to one counter of the same name. `reassigned` arrives with
# FactKind 1.1; it is matched by value, so this module needs no schema change to count it.
_SIMPLE_FACTS = frozenset(
    {
        "requested",
        "confirmed",
        "rejected",
        "cancelled",
        "rescheduled",
        "checked_in",
        "no_show",
        "completed",
        "displaced",
        "reassigned",
        "waitlist_joined",
        "waitlist_offered",
        "waitlist_filled",
    }
)

# Cancellation lead time buckets: (upper bound in minutes, exclusive; name).
LEAD_BUCKETS: tuple[tuple[int, str], ...] = (
    (120, "lt_2h"),
    (24 * 60, "2h_24h"),
    (7 * 24 * 60, "1d_7d"),
)
LEAD_BUCKET_NAMES: tuple[str, ...] = (*(name for _, name in LEAD_BUCKETS), "ge_7d", "unknown")


def lead_bucket(lead_minutes: int | None) -> str:
    if lead_minutes is None:
        return "unknown"
    for bound, name in LEAD_BUCKETS:
        if lead_minutes < bound:
            return name
    return "ge_7d"


def booking_fact_increments(
    fact: str,
    *,
    reason: str | None = None,
    cancelled_by: str | None = None,
    late: bool | None = None,
    lead_minutes: int | None = None,
) -> Increments:
    """Counters for one BookingFact (kind given by its string value)."""
    if fact not in _SIMPLE_FACTS:
        return {"unknown_fact": 1}
    inc: Increments = {fact: 1}
    if fact == "rejected":
        inc[f"rejected__{reason or 'unknown'}"] = 1
    elif fact == "cancelled":
        inc[f"cancelled_by__{cancelled_by or 'unknown'}"] = 1
        inc[f"cancelled_lead__{lead_bucket(lead_minutes)}"] = 1
        if late:
            inc["cancelled_late"] = 1
    return inc


def view_increments() -> Increments:
    return {"views": 1}


def delivery_increments(status: str) -> Increments:
    """A delivery attempt; its final outcome is `sent` or `dead_lettered` (`failed` retries)."""
    return {"delivery_attempts": 1, f"delivery__{status}": 1}


def feedback_increments(rating: int) -> Increments:
    return {"feedback": 1, "rating_sum": rating, f"rating__{rating}": 1}


def add_into(total: dict[str, int], inc: Mapping[str, int]) -> None:
    for name, value in inc.items():
        total[name] = total.get(name, 0) + value
