"""Roster use cases: load, validate (pure rules), then one outbox commit of state + events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from optisync_common.clock import Clock
from schemas.envelope import Envelope, deterministic_event_id, new_envelope
from schemas.events.base import EventPayload
from services.roster.adapters import events
from services.roster.adapters.outbox import Effect, Outbox
from services.roster.adapters.repository import (
    RosterRepository,
    current_fields,
    is_pending,
    occupying_versions,
    optometrist_from_doc,
    shift_doc_fields,
    shift_from_fields,
    store_from_doc,
    template_doc,
    template_from_doc,
)
from services.roster.domain import rules
from services.roster.domain.localtime import zone
from services.roster.domain.model import (
    ExamType,
    Leave,
    Optometrist,
    Shift,
    Store,
    Training,
    WeeklyTemplate,
)
from services.roster.domain.rules import PlacedShift, RosterViolation
from services.roster.domain.templates import expand

Document = dict[str, Any]


@dataclass(frozen=True)
class Emitted:
    """What a change published (or staged for the sweeper when Kafka was unreachable)."""

    sent: bool
    events: list[Envelope[Any]]

    def as_json(self) -> Document:
        return {
            "status": "published" if self.sent else "pending",
            "events": [
                {"event_id": str(e.event_id), "type": e.type, "store_id": e.store_id}
                for e in self.events
            ],
        }


class Change:
    """Collects effects and events of one command; event ids derive from stable parts."""

    def __init__(self, region: str, correlation_id: str, clock: Clock) -> None:
        self.region = region
        self.correlation_id = correlation_id
        self.now = clock.now()
        self.effects: list[Effect] = []
        self.events: list[Envelope[Any]] = []

    def set(self, collection: str, doc_id: str, fields: Document) -> None:
        self.effects.append(Effect(collection, doc_id, fields))

    def emit(self, store_id: str, payload: EventPayload, *id_parts: str) -> None:
        event_id = deterministic_event_id("roster", *id_parts, payload.event_type, store_id)
        self.events.append(
            new_envelope(
                payload, region=self.region, store_id=store_id,
                correlation_id=self.correlation_id, occurred_at=self.now, event_id=event_id,
            )
        )  # fmt: skip


class RosterCommands:
    def __init__(self, repo: RosterRepository, outbox: Outbox, clock: Clock, region: str) -> None:
        self.repo = repo
        self.outbox = outbox
        self.clock = clock
        self.region = region
        self._lock = asyncio.Lock()  # validate-then-write is one step per process

    def _change(self, correlation_id: str | None) -> Change:
        return Change(self.region, correlation_id or f"roster-{uuid.uuid4().hex}", self.clock)

    async def _commit(self, change: Change) -> Emitted:
        sent = await self.outbox.commit(change.effects, change.events)
        return Emitted(sent, change.events)

    # ------------------------------------------------------------------ lookups

    async def store(self, store_id: str, status: int = 404) -> Store:
        doc = await self.repo.get_store(store_id)
        if doc is None:
            raise RosterViolation(status, "unknown_store", f"no store {store_id!r}")
        return store_from_doc(doc)

    async def optometrist(
        self, optometrist_id: str, status: int = 404, on: date | None = None
    ) -> Optometrist:
        """The optometrist, if they still work on local date ``on`` (default: today)."""
        doc = await self.repo.get_optometrist(optometrist_id)
        if doc is None:
            raise RosterViolation(
                status, "unknown_optometrist", f"no optometrist {optometrist_id!r}"
            )
        left_on = doc.get("left_on")
        day = on or self.clock.now().date()
        if left_on is not None and day >= date.fromisoformat(left_on):
            raise RosterViolation(
                422, "optometrist_left", f"{optometrist_id} does not work here from {left_on}"
            )
        return optometrist_from_doc(doc)

    def today_in(self, timezone: str) -> date:
        return self.clock.now().astimezone(zone(timezone)).date()

    # ------------------------------------------------------------------ stores, exam types, staff

    async def put_store(self, store: Store, correlation_id: str | None = None) -> Emitted:
        async with self._lock:
            rules.check_opening_hours(store)
            old = await self.repo.get_store(store.store_id)
            revision = (old or {}).get("revision", 0) + 1
            change = self._change(correlation_id)
            registered = events.store_registered(store)
            doc = registered.model_dump(mode="json")
            if _unchanged(old, doc):
                return Emitted(True, [])
            change.set("stores", store.store_id, {**doc, "revision": revision})
            rev = str(revision)
            if old is None:
                change.emit(store.store_id, registered, "store", store.store_id, rev)
                for exam in await self.repo.list_exam_types():
                    change.emit(
                        store.store_id, events.exam_type_defined(_exam(exam)),
                        "exam", exam["code"], str(exam.get("revision", 1)),
                    )  # fmt: skip
            elif _only_hours_changed(old, registered.model_dump(mode="json")):
                hours = events.store_hours_changed(store)
                change.emit(store.store_id, hours, "store", store.store_id, rev)
            else:
                change.emit(store.store_id, registered, "store", store.store_id, rev)
            return await self._commit(change)

    async def shifts_outside_hours(self, store_id: str) -> list[str]:
        """Published shifts from today on that the store's current hours no longer cover (the
        processor re-homes their bookings; the roster leaves fixing them to the manager)."""
        store = await self.store(store_id)
        today = self.today_in(store.timezone)
        query = {"published.store_id": store_id, "published.date": {"$gte": today.isoformat()}}
        outside = []
        async for doc in self.repo.db.shifts.find(query):
            if doc["published"]["cancelled"]:
                continue
            shift = shift_from_fields(doc["_id"], doc["published"])
            try:
                rules.check_shift(shift, store, _anyone_at(store_id))
            except RosterViolation:
                outside.append(shift.shift_id)
        return sorted(outside)

    async def put_exam_type(self, exam: ExamType, correlation_id: str | None = None) -> Emitted:
        async with self._lock:
            old = await self.repo.get_exam_type(exam.code)
            revision = (old or {}).get("revision", 0) + 1
            change = self._change(correlation_id)
            payload = events.exam_type_defined(exam)
            doc = payload.model_dump(mode="json")
            if _unchanged(old, doc):
                return Emitted(True, [])
            change.set("exam_types", exam.code, {**doc, "revision": revision})
            for store in await self.repo.list_stores():  # exam types are chain-wide
                change.emit(store["store_id"], payload, "exam", exam.code, str(revision))
            return await self._commit(change)

    async def put_optometrist(
        self, opt: Optometrist, correlation_id: str | None = None, *, rehire: bool = False
    ) -> Emitted:
        """Hire or change an optometrist. An announced departure survives the change (and is
        announced again after OptometristJoined, which clears it downstream) unless
        ``rehire``."""
        async with self._lock:
            await self._check_stores(opt)
            old = await self.repo.get_optometrist(opt.optometrist_id)
            left_on = None if rehire else (old or {}).get("left_on")
            joined = events.optometrist_joined(opt)
            doc = {**joined.model_dump(mode="json"), "left_on": left_on}
            if _unchanged(old, doc):
                return Emitted(True, [])
            revision = (old or {}).get("revision", 0) + 1
            change = self._change(correlation_id)
            change.set("optometrists", opt.optometrist_id, {**doc, "revision": revision})
            rev = str(revision)
            previous = set((old or {}).get("store_ids", []))
            for store_id in opt.store_ids:
                change.emit(store_id, joined, "opt", opt.optometrist_id, rev)
                if left_on is not None:
                    left = events.optometrist_left(opt.optometrist_id, date.fromisoformat(left_on))
                    change.emit(store_id, left, "opt", opt.optometrist_id, rev)
                if store_id not in previous:
                    await self._send_time_off(change, opt.optometrist_id, store_id, rev)
            for store_id in sorted(previous - set(opt.store_ids)):
                store = await self.repo.get_store(store_id)
                today = self.today_in(store["timezone"] if store else "UTC")
                left = events.optometrist_left(opt.optometrist_id, today)
                change.emit(store_id, left, "opt", opt.optometrist_id, rev)
            return await self._commit(change)

    async def _send_time_off(
        self, change: Change, optometrist_id: str, store_id: str, rev: str
    ) -> None:
        """Leave and training not over yet, to a store the optometrist newly works at: they
        were sent only to the optometrist's stores of the time."""
        today = self.today_in((await self.store(store_id, status=422)).timezone)
        for leave in await self.repo.leave_ending_from(optometrist_id, today):
            granted = events.leave_granted(leave)
            change.emit(store_id, granted, "opt", optometrist_id, rev, leave.leave_id)
        # a day's margin for training kept in another zone; each is checked in its own
        for training in await self.repo.training_from(optometrist_id, today - timedelta(days=1)):
            if training.day >= self.today_in(training.timezone):
                scheduled = events.training_scheduled(training)
                change.emit(store_id, scheduled, "opt", optometrist_id, rev, training.training_id)

    async def _check_stores(self, opt: Optometrist) -> None:
        if opt.home_store_id not in opt.store_ids:
            raise RosterViolation(
                422, "home_store_not_listed",
                f"home store {opt.home_store_id} must be one of store_ids",
            )  # fmt: skip
        for store_id in opt.store_ids:
            await self.store(store_id, status=422)

    async def offboard(
        self, optometrist_id: str, effective_date: date, correlation_id: str | None = None
    ) -> Emitted:
        async with self._lock:
            opt = await self.optometrist(optometrist_id)
            home = await self.store(opt.home_store_id, status=422)
            if effective_date < self.today_in(home.timezone):
                raise RosterViolation(
                    422, "in_past", f"effective_date {effective_date} is before today"
                )
            change = self._change(correlation_id)
            change.set("optometrists", optometrist_id, {"left_on": effective_date.isoformat()})
            left = events.optometrist_left(optometrist_id, effective_date)
            for store_id in opt.store_ids:
                change.emit(store_id, left, "left", optometrist_id, effective_date.isoformat())
            return await self._commit(change)

    # ------------------------------------------------------------------ drafts

    async def draft_shift(self, shift: Shift) -> Document:
        async with self._lock:
            await self._validate_shift(shift)
            return await self._write_draft(shift, None)

    async def _write_draft(self, shift: Shift, template_id: str | None) -> Document:
        old = await self.repo.get_shift(shift.shift_id)
        fields = {**shift_doc_fields(shift), "shift_id": shift.shift_id}
        if template_id is not None:
            fields["template_id"] = template_id
        if old is None:
            fields.update(revision=0, published=None)
        await self.repo.db.shifts.update_one({"_id": shift.shift_id}, {"$set": fields}, upsert=True)
        return await self._shift_doc(shift.shift_id)

    async def cancel_shift(self, shift_id: str) -> Document | None:
        """A never-published draft is deleted; a published shift gets a pending cancellation."""
        async with self._lock:
            doc = await self._shift_doc(shift_id)
            if doc.get("published") is None:
                await self.repo.delete_shift(shift_id)
                return None
            await self.repo.db.shifts.update_one({"_id": shift_id}, {"$set": {"cancelled": True}})
            return await self._shift_doc(shift_id)

    async def swap(
        self, shift_id: str, optometrist_id: str | None, with_shift_id: str | None
    ) -> list[Document]:
        """Cover (another optometrist takes the shift) or exchange (two shifts trade their
        optometrists). Both become drafts; publishing emits ShiftChanged."""
        async with self._lock:
            first = await self._shift_doc(shift_id)
            if (optometrist_id is None) == (with_shift_id is None):
                raise RosterViolation(
                    422, "invalid_swap", "give exactly one of optometrist_id, with_shift_id"
                )
            if with_shift_id is None:
                assert optometrist_id is not None
                moves = [(first, optometrist_id)]
            else:
                second = await self._shift_doc(with_shift_id)
                moves = [
                    (first, second["optometrist_id"]),
                    (second, first["optometrist_id"]),
                ]
            moved = [
                (doc, shift_from_fields(doc["_id"], {**current_fields(doc), "optometrist_id": to}))
                for doc, to in moves
            ]
            ignore = {doc["_id"] for doc, _ in moved}
            for doc, shift in moved:
                if doc.get("cancelled"):
                    raise RosterViolation(409, "shift_cancelled", f"{doc['_id']} is cancelled")
                await self._validate_shift(shift, ignore=ignore, others=[s for _, s in moved])
            for _, shift in moved:
                await self.repo.db.shifts.update_one(
                    {"_id": shift.shift_id}, {"$set": {"optometrist_id": shift.optometrist_id}}
                )
            return [await self._shift_doc(doc["_id"]) for doc, _ in moved]

    async def put_template(self, template: WeeklyTemplate) -> None:
        async with self._lock:
            store = await self.store(template.store_id, status=422)
            opt = await self.optometrist(template.optometrist_id, status=422)
            for shift in expand(template, _monday(), _monday() + timedelta(days=6)):
                rules.check_shift(shift, store, opt)  # every weekday pattern fits the store
            await self.repo.save_template(template)

    async def expand_template(self, template_id: str, first: date, last: date) -> list[Document]:
        doc = await self.repo.get_template(template_id)
        if doc is None:
            raise RosterViolation(404, "unknown_template", f"no template {template_id!r}")
        if (last - first).days > 62:
            raise RosterViolation(422, "range_too_long", "expand at most 63 days at once")
        shifts = expand(template_from_doc(doc), first, last)
        async with self._lock:
            for shift in shifts:  # all or nothing: validate every day before drafting any
                await self._validate_shift(shift)
            return [await self._write_draft(s, template_id) for s in shifts]

    async def template(self, template_id: str) -> Document:
        doc = await self.repo.get_template(template_id)
        if doc is None:
            raise RosterViolation(404, "unknown_template", f"no template {template_id!r}")
        return template_doc(template_from_doc(doc))

    # ------------------------------------------------------------------ publishing

    async def publish_shifts(
        self, shift_ids: Iterable[str], correlation_id: str | None = None
    ) -> Emitted:
        async with self._lock:
            docs = [await self._shift_doc(i) for i in shift_ids]
            return await self._publish(docs, correlation_id)

    async def publish_store_week(
        self, store_id: str, week_start: date, correlation_id: str | None = None
    ) -> Emitted:
        """Every pending draft of the store for ``week_start`` .. +6 days, plus drafts that
        move a shift away from this store-week (their old version is cancelled here)."""
        async with self._lock:
            await self.store(store_id)
            last = week_start + timedelta(days=6)
            docs = await self.repo.shifts_of_store(store_id, week_start, last)
            moved_away = self.repo.db.shifts.find({
                "published.store_id": store_id,
                "published.date": {"$gte": week_start.isoformat(), "$lte": last.isoformat()},
            })  # fmt: skip
            seen = {d["_id"] for d in docs}
            docs += [d async for d in moved_away if d["_id"] not in seen]
            return await self._publish(docs, correlation_id)

    async def _publish(self, docs: list[Document], correlation_id: str | None) -> Emitted:
        pending = sorted(
            (d for d in docs if is_pending(d)),
            key=lambda d: (d["date"], d["start"], d["_id"]),
        )
        change = self._change(correlation_id)
        # the batch goes live at once: its shifts are checked as they will be, so a swap's
        # two sides pass together while one side alone meets the other's published version
        batch = {d["_id"] for d in pending}
        staying = [d for d in pending if not d.get("cancelled")]
        after = [shift_from_fields(d["_id"], current_fields(d)) for d in staying]
        for doc in pending:
            await self._publish_one(doc, change, batch, after)
        return await self._commit(change)

    async def _publish_one(
        self, doc: Document, change: Change, batch: AbstractSet[str], after: Sequence[Shift]
    ) -> None:
        """The events that take consumers from the published version to the current one:
        a new or moved (other store or date) or revived shift is cancelled where it was and
        published where it is; otherwise it is changed in place."""
        shift_id, published = doc["_id"], doc.get("published")
        current = current_fields(doc)
        rev = str(doc.get("revision", 0) + 1)
        change.set("shifts", shift_id, {"published": current, "revision": int(rev)})
        live = published is not None and not published["cancelled"]
        place = (current["store_id"], current["date"])
        moved = (
            not live
            or (published or {}).get("store_id", "") != place[0]
            or ((published or {}).get("date", "") != place[1])
        )
        if live and (current["cancelled"] or moved):
            old = shift_from_fields(shift_id, published or {})
            change.emit(old.store_id, events.shift_cancelled(old), "shift", shift_id, rev)
        if current["cancelled"]:
            return
        shift = shift_from_fields(shift_id, current)
        await self._validate_shift(shift, ignore=batch, others=after)
        tz = (await self.store(shift.store_id, status=422)).timezone
        payload = events.shift_published(shift, tz) if moved else events.shift_changed(shift, tz)
        change.emit(shift.store_id, payload, "shift", shift_id, rev)

    # ------------------------------------------------------------------ leave, training

    async def grant_leave(self, leave: Leave, correlation_id: str | None = None) -> Emitted:
        async with self._lock:
            opt = await self.optometrist(leave.optometrist_id, on=leave.start_date)
            home = await self.store(opt.home_store_id, status=422)
            rules.check_leave(leave, self.today_in(home.timezone))
            fields = {
                "leave_id": leave.leave_id, "optometrist_id": leave.optometrist_id,
                "start_date": leave.start_date.isoformat(),
                "end_date": leave.end_date.isoformat(), "kind": leave.kind,
            }  # fmt: skip
            change = self._change(correlation_id)
            change.set("leave", leave.leave_id, fields)
            payload = events.leave_granted(leave)
            for store_id in opt.store_ids:
                change.emit(store_id, payload, "leave", leave.leave_id)
            return await self._commit_once(change, "leave", leave.leave_id, fields)

    async def schedule_training(
        self, training: Training, correlation_id: str | None = None
    ) -> Emitted:
        async with self._lock:
            opt = await self.optometrist(training.optometrist_id, on=training.day)
            rules.check_training(training, self.today_in(training.timezone))
            fields = {
                "training_id": training.training_id, "optometrist_id": training.optometrist_id,
                "date": training.day.isoformat(), "start": f"{training.hours.start:%H:%M}",
                "end": f"{training.hours.end:%H:%M}", "timezone": training.timezone,
            }  # fmt: skip
            change = self._change(correlation_id)
            change.set("training", training.training_id, fields)
            payload = events.training_scheduled(training)
            for store_id in opt.store_ids:
                change.emit(store_id, payload, "training", training.training_id)
            return await self._commit_once(change, "training", training.training_id, fields)

    async def _commit_once(
        self, change: Change, collection: str, doc_id: str, fields: Document
    ) -> Emitted:
        """A retry of the same grant answers like the first time (same event ids) without
        emitting again; the same id with other content is a conflict."""
        existing = await self.repo.db[collection].find_one({"_id": doc_id})
        if existing is None:
            return await self._commit(change)
        if {k: existing.get(k) for k in fields} != fields:
            raise RosterViolation(409, "duplicate", f"{doc_id} exists with other content")
        return Emitted(True, change.events)

    # ------------------------------------------------------------------ helpers

    async def _shift_doc(self, shift_id: str) -> Document:
        doc = await self.repo.get_shift(shift_id)
        if doc is None:
            raise RosterViolation(404, "unknown_shift", f"no shift {shift_id!r}")
        return doc

    async def _validate_shift(
        self, shift: Shift, ignore: AbstractSet[str] = frozenset(), others: Sequence[Shift] = ()
    ) -> None:
        """Shape rules, then no overlap with the optometrist's other shifts: each stored one
        counts with its published and its draft version (see `occupying_versions`), except
        those in ``ignore``, which count as ``others`` (what a swap or batch makes of them)."""
        store = await self.store(shift.store_id, status=422)
        opt = await self.optometrist(shift.optometrist_id, status=422, on=shift.day)
        rules.check_shift(shift, store, opt)
        near = await self.repo.shifts_of_optometrist(
            shift.optometrist_id, shift.day - timedelta(days=1), shift.day + timedelta(days=1)
        )
        versions = [
            version
            for doc in near
            if doc["_id"] not in ignore
            for version in occupying_versions(doc)
        ]
        versions += [(other, False) for other in others]
        placed = [
            PlacedShift(other, (await self.store(other.store_id)).timezone, superseded)
            for other, superseded in versions
            if other.optometrist_id == shift.optometrist_id
        ]
        rules.check_no_overlap(PlacedShift(shift, store.timezone), placed)


def _exam(doc: Document) -> ExamType:
    return ExamType(
        doc["code"], doc["name"], doc["duration_minutes"], doc["required_skill"],
        doc.get("preparation_notes"),
    )  # fmt: skip


def _anyone_at(store_id: str) -> Optometrist:
    return Optometrist("-", "-", frozenset(), store_id, (store_id,))


def _unchanged(old: Document | None, new: Document) -> bool:
    """A PUT repeating what is stored changes nothing and emits nothing."""
    return old is not None and all(old.get(k) == v for k, v in new.items())


def _only_hours_changed(old: Document, new: Document) -> bool:
    keys = set(old) | set(new)
    differing = {k for k in keys - {"revision", "_id"} if old.get(k) != new.get(k)}
    return bool(differing) and differing <= {"opening_hours", "slot_minutes"}


def _monday() -> date:
    return date(2024, 1, 1)  # any week: templates are checked weekday by weekday
