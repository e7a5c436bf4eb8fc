"""Indexes that are worth their cost on the server at hand (MongoDB or FerretDB)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from optisync_common.logging import get_logger

log = get_logger(__name__)


async def is_ferretdb(coll: AsyncCollection[Any]) -> bool:
    info = await coll.database.client.admin.command("buildInfo")
    return "ferretdbVersion" in info


async def ensure_indexes(coll: AsyncCollection[Any], indexes: Sequence[IndexModel]) -> list[str]:
    """Create `indexes` on `coll`; returns the names of those created (or already there).

    On FerretDB v1 the secondary (non-unique) ones are skipped: it runs every filter other
    than one on `_id` as a scan, so they are never read, and each cost its inserts about
    0.05 ms of CPU per document. Unique indexes are constraints, so they are always created;
    on MongoDB everything is.
    """
    wanted = list(indexes)
    if await is_ferretdb(coll):
        skipped = [i.document["name"] for i in wanted if not i.document.get("unique")]
        wanted = [i for i in wanted if i.document.get("unique")]
        if skipped:
            log.info("mongo_indexes_skipped_on_ferretdb", collection=coll.name, names=skipped)
    return await coll.create_indexes(wanted) if wanted else []
