"""Read side of the roster. Writes (drafts, publishing, leave...) arrive with the roster issue."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter

from optisync_common.problems import ProblemError
from services.roster.api.deps import RepoDep

router = APIRouter(prefix="/v1", tags=["roster"])


@router.get("/stores", summary="All stores of the chain in this region")
async def list_stores(repo: RepoDep) -> dict[str, Any]:
    return {"items": await repo.list_stores()}


@router.get("/stores/{store_id}", summary="One store with time zone and opening hours")
async def get_store(store_id: str, repo: RepoDep) -> dict[str, Any]:
    store = await repo.get_store(store_id)
    if store is None:
        raise ProblemError(404, "unknown_store", f"no store {store_id!r}")
    return store


@router.get("/stores/{store_id}/optometrists", summary="Optometrists who work at a store")
async def store_optometrists(store_id: str, repo: RepoDep) -> dict[str, Any]:
    if await repo.get_store(store_id) is None:
        raise ProblemError(404, "unknown_store", f"no store {store_id!r}")
    return {"items": await repo.optometrists_at(store_id)}


@router.get("/stores/{store_id}/shifts", summary="Published shifts of a store on a local date")
async def store_shifts(store_id: str, date: dt.date, repo: RepoDep) -> dict[str, Any]:
    if await repo.get_store(store_id) is None:
        raise ProblemError(404, "unknown_store", f"no store {store_id!r}")
    return {"items": await repo.shifts_on(store_id, date.isoformat())}


@router.get("/exam-types", summary="Exam types with duration and required skill")
async def list_exam_types(repo: RepoDep) -> dict[str, Any]:
    return {"items": await repo.list_exam_types()}
