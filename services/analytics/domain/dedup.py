"""Exactly-once in effect, the pure part: which decoded events of a batch still have to be
counted, and the one atomic update per KPI document they add up to.

Every KPI document keeps, per source partition, the highest offset already folded into it (its
*watermark*). An event is counted into a document at most once because

* a record redelivered by Kafka (same partition and offset, e.g. offsets not committed before a
  crash) is at or below the document's watermark, so it is skipped here; and
* the same event id arriving again in another record (a producer retry, a replay of the topic)
  is refused by the seen-ids collection, whose unique `_id` is the event id.

The crash window between claiming an event id and updating its document is closed by the
claim recording its source record: a redelivered record that finds its *own* claim and is above
its document's watermark was claimed but never counted, so it is counted now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.analytics.domain.counters import Increments, add_into


@dataclass(frozen=True)
class Item:
    """One decoded, countable event of a batch."""

    event_id: str
    source: str  # partition key, e.g. "booking_facts_v1~3" (no dots: it is a field name)
    offset: int
    doc_id: str  # "<store_id>|<local date>"
    store_id: str
    region: str
    date: str
    increments: Increments

    @property
    def claim(self) -> str:
        return f"{self.source}@{self.offset}"


@dataclass
class DocDelta:
    """Everything a batch adds to one KPI document, applied in one atomic update."""

    store_id: str
    region: str
    date: str
    counts: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)
    events: int = 0


def source_key(topic: str, partition: int) -> str:
    return f"{topic.replace('.', '_')}~{partition}"


def doc_id(store_id: str, date: str) -> str:
    return f"{store_id}|{date}"


def first_occurrences(items: Iterable[Item]) -> tuple[list[Item], list[Item]]:
    """(first record of each event id in the batch, later repeats)."""
    seen: set[str] = set()
    first: list[Item] = []
    repeats: list[Item] = []
    for item in items:
        (repeats if item.event_id in seen else first).append(item)
        seen.add(item.event_id)
    return first, repeats


def not_yet_applied(
    items: Iterable[Item], watermarks: Mapping[str, Mapping[str, int]]
) -> tuple[list[Item], list[Item]]:
    """(items above their document's watermark for their partition, items already folded in)."""
    pending: list[Item] = []
    applied: list[Item] = []
    for item in items:
        mark = watermarks.get(item.doc_id, {}).get(item.source, -1)
        (pending if item.offset > mark else applied).append(item)
    return pending, applied


def deltas(items: Iterable[Item]) -> dict[str, DocDelta]:
    """Per document: summed increments and the new watermark of every partition involved."""
    out: dict[str, DocDelta] = {}
    for item in items:
        delta = out.get(item.doc_id)
        if delta is None:
            delta = out[item.doc_id] = DocDelta(item.store_id, item.region, item.date)
        add_into(delta.counts, item.increments)
        delta.watermarks[item.source] = max(delta.watermarks.get(item.source, -1), item.offset)
        delta.events += 1
    return out
