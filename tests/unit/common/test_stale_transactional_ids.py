"""Which transactional ids a newly assigned task fences besides its group's own: those of the
layout that last committed to it, never the current layout's (other groups' live owners)."""

from __future__ import annotations

from optisync_common.txstream import stale_transactional_ids

APP = "optisync-booking-processor"


def test_the_current_layout_and_a_fresh_task_fence_nothing_more() -> None:
    assert stale_transactional_ids(APP, 5, "tg1", True, "tg1") == []
    assert stale_transactional_ids(APP, 5, None, False, "tg1") == []


def test_another_group_count_fences_the_producers_of_the_group_that_held_the_task() -> None:
    assert stale_transactional_ids(APP, 5, "tg3", True, "tg1") == [
        f"{APP}-tg3-2-0",
        f"{APP}-tg3-2-1",
    ]
    assert stale_transactional_ids(APP, 5, "tg1", True, "tg4") == [
        f"{APP}-tg1-0-0",
        f"{APP}-tg1-0-1",
    ]


def test_state_without_a_layout_record_fences_the_per_task_id_of_earlier_versions() -> None:
    assert stale_transactional_ids(APP, 7, None, True, "tg2") == [f"{APP}-7"]


def test_a_layout_this_code_did_not_write_is_left_alone() -> None:
    assert stale_transactional_ids(APP, 7, "tgx", True, "tg2") == []
    assert stale_transactional_ids(APP, 7, 3, True, "tg2") == []  # type: ignore[arg-type]
