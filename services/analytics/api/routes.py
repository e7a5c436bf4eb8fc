"""HQ API: KPIs by region / store / date range / granularity, rankings, abnormal stores, CSV.

Every route reads the store-day documents of the range once and rolls them up in Python
(services/analytics/domain/kpis.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from optisync_common.clock import Clock
from optisync_common.problems import ProblemError
from services.analytics.adapters.readmodel import KpiReadModel
from services.analytics.adapters.store import KpiStore
from services.analytics.domain.kpis import (
    Anomaly,
    Granularity,
    GroupBy,
    KpiRow,
    Ranked,
    StoreDay,
    abnormal_stores,
    rankings,
    rollup,
    to_csv,
)

MAX_RANGE_DAYS = 400
RankMetric = Literal[
    "conversion", "attendance", "cancellation_rate", "no_show_rate", "waitlist_fill_rate",
    "delivery_success", "avg_rating",
]  # fmt: skip
AnomalyMetric = Literal["cancellation_rate", "no_show_rate"]

router = APIRouter(prefix="/v1", tags=["kpis"])


class Row(BaseModel):
    period: str
    period_start: dt.date | None
    key: str
    region: str | None
    counts: dict[str, int]
    rates: dict[str, float | None]


class KpiResponse(BaseModel):
    date_from: dt.date
    date_to: dt.date
    granularity: Granularity
    group_by: GroupBy
    rows: list[Row]


class RankedStore(BaseModel):
    store_id: str
    region: str | None
    value: float
    volume: int


class RankingResponse(BaseModel):
    metric: str
    date_from: dt.date
    date_to: dt.date
    best: list[RankedStore]
    worst: list[RankedStore]


class AbnormalStore(BaseModel):
    store_id: str
    region: str | None
    value: float
    others_mean: float
    others_stdev: float
    z: float


class AnomalyResponse(BaseModel):
    metric: str
    sigmas: float
    date_from: dt.date
    date_to: dt.date
    stores: list[AbnormalStore]


class Store(BaseModel):
    store_id: str
    name: str
    region: str | None
    timezone: str | None


def _row(r: KpiRow) -> Row:
    return Row(
        period=r.period, period_start=r.period_start, key=r.key, region=r.region,
        counts=r.counts, rates=r.rates,
    )  # fmt: skip


def _ranked(r: Ranked) -> RankedStore:
    return RankedStore(store_id=r.store_id, region=r.region, value=r.value, volume=r.volume)


def _abnormal(a: Anomaly) -> AbnormalStore:
    return AbnormalStore(
        store_id=a.store_id, region=a.region, value=a.value, others_mean=a.others_mean,
        others_stdev=a.others_stdev, z=a.z,
    )  # fmt: skip


def default_range(clock: Clock, back_days: int) -> tuple[dt.date, dt.date]:
    """Facts are dated by the store-local day of the slot, so bookings made today for next
    week land ahead of today: the default range looks as far ahead as it looks back."""
    today = clock.now().date()
    return today - dt.timedelta(days=back_days - 1), today + dt.timedelta(days=back_days)


async def _days(
    request: Request,
    date_from: dt.date | None,
    date_to: dt.date | None,
    region: str | None,
    store_id: list[str] | None,
) -> tuple[dt.date, dt.date, list[StoreDay]]:
    state = request.app.state
    start, end = default_range(state.clock, state.settings.dashboard_days)
    start, end = date_from or start, date_to or end
    if start > end:
        raise ProblemError(422, "invalid_range", f"from {start} is after to {end}")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise ProblemError(422, "range_too_large", f"at most {MAX_RANGE_DAYS} days per request")
    resources = state.resources
    if resources.redis is not None:
        model = KpiReadModel(resources.redis, state.settings.redis_prefix)
        days = await model.store_days(start, end, region=region, store_ids=store_id)
        if days is not None:
            return start, end, days
    # The read model is not loaded (yet): the same numbers, slower, from MongoDB.
    store = KpiStore(resources.db)
    return start, end, await store.store_days(start, end, region=region, store_ids=store_id)


Region = Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9-]*$", max_length=32)]
StoreIds = Annotated[list[str] | None, Query(max_length=100, description="repeatable")]
From = Annotated[dt.date | None, Query(alias="from")]
To = Annotated[dt.date | None, Query(alias="to")]


@router.get("/kpis", response_model=KpiResponse, summary="KPIs per period and group")
async def kpis(
    request: Request,
    date_from: From = None,
    date_to: To = None,
    region: Region = None,
    store_id: StoreIds = None,
    granularity: Granularity = Granularity.DAY,
    group_by: GroupBy = GroupBy.CHAIN,
) -> KpiResponse:
    start, end, days = await _days(request, date_from, date_to, region, store_id)
    rows = rollup(days, granularity, group_by)
    return KpiResponse(
        date_from=start, date_to=end, granularity=granularity, group_by=group_by,
        rows=[_row(r) for r in rows],
    )  # fmt: skip


@router.get(
    "/kpis.csv",
    summary="The same KPIs as CSV",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def kpis_csv(
    request: Request,
    date_from: From = None,
    date_to: To = None,
    region: Region = None,
    store_id: StoreIds = None,
    granularity: Granularity = Granularity.DAY,
    group_by: GroupBy = GroupBy.STORE,
) -> Response:
    start, end, days = await _days(request, date_from, date_to, region, store_id)
    body = to_csv(rollup(days, granularity, group_by))
    name = f"optisync-kpis-{group_by.value}-{granularity.value}-{start}-{end}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


@router.get("/rankings", response_model=RankingResponse, summary="Best and worst stores")
async def store_rankings(
    request: Request,
    metric: RankMetric = "conversion",
    date_from: From = None,
    date_to: To = None,
    region: Region = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 5,
    min_volume: Annotated[int, Query(ge=0, le=1_000_000)] = 1,
) -> RankingResponse:
    start, end, days = await _days(request, date_from, date_to, region, None)
    rows = rollup(days, Granularity.TOTAL, GroupBy.STORE)
    best, worst = rankings(rows, metric, limit=limit, min_volume=min_volume)
    return RankingResponse(
        metric=metric, date_from=start, date_to=end,
        best=[_ranked(r) for r in best], worst=[_ranked(r) for r in worst],
    )  # fmt: skip


@router.get(
    "/anomalies",
    response_model=AnomalyResponse,
    summary="Stores whose rate is abnormally high against the rest of the chain",
)
async def anomalies(
    request: Request,
    metric: AnomalyMetric = "cancellation_rate",
    sigmas: Annotated[float, Query(gt=0, le=10)] = 2.0,
    date_from: From = None,
    date_to: To = None,
    region: Region = None,
    min_volume: Annotated[int, Query(ge=0, le=1_000_000)] = 20,
) -> AnomalyResponse:
    start, end, days = await _days(request, date_from, date_to, region, None)
    rows = rollup(days, Granularity.TOTAL, GroupBy.STORE)
    found = abnormal_stores(rows, metric, sigmas=sigmas, min_volume=min_volume)
    return AnomalyResponse(
        metric=metric, sigmas=sigmas, date_from=start, date_to=end,
        stores=[_abnormal(a) for a in found],
    )  # fmt: skip


@router.get("/stores", response_model=list[Store], summary="Stores known to analytics")
async def stores(request: Request) -> list[dict[str, Any]]:
    return await KpiStore(request.app.state.resources.db).store_directory()


class Overview(BaseModel):
    """Everything the dashboard shows, from one read of the range."""

    date_from: dt.date
    date_to: dt.date
    granularity: Granularity
    totals: Row
    series: list[Row]
    by_region: list[Row]
    by_store: list[Row]
    best_conversion: list[RankedStore]
    worst_cancellation: list[RankedStore]
    abnormal_cancellation: list[AbnormalStore]
    abnormal_no_show: list[AbnormalStore]


@router.get("/overview", response_model=Overview, summary="The dashboard's data")
async def overview(
    request: Request,
    date_from: From = None,
    date_to: To = None,
    region: Region = None,
    store_id: StoreIds = None,
    granularity: Granularity = Granularity.DAY,
) -> Overview:
    start, end, days = await _days(request, date_from, date_to, region, store_id)
    totals = rollup(days, Granularity.TOTAL, GroupBy.CHAIN)
    per_store = rollup(days, Granularity.TOTAL, GroupBy.STORE)
    best, _ = rankings(per_store, "conversion")
    _, worst_cancel = rankings(per_store, "cancellation_rate")
    empty = KpiRow("total", None, "chain", None)
    return Overview(
        date_from=start, date_to=end, granularity=granularity,
        totals=_row(totals[0] if totals else empty),
        series=[_row(r) for r in rollup(days, granularity, GroupBy.CHAIN)],
        by_region=[_row(r) for r in rollup(days, Granularity.TOTAL, GroupBy.REGION)],
        by_store=[_row(r) for r in per_store],
        best_conversion=[_ranked(r) for r in best],
        worst_cancellation=[_ranked(r) for r in worst_cancel],
        abnormal_cancellation=[_abnormal(a) for a in abnormal_stores(per_store,
                                                                     "cancellation_rate")],
        abnormal_no_show=[_abnormal(a) for a in abnormal_stores(per_store, "no_show_rate")],
    )  # fmt: skip
