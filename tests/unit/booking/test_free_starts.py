"""The availability view's counting of bookable starts, against its plain definition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.booking.domain.decisions import starts_within

QUARTER = 900
window = st.tuples(st.integers(0, 48), st.integers(1, 16)).map(
    lambda w: (w[0] * 300, (w[0] + w[1]) * 300)  # 5-minute edges: some fall between starts
)


def brute_force(starts, parties, duration):
    counts = []
    for start in starts:
        n = sum(
            any(s <= start and start + duration <= e for s, e in windows) for windows in parties
        )
        if n:
            counts.append((start, n))
    return counts


@given(
    st.lists(st.lists(window, max_size=6).map(sorted), max_size=5),
    st.sampled_from([QUARTER, 2 * QUARTER, 1800, 2400, 3600]),
    st.integers(0, 3),
)
def test_each_start_counts_the_parties_with_room_for_the_exam(parties, duration, offset):
    """Overlapping windows of one party (two shifts on one day) still count it once."""
    starts = [offset * 300 + i * QUARTER for i in range(20)]
    assert starts_within(starts, parties, duration) == brute_force(starts, parties, duration)


def test_a_window_ending_exactly_at_the_exam_end_holds_it():
    starts = [0, 900, 1800, 2700]
    assert starts_within(starts, [[(900, 2700)], [(0, 1800)]], 1800) == [(0, 1), (900, 1)]
