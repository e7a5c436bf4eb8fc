from collections import defaultdict
from datetime import date, datetime, timedelta
from itertools import combinations

from schemas.events.roster import ShiftPublished
from services.roster.adapters.events import chain_events
from services.roster.domain.demo import demo_chain

MONDAY = date(2026, 11, 23)


def test_demo_chain_has_the_promised_shape():
    chain = demo_chain(MONDAY)
    assert len(chain.stores) == 3
    assert len(chain.optometrists) == 6
    assert {s.region for s in chain.stores} == {"cn"}
    days = {s.day for s in chain.shifts}
    assert days == {MONDAY + timedelta(days=i) for i in range(7)}
    # every store has someone working every day of the week
    for store in chain.stores:
        for day in days:
            assert any(s.store_id == store.store_id and s.day == day for s in chain.shifts)


def test_shifts_lie_inside_opening_hours_and_breaks_inside_shifts():
    chain = demo_chain(MONDAY)
    stores = {s.store_id: s for s in chain.stores}
    for shift in chain.shifts:
        hours = stores[shift.store_id].hours_on(shift.day)
        assert any(r.start <= shift.hours.start and shift.hours.end <= r.end for r in hours)
        for b in shift.breaks:
            assert shift.hours.start <= b.start < b.end <= shift.hours.end


def test_no_optometrist_works_two_overlapping_shifts_anywhere():
    by_person_day = defaultdict(list)
    for shift in demo_chain(MONDAY).shifts:
        by_person_day[(shift.optometrist_id, shift.day)].append(shift)
    for shifts in by_person_day.values():
        for a, b in combinations(shifts, 2):
            start_a = datetime.combine(a.day, a.hours.start)
            start_b = datetime.combine(b.day, b.hours.start)
            end_a = datetime.combine(a.day, a.hours.end)
            end_b = datetime.combine(b.day, b.hours.end)
            assert end_a <= start_b or end_b <= start_a


def test_shifts_only_at_stores_the_optometrist_works_at():
    chain = demo_chain(MONDAY)
    works_at = {o.optometrist_id: set(o.store_ids) for o in chain.optometrists}
    for shift in chain.shifts:
        assert shift.store_id in works_at[shift.optometrist_id]


def test_demo_events_are_valid_contract_payloads_in_dependency_order():
    events = list(chain_events(demo_chain(MONDAY)))
    stable_ids = [stable for _, stable, _ in events]
    assert len(stable_ids) == len(set(stable_ids))  # stable ids make re-seeding idempotent
    seen_stores: set[str] = set()
    for store_id, _, payload in events:
        if payload.event_type == "StoreRegistered":
            seen_stores.add(store_id)
        else:
            assert store_id in seen_stores  # a store is registered before anything about it
        if isinstance(payload, ShiftPublished):
            assert payload.store_id == store_id


def test_demo_chain_is_deterministic():
    assert demo_chain(MONDAY) == demo_chain(MONDAY)
