"""How the processor's tables stop growing: store-days and bookings are forgotten once their
day is more than `retain_days` behind (a day more, as a store's date may be a day off UTC's).

Without it, every day a store opens adds its store-day and its bookings to the tables for good
(a 500-store chain: some 30,000 bookings a day), so memory, the state changelog, the local copy
and every restore would grow without end. A past day is never booked again (`in_past`), and a
booking that old no longer changes; a command for one is then answered `unknown_booking`. The
booking documents in MongoDB, the history customers and HQ read, are not touched.

The tables are not ordered by date, so a sweep looks at every key: it takes a snapshot of the
keys every `every_s` and checks `per_batch` of them with each of the task's batches (an idle
task has one a second), so no batch waits for a whole sweep: for a task of 300,000 bookings,
the snapshot took 8 ms and each slice of 2,000 keys about 1 ms while half of them went.
Deletions go to the changelog as tombstones, in the batch's transaction like any change, and
so does a tombstone for each forgotten day's view on `availability.v1` (compacted: the topic
forgets the view, and a projection rebuilt from it no longer reads it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from services.booking.adapters.processor import ProcessorTables, Table
from services.booking.adapters.processor_state import Json


@dataclass
class Forgotten:
    days: list[tuple[str, dt.date]] = field(default_factory=list)  # (store id, local date)
    bookings: int = 0

    def __len__(self) -> int:
        return len(self.days) + self.bookings


class PastRetirement:
    """One task's sweep (its state is this process's alone: a restore simply starts over)."""

    def __init__(self, retain_days: int, *, every_s: float = 3600.0, per_batch: int = 500):
        if retain_days < 1:
            raise ValueError("retain_days must be at least 1")
        self.retain_days = retain_days
        self.every_s = every_s
        self.per_batch = per_batch
        self._days: list[str] = []  # keys still to look at in this sweep
        self._bookings: list[str] = []
        self._next_sweep_at: float | None = None  # epoch seconds; None: at the first batch

    def step(self, tables: ProcessorTables, now: dt.datetime) -> Forgotten:
        """Look at the next keys of the sweep (starting one when due): what this forgot."""
        forgotten = Forgotten()
        epoch = now.timestamp()
        if not (self._days or self._bookings):
            if self._next_sweep_at is not None and epoch < self._next_sweep_at:
                return forgotten
            self._days, self._bookings = list(tables.days), list(tables.bookings)
            self._next_sweep_at = epoch + self.every_s
        cutoff = retention_cutoff(now, self.retain_days).isoformat()  # ISO dates compare as text
        days, budget = _forget(self._days, tables.days, cutoff, self.per_batch)
        bookings, _ = _forget(self._bookings, tables.bookings, cutoff, budget)
        forgotten.bookings = len(bookings)
        for key, day in days:
            store_id = key.rsplit("|", 1)[0]
            forgotten.days.append((store_id, dt.date.fromisoformat(day["date"])))
        return forgotten

    @property
    def sweeping(self) -> bool:
        return bool(self._days or self._bookings)


def retention_cutoff(now: dt.datetime, retain_days: int) -> dt.date:
    """Store-local days before this one are forgotten (a day more than `retain_days`, as a
    store's date may be a day off UTC's): the booking API refuses changes to them alike."""
    return (now - dt.timedelta(days=retain_days + 1)).date()


def _forget(
    keys: list[str], table: Table, cutoff: str, budget: int
) -> tuple[list[tuple[str, Json]], int]:
    """Look at up to `budget` of `keys` (taking them off the list) and delete those dated
    before `cutoff`: what was deleted, and the budget left."""
    deleted = []
    while keys and budget > 0:
        key = keys.pop()
        budget -= 1
        value = table.get(key)
        if value is not None and value["date"] < cutoff:
            del table[key]
            deleted.append((key, value))
    return deleted, budget
