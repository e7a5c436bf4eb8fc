"""The real Redis and the real FerretDB (or MongoDB via MONGO_URL) through our clients."""

from __future__ import annotations

import datetime as dt

import pytest
from pymongo import IndexModel
from pymongo.errors import DuplicateKeyError

from optisync_common.mongo import ensure_indexes, is_ferretdb
from optisync_common.resources import open_resources
from schemas.events.roster import ExamTypeDefined, ShiftPublished, StoreRegistered
from services.roster.adapters.repository import RosterRepository
from services.roster.settings import RosterSettings


async def test_redis_round_trip_with_expiry(settings, unique_id):
    async with open_resources(settings, kafka=False, mongo=False) as res:
        assert res.redis is not None
        key = f"{settings.redis_prefix}itest:{unique_id}"
        await res.redis.hset(key, mapping={"09:00": "2", "09:15": "1"})
        await res.redis.expire(key, 60)
        assert await res.redis.hgetall(key) == {b"09:00": b"2", b"09:15": b"1"}
        assert 0 < await res.redis.ttl(key) <= 60
        await res.redis.hincrby(key, "09:00", -1)
        assert await res.redis.hget(key, "09:00") == b"1"


async def test_mongo_unique_index_and_queries(settings, unique_id):
    async with open_resources(settings, kafka=False, redis=False) as res:
        coll = res.db[f"itest_{unique_id}"]
        await coll.create_index("idempotency_key", unique=True)
        await coll.insert_one({"_id": "b1", "idempotency_key": "k1", "start": 2})
        with pytest.raises(DuplicateKeyError):
            await coll.insert_one({"_id": "b2", "idempotency_key": "k1", "start": 1})
        await coll.insert_one({"_id": "b3", "idempotency_key": "k3", "start": 1})
        docs = [d async for d in coll.find({}, {"_id": 1}).sort("start", 1)]
        assert [d["_id"] for d in docs] == ["b3", "b1"]
        await coll.drop()


async def test_secondary_indexes_only_where_the_server_reads_them(settings, unique_id):
    """FerretDB v1 scans for every filter but `_id`: secondary indexes there would only slow
    inserts. Unique ones are constraints and exist on both servers."""
    async with open_resources(settings, kafka=False, redis=False) as res:
        coll = res.db[f"itest_{unique_id}"]
        created = await ensure_indexes(
            coll,
            [IndexModel("key", unique=True, name="by_key"), IndexModel("start", name="by_start")],
        )
        expected = ["by_key"] if await is_ferretdb(coll) else ["by_key", "by_start"]
        assert created == expected
        assert sorted(await coll.index_information()) == sorted(["_id_", *expected])
        await coll.insert_one({"_id": "b1", "key": "k1", "start": 1})
        with pytest.raises(DuplicateKeyError):
            await coll.insert_one({"_id": "b2", "key": "k1", "start": 2})
        await coll.drop()


async def test_roster_repository_against_the_real_server(endpoints, unique_id):
    settings = endpoints.settings(RosterSettings, environment="test")
    store_id = f"store-{unique_id}"
    async with open_resources(settings, kafka=False, redis=False) as res:
        repo = RosterRepository(res.db)
        await repo.ensure_indexes()
        await repo.save(
            StoreRegistered(
                store_id=store_id, name="Berlin Mitte", region="eu", timezone="Europe/Berlin",
                opening_hours={"mon": [{"open": "09:00", "close": "18:00"}]}, locale="en",
            )
        )  # fmt: skip
        await repo.save(
            ExamTypeDefined(code=f"std-{unique_id}", name="Standard", duration_minutes=30,
                            required_skill="general")
        )  # fmt: skip
        for start in ("13:00", "09:00"):
            await repo.save(
                ShiftPublished(
                    shift_id=f"{unique_id}-{start}", optometrist_id="o1", store_id=store_id,
                    date=dt.date(2026, 11, 30), start=start, end=f"{int(start[:2]) + 3}:00",
                )
            )  # fmt: skip
        store = await repo.get_store(store_id)
        assert store is not None and store["timezone"] == "Europe/Berlin"
        shifts = await repo.shifts_on(store_id, "2026-11-30")
        assert [s["start"] for s in shifts] == ["09:00", "13:00"]
        assert await repo.shifts_on(store_id, "2026-12-01") == []
        # saving the same event again is an upsert, not a duplicate
        await repo.save(
            StoreRegistered(
                store_id=store_id, name="Berlin Mitte 2", region="eu", timezone="Europe/Berlin",
                opening_hours={}, locale="en",
            )
        )  # fmt: skip
        assert len([s for s in await repo.list_stores() if s["store_id"] == store_id]) == 1
