"""The KPI read model in Redis: what the HQ API and the dashboard read.

FerretDB (SQLite) evaluates every query but an `_id` lookup by scanning and decoding the whole
collection (about 0.1 ms per document here: seconds for a 500-store chain's year), so the API
does not query MongoDB per request. The aggregator mirrors each KPI document it changes into
one Redis hash per store-local day (`<prefix>days:<date>`, field `<store_id>`, value
`{"r": region, "v": version, "c": counts}`); a range read is one HGETALL per day.

MongoDB stays the source of truth: the aggregator reloads this model from it after every
(re)assignment of partitions (a crash between the MongoDB write and the Redis write leaves
nothing stale), and whenever the `ready` marker is missing (Redis restarted or flushed). Writes
carry the document's version and a newer version is never overwritten (several aggregator
instances may write the same day).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from services.analytics.domain.kpis import StoreDay

Doc = dict[str, Any]

# Set field to value unless the stored value has a version >= the new one.
_PUT_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and tonumber(decoded['v']) and tonumber(decoded['v']) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


class KpiReadModel:
    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = f"{prefix}days:"
        self.ready_key = f"{prefix}days-ready"
        self._put = redis.register_script(_PUT_IF_NEWER)

    def _key(self, date: str) -> str:
        return f"{self.prefix}{date}"

    async def put(self, docs: Iterable[Doc]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in docs:
                value = orjson.dumps({"r": d["region"], "v": int(d.get("v", 0)),
                                      "c": d.get("counts") or {}})  # fmt: skip
                await self._put(
                    keys=[self._key(d["date"])],
                    args=[d["store_id"], int(d.get("v", 0)), value],
                    client=pipe,
                )
            await pipe.execute()

    async def is_ready(self) -> bool:
        return bool(await self.redis.exists(self.ready_key))

    async def mark_ready(self) -> None:
        await self.redis.set(self.ready_key, "1")

    async def clear(self) -> None:
        await self.redis.delete(self.ready_key)
        async for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            await self.redis.delete(key)

    async def load(self, docs: Iterable[Doc]) -> int:
        """Write every document (newest version wins), then mark the model ready."""
        batch: list[Doc] = []
        count = 0
        for d in docs:
            batch.append(d)
            if len(batch) >= 1000:
                await self.put(batch)
                count += len(batch)
                batch = []
        await self.put(batch)
        await self.mark_ready()
        return count + len(batch)

    async def store_days(
        self,
        start: dt.date,
        end: dt.date,
        *,
        region: str | None = None,
        store_ids: Sequence[str] | None = None,
    ) -> list[StoreDay] | None:
        """The store-days of the range, or None when the model is not loaded yet."""
        if not await self.is_ready():
            return None
        dates = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for day in dates:
                if store_ids:
                    pipe.hmget(self._key(day.isoformat()), list(store_ids))
                else:
                    pipe.hgetall(self._key(day.isoformat()))
            results = await pipe.execute()
        out = []
        for day, result in zip(dates, results, strict=True):
            if store_ids:
                pairs = [(s, v) for s, v in zip(store_ids, result, strict=True) if v is not None]
            else:
                pairs = [(k.decode() if isinstance(k, bytes) else k, v) for k, v in result.items()]
            for store_id, raw in pairs:
                value = orjson.loads(raw)
                if region is None or value["r"] == region:
                    counts = {k: int(n) for k, n in value["c"].items()}
                    out.append(StoreDay(store_id, value["r"], day, counts))
        return out
