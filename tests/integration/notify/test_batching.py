"""Redis group commit against the real server: concurrent commands share pipelines, each
caller gets its own result (or its own error), the order per caller is kept."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ResponseError

from optisync_common.resources import Resources
from services.notify.adapters.batching import RedisBatcher


async def test_concurrent_commands_share_pipelines_with_their_own_results(resources: Resources):
    assert resources.redis is not None
    redis = resources.redis
    batcher = RedisBatcher(redis, max_commands=50)
    prefix = f"itest-batch-{uuid.uuid4().hex[:8]}"
    try:
        claims = await asyncio.gather(
            *(
                batcher.execute("SET", f"{prefix}:{i % 100}", str(i), "NX", "EX", 60)
                for i in range(300)
            )
        )
        # 100 keys, each claimed by exactly its first SET NX (pipelines keep the order)
        assert sum(1 for c in claims if c) == 100
        assert all(claims[:100]) and not any(claims[100:])
        assert await redis.get(f"{prefix}:7") == b"7"
        await redis.set(f"{prefix}:str", "x")
        results = await asyncio.gather(
            batcher.execute("ZADD", f"{prefix}:z", 1.0, "a", 2.0, "b"),
            batcher.execute("ZADD", f"{prefix}:str", 1.0, "a"),  # wrong type: its caller's error
            batcher.execute("ZCARD", f"{prefix}:z"),
            return_exceptions=True,
        )
        assert results[0] == 2 and results[2] == 2
        assert isinstance(results[1], ResponseError)
        with pytest.raises(ResponseError):
            await batcher.execute("ZADD", f"{prefix}:str", 1.0, "a")
        assert await batcher.execute("ZCARD", f"{prefix}:z") == 2  # still working after it
    finally:
        await batcher.close()
        keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
