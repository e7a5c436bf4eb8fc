"""Redis views of the booking service (prefix `booking:`), written by the projector only.

* `booking:store:{store_id}`: the store catalog (time zone, opening hours, slot grid, exam types)
  built from `roster.events.v1`, so the API validates a request without asking anyone.
* `booking:avail:{store_id}:{YYYY-MM-DD}`: the latest `StoreDayAvailability` payload as JSON; a
  view only replaces one with a lower `seq` (compare-and-set in Lua), so replays and
  out-of-order deliveries never move a view backwards.

Every write publishes the changed keys on `booking:views` in the same atomic step, so an API
process may keep the keys it reads in memory (`RedisViews(cache=True)` + `follow_changes`):
an entry is dropped as soon as its key changes, which keeps the hot availability read free of
Redis round trips without serving anything older than a Redis read could.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal, cast

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import WatchError

from optisync_common.logging import get_logger
from schemas.events.availability import StoreDayAvailability
from schemas.events.base import EventPayload
from schemas.events.roster import (
    WEEKDAYS,
    ExamTypeDefined,
    OpeningHours,
    OpeningInterval,
    StoreHoursChanged,
    StoreRegistered,
)
from services.booking.domain.model import hours_in_force, with_scheduled

ViewOutcome = Literal["written", "stale", "expired"]

# A view stays readable for this long after its local day, then Redis expires it. Older days
# are not written at all (also on a rebuild), so live and rebuilt views stay identical.
VIEW_RETENTION = dt.timedelta(days=2)

log = get_logger(__name__)

_GLOB_SPECIAL = re.compile(r"[\\*?\[\]]")

# KEYS[1] change channel, KEYS[2..] view keys; ARGV[3i-2..3i] view i's JSON, seq and expiry
# (unix seconds). Each view replaces only a lower seq; the keys written are announced in one
# message (a JSON list), so a batch of views costs one round trip and one wake-up per reader.
_SET_IF_NEWER = """
local written, results = {}, {}
for i = 2, #KEYS do
  local json, seq, expiry = ARGV[3 * i - 5], tonumber(ARGV[3 * i - 4]), ARGV[3 * i - 3]
  local newer = true
  local current = redis.call('GET', KEYS[i])
  if current then
    local ok, view = pcall(cjson.decode, current)
    if ok and type(view) == 'table' then
      local stored = tonumber(view['seq'])
      newer = stored == nil or stored < seq
    end
  end
  if newer then
    redis.call('SET', KEYS[i], json, 'EXAT', expiry)
    written[#written + 1] = KEYS[i]
  end
  results[i - 1] = newer and 1 or 0
end
if #written > 0 then
  redis.call('PUBLISH', KEYS[1], cjson.encode(written))
end
return results
"""
# A script call holds Redis: a rebuild's long runs of views go in calls of at most this many.
VIEWS_PER_CALL = 100

# Change messages on the channel: one key, a JSON list of keys (a batch of views), or this one:
ALL_KEYS = b"*"  # every key may have changed (a rebuild dropped them)
CACHE_MAX_KEYS = 50_000
# Safety net for a change message lost in a way the subscriber did not notice.
CACHE_TTL_S = 5.0


class ExamTypeInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    duration_minutes: int
    required_skill: str
    active: bool = True


class HoursChange(BaseModel):
    """Opening hours that take over from `effective_from` (a scheduled `StoreHoursChanged`)."""

    model_config = ConfigDict(frozen=True)

    effective_from: dt.date
    opening_hours: OpeningHours
    slot_minutes: int | None = None


class StoreCatalog(BaseModel):
    """What the API needs to validate a booking for one store, kept by the projector."""

    model_config = ConfigDict(frozen=True)

    timezone: str | None = Field(default=None, description="None until StoreRegistered arrives")
    opening_hours: OpeningHours = Field(default_factory=dict)
    slot_minutes: int = 15
    locale: str = "en"
    closed_dates: list[dt.date] = Field(default_factory=list)
    hours_changes: list[HoursChange] = Field(default_factory=list)
    exam_types: dict[str, ExamTypeInfo] = Field(default_factory=dict)

    def hours_on(self, day: dt.date) -> tuple[list[OpeningInterval], int]:
        """Opening intervals and slot grid in force on a local date (closed: no intervals)."""
        hours, slot_minutes = hours_in_force(
            self.opening_hours, self.slot_minutes, self.hours_changes, day
        )
        if day in self.closed_dates:
            return [], slot_minutes
        return list(hours.get(WEEKDAYS[day.weekday()], [])), slot_minutes


def apply_roster_event(current: StoreCatalog | None, payload: EventPayload) -> StoreCatalog | None:
    """The catalog after a roster event, or None when the event does not concern it.

    Every step replaces, so replaying a partition's events in order converges on the same
    catalog however often a prefix of them was applied before.
    """
    base = current or StoreCatalog()
    if isinstance(payload, StoreRegistered):
        return base.model_copy(
            update={
                "timezone": payload.timezone,
                "opening_hours": payload.opening_hours,
                "slot_minutes": payload.slot_minutes,
                "locale": payload.locale,
            }
        )
    if isinstance(payload, StoreHoursChanged):
        # The event carries the store's closed dates in full (the processor reads it alike).
        update: dict[str, Any] = {"closed_dates": sorted(set(payload.closed_dates))}
        if payload.effective_from is None:
            update["opening_hours"] = payload.opening_hours
            update["slot_minutes"] = payload.slot_minutes or base.slot_minutes
        else:
            change = HoursChange(
                effective_from=payload.effective_from,
                opening_hours=payload.opening_hours,
                slot_minutes=payload.slot_minutes,
            )
            update["hours_changes"] = with_scheduled(base.hours_changes, change)
        return base.model_copy(update=update)
    if isinstance(payload, ExamTypeDefined):
        info = ExamTypeInfo(
            duration_minutes=payload.duration_minutes,
            required_skill=payload.required_skill,
            active=payload.active,
        )
        return base.model_copy(update={"exam_types": {**base.exam_types, payload.code: info}})
    return None


@lru_cache(maxsize=4096)
def parse_catalog(raw: bytes) -> StoreCatalog:
    """Cached by the stored bytes: a catalog changes rarely, requests for it are many."""
    return StoreCatalog.model_validate_json(raw)


def view_expiry(local_date: dt.date) -> dt.datetime:
    midnight = dt.datetime.combine(local_date, dt.time(), tzinfo=dt.UTC)
    return midnight + dt.timedelta(days=1) + VIEW_RETENTION


class RedisViews:
    """Keys under the service's prefix; the projector writes, the API reads."""

    def __init__(self, redis: aioredis.Redis, prefix: str, *, cache: bool = False) -> None:
        self.redis = redis
        self.prefix = prefix
        self.channel = f"{prefix}views"
        self._set_if_newer = redis.register_script(_SET_IF_NEWER)
        self._cache_enabled = cache
        self._live = False  # subscribed to the change channel: the cache may be used
        self._cache: dict[bytes, tuple[float, bytes | None]] = {}
        self._filling: dict[bytes, int] = {}
        self._fills = 0

    def store_key(self, store_id: str) -> str:
        return f"{self.prefix}store:{store_id}"

    def view_key(self, store_id: str, local_date: dt.date | str) -> str:
        day = local_date if isinstance(local_date, str) else local_date.isoformat()
        return f"{self.prefix}avail:{store_id}:{day}"

    # ---- reads (API) --------------------------------------------------------------------

    async def catalog(self, store_id: str) -> StoreCatalog | None:
        raw = await self._get(self.store_key(store_id))
        if raw is None:
            return None
        catalog = parse_catalog(raw)
        return catalog if catalog.timezone is not None else None

    async def view(self, store_id: str, local_date: dt.date | str) -> bytes | None:
        return await self._get(self.view_key(store_id, local_date))

    def cached_view(self, store_id: str, local_date: dt.date | str) -> bytes | None:
        """The view from the coherent in-memory copy, without waiting: None when it is not
        there (not cached, expired, not following changes, or no such view)."""
        if not self._live:
            return None
        cached = self._cache.get(self.view_key(store_id, local_date).encode())
        return cached[1] if cached is not None and cached[0] > time.monotonic() else None

    async def _get(self, name: str) -> bytes | None:
        key = name.encode()
        if not self._live:
            return cast(bytes | None, await self.redis.get(key))
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        # A change message that arrives while we read drops this fill: what we read may
        # already be older than what the message announced.
        self._fills += 1
        token = self._filling[key] = self._fills
        try:
            raw = cast(bytes | None, await self.redis.get(key))
        finally:
            filled = self._filling.get(key) == token
            if filled:
                del self._filling[key]
        if filled and self._live:
            if len(self._cache) >= CACHE_MAX_KEYS:
                self._cache.clear()
            self._cache[key] = (time.monotonic() + CACHE_TTL_S, raw)
        return raw

    async def follow_changes(self) -> None:
        """Keep the cache coherent: run as a task for the life of an API process."""
        if not self._cache_enabled:
            return
        delay = 0.5
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._drop_all()  # whatever changed before we listened is unknown
                self._live = True
                delay = 0.5
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._changed(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("view_changes_lost", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                self._live = False
                self._drop_all()
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _changed(self, message: bytes) -> None:
        if message == ALL_KEYS:
            self._drop_all()
            return
        # Keys start with the prefix, so only a batch's list starts with "[".
        keys = orjson.loads(message) if message.startswith(b"[") else [message]
        for key in keys:
            name = key.encode() if isinstance(key, str) else key
            self._cache.pop(name, None)
            self._filling.pop(name, None)

    def _drop_all(self) -> None:
        self._cache.clear()
        self._filling.clear()

    # ---- writes (projector) -------------------------------------------------------------

    async def apply_roster_event(self, store_id: str, payload: EventPayload) -> bool:
        """Read-modify-write under WATCH: a second projector instance during a rebalance
        cannot interleave a stale catalog."""
        key = self.store_key(store_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    current = StoreCatalog.model_validate_json(raw) if raw else None
                    updated = apply_roster_event(current, payload)
                    if updated is None or updated == current:
                        return False  # leaving the block resets the pipeline (UNWATCH)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, updated.model_dump_json())
                    pipe.publish(self.channel, key)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue

    async def apply_availability(
        self, views: Sequence[StoreDayAvailability], now: dt.datetime
    ) -> list[ViewOutcome]:
        """Write each view that is newer than the stored one, in order, in as few calls as
        `VIEWS_PER_CALL` allows: each view's outcome."""
        outcomes: list[ViewOutcome] = ["expired"] * len(views)
        live = [
            (i, view, expires)
            for i, view in enumerate(views)
            if (expires := view_expiry(view.local_date)) > now
        ]
        for first in range(0, len(live), VIEWS_PER_CALL):
            chunk = live[first : first + VIEWS_PER_CALL]
            keys, args = [self.channel], list[bytes | int]()
            for _, view, expires in chunk:
                keys.append(self.view_key(view.store_id, view.local_date))
                args += [
                    orjson.dumps(view.model_dump(mode="json")),
                    view.seq,
                    int(expires.timestamp()),
                ]
            written = await self._set_if_newer(keys=keys, args=args)
            for (i, _, _), was_written in zip(chunk, written, strict=True):
                outcomes[i] = "written" if was_written else "stale"
        return outcomes

    # ---- what Redis still holds ------------------------------------------------------

    def filled_key(self) -> str:
        """A hash of the input partitions whose records these views hold (`topic:partition`
        -> when it was replayed from its start): it goes when Redis loses the views with it."""
        return f"{self.prefix}filled"

    async def unfilled(self, partitions: Sequence[str]) -> list[str]:
        """The partitions of `partitions` not marked filled."""
        if not partitions:
            return []
        marks = await self.redis.hmget(self.filled_key(), list(partitions))
        return [p for p, mark in zip(partitions, marks, strict=True) if mark is None]

    async def mark_filled(self, partitions: Sequence[str], now: dt.datetime) -> None:
        if partitions:
            stamp = now.isoformat()
            await self.redis.hset(self.filled_key(), mapping=dict.fromkeys(partitions, stamp))

    # ---- rebuild ------------------------------------------------------------------------

    async def drop(self, store_id: str | None = None) -> int:
        """Delete the catalog and views of one store, or of every store (and then the marks of
        what the views hold: if the rebuild after this stops short, the views projector
        refills them when it starts)."""
        if store_id is None:
            patterns = [f"{self.prefix}store:*", f"{self.prefix}avail:*"]
            await self.redis.unlink(self.filled_key())
        else:
            literal = _GLOB_SPECIAL.sub(r"\\\g<0>", store_id)
            patterns = [self.store_key(literal), self.view_key(literal, "*")]
        own = self.view_key(store_id, "").encode() if store_id is not None else None
        deleted = 0
        for pattern in patterns:
            batch: list[bytes] = []
            async for key in self.redis.scan_iter(match=pattern, count=1000):
                if own is not None and key.startswith(own) and b":" in key[len(own) :]:
                    continue  # a view of store `<store_id>:<more>`, not of this one
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await self.redis.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await self.redis.unlink(*batch)
        await self.redis.publish(self.channel, ALL_KEYS)
        return deleted
