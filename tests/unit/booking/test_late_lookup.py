"""The pending status that carries a late lookup: what it stores, and what a reader gets back."""

from __future__ import annotations

import orjson
import pytest

from services.booking.adapters.replies import PENDING, LateLookup, Outcome, decides
from services.booking.api.commands import LateRender


def lookup(scanned_to: int | None = None) -> LateLookup:
    return LateLookup(
        store_id="s-1",
        command_event_id="evt-1",
        accepts=("BookingConfirmed", "BookingRejected"),
        sent_ms=1_764_000_000_000,
        render={"kind": "request", "idempotency_key": "k", "timezone": "Europe/Berlin",
                "subject_id": None},
        scanned_to=scanned_to,
    )  # fmt: skip


def test_a_pending_status_round_trips_its_lookup_and_still_reads_as_pending() -> None:
    stored = lookup(scanned_to=42).pending_json()
    assert orjson.loads(stored)["status"] == "pending"
    assert LateLookup.of_pending(stored) == lookup(scanned_to=42)


def test_an_outcome_or_a_plain_pending_status_carries_no_lookup() -> None:
    assert LateLookup.of_pending(Outcome(201, b'{"booking_id":"b"}').stored()) is None
    assert LateLookup.of_pending(PENDING) is None
    # one another version wrote: plainly pending, never an error
    assert LateLookup.of_pending(b'{"status":"pending","lookup":{"store_id":"s"}}') is None
    assert LateLookup.of_pending(b'{"status":"pending","lookup":7}') is None


def test_only_an_accepted_type_caused_by_the_very_command_decides_it() -> None:
    head = {"type": "BookingConfirmed", "causation_id": "evt-1"}
    accepts = lookup().accepts
    assert decides(head, "evt-1", accepts)
    assert not decides({**head, "causation_id": "evt-2"}, "evt-1", accepts)
    assert not decides({**head, "type": "BookingCancelled"}, "evt-1", accepts)


def test_a_late_render_is_rebuilt_from_what_the_lookup_stored() -> None:
    assert LateRender.of(lookup().render) == LateRender("request", "k", "Europe/Berlin")
    change: dict[str, str | None] = {"kind": "change", "subject_id": "b-1"}
    assert LateRender.of(change) == LateRender("change", subject_id="b-1")
    with pytest.raises(ValueError, match="no late renderer"):
        LateRender.of({"kind": "unheard_of"})
