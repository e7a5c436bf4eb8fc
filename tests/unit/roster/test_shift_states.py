"""Draft/published state of a stored shift (pure helpers of the repository)."""

from datetime import date, time

from services.roster.adapters.repository import (
    is_pending,
    occupying_versions,
    shift_doc_fields,
    shift_view,
)
from services.roster.domain.model import Shift, TimeRange

SHIFT = Shift("s1", "o1", "b1", date(2026, 3, 24), TimeRange(time(9), time(17)),
              (TimeRange(time(12), time(13)),))  # fmt: skip


def doc(published: dict[str, object] | None, **current: object) -> dict[str, object]:
    return {"_id": "s1", **shift_doc_fields(SHIFT), **current, "published": published}


def test_states_follow_the_difference_between_current_and_published() -> None:
    snapshot = shift_doc_fields(SHIFT)
    assert shift_view(doc(None))["state"] == "draft"
    assert not is_pending(doc(snapshot))
    assert shift_view(doc(snapshot))["state"] == "published"
    assert shift_view(doc(snapshot, start="10:00"))["state"] == "draft"
    assert shift_view(doc(snapshot, cancelled=True))["state"] == "cancel_pending"
    cancelled = {**snapshot, "cancelled": True}
    assert shift_view(doc(cancelled, cancelled=True))["state"] == "cancelled"


def test_breaks_compare_by_value_not_by_key_order() -> None:
    snapshot = shift_doc_fields(SHIFT)
    reordered = {**snapshot, "breaks": [{"end": "13:00", "start": "12:00"}]}
    assert not is_pending(doc(reordered))


def occupying(doc_: dict[str, object]) -> list[tuple[str, bool]]:
    return [(f"{s.hours.start:%H}-{s.hours.end:%H}", sup) for s, sup in occupying_versions(doc_)]


def test_a_published_shift_holds_its_time_until_its_change_is_published() -> None:
    snapshot = shift_doc_fields(SHIFT)
    assert occupying(doc(None)) == [("09-17", False)]  # a first draft: what it would become
    assert occupying(doc(snapshot)) == [("09-17", False)]
    # a drafted edit: the published version (superseded) and the draft both hold time
    assert occupying(doc(snapshot, start="14:00", end="18:00")) == [
        ("09-17", True), ("14-18", False),
    ]  # fmt: skip
    assert occupying(doc(snapshot, cancelled=True)) == [("09-17", True)]  # cancel_pending
    cancelled = {**snapshot, "cancelled": True}
    assert occupying(doc(cancelled, cancelled=True)) == []
