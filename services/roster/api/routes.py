"""Roster HTTP API: reference data, draft shifts and templates, explicit publishing, leave,
training, swaps and the optometrist's day view. Errors are problem+json with a `code`; the
roster's own refusals repeat it as `reason` (schema errors are 422 `invalid_request`, naming the
fields in `errors`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Response

from optisync_common.http import LocalDayQuery
from optisync_common.problems import ProblemError
from schemas.envelope import deterministic_event_id
from services.roster.adapters.commands import Emitted
from services.roster.adapters.repository import (
    shift_from_fields,
    shift_view,
    store_from_doc,
)
from services.roster.api.deps import (
    CommandsDep,
    CorrelationId,
    IdempotencyKey,
    NewStoreId,
    RepoDep,
)
from services.roster.api.models import (
    DayPatternBody,
    ExamTypeBody,
    ExpandBody,
    Interval,
    LeaveBody,
    NewShiftBody,
    OffboardBody,
    OptometristBody,
    PublishShiftsBody,
    PublishWeekBody,
    ShiftBody,
    SickDayBody,
    StoreBody,
    SwapBody,
    TemplateBody,
    TrainingBody,
)
from services.roster.domain.dayview import day_schedule
from services.roster.domain.localtime import zone
from services.roster.domain.model import (
    DayPattern,
    ExamType,
    Leave,
    Optometrist,
    Shift,
    Store,
    TimeRange,
    Training,
    WeeklyTemplate,
)
from services.roster.domain.rules import PlacedShift, RosterViolation

router = APIRouter(prefix="/v1", tags=["roster"])
T = TypeVar("T")


def _domain(build: Callable[[], T], reason: str = "invalid_request") -> T:
    """Domain constructors raise ValueError for impossible values: that is a 422."""
    try:
        return build()
    except ValueError as exc:
        raise RosterViolation(422, reason, str(exc)) from exc


def _range(start: str, end: str) -> TimeRange:
    return _domain(
        lambda: TimeRange(dt.time.fromisoformat(start), dt.time.fromisoformat(end)),
        "invalid_interval",
    )


def _breaks(breaks: list[Interval]) -> tuple[TimeRange, ...]:
    return tuple(_range(b.start, b.end) for b in breaks)


def _id_from(prefix: str, optometrist_id: str, idempotency_key: str | None) -> str:
    """With an Idempotency-Key a retried POST names the same leave/training (and is answered
    like the first one); without one, a fresh id."""
    if idempotency_key is None:
        return f"{prefix}-{uuid.uuid4().hex[:16]}"
    return f"{prefix}-{deterministic_event_id(prefix, optometrist_id, idempotency_key).hex[:16]}"


def _emitted(result: Emitted, response: Response) -> dict[str, Any]:
    response.status_code = 200 if result.sent else 202
    return result.as_json()


# ---------------------------------------------------------------------- stores, exam types


@router.get("/stores", summary="All stores of the chain in this region")
async def list_stores(repo: RepoDep) -> dict[str, Any]:
    return {"items": await repo.list_stores()}


@router.put("/stores/{store_id}", summary="Register a store or change it (emits at once)")
async def put_store(
    store_id: NewStoreId, body: StoreBody, commands: CommandsDep, response: Response,
    correlation_id: CorrelationId = None,
) -> dict[str, Any]:  # fmt: skip
    _domain(lambda: zone(body.timezone), "bad_timezone")
    hours = {
        day.strip().lower()[:3] if len(day) > 3 else day.lower(): tuple(
            _range(r.open, r.close) for r in ranges
        )
        for day, ranges in body.opening_hours.items()
    }
    store = _domain(
        lambda: Store(store_id, body.name, body.region, body.timezone, hours, body.locale,
                      body.slot_minutes, body.address, body.latitude, body.longitude),
        "invalid_opening_hours",
    )  # fmt: skip
    result = _emitted(await commands.put_store(store, correlation_id), response)
    return {**result, "shifts_outside_hours": await commands.shifts_outside_hours(store_id)}


@router.get("/stores/{store_id}", summary="One store with time zone and opening hours")
async def get_store(store_id: str, repo: RepoDep) -> dict[str, Any]:
    store = await repo.get_store(store_id)
    if store is None:
        raise ProblemError(404, "unknown_store", f"no store {store_id!r}", reason="unknown_store")
    return store


@router.get("/stores/{store_id}/optometrists", summary="Optometrists who work at a store")
async def store_optometrists(store_id: str, commands: CommandsDep) -> dict[str, Any]:
    await commands.store(store_id)
    return {"items": await commands.repo.optometrists_at(store_id)}


@router.get("/stores/{store_id}/shifts", summary="Published shifts of a store on a local date")
async def store_shifts(store_id: str, date: LocalDayQuery, commands: CommandsDep) -> dict[str, Any]:
    await commands.store(store_id)
    return {"items": await commands.repo.published_shifts_on(store_id, date)}


@router.get("/stores/{store_id}/roster", summary="A store-week: drafts and published shifts")
async def store_roster(
    store_id: str, week_start: LocalDayQuery, commands: CommandsDep
) -> dict[str, Any]:
    await commands.store(store_id)
    docs = await commands.repo.shifts_of_store(
        store_id, week_start, week_start + dt.timedelta(days=6)
    )
    items = sorted((shift_view(d) for d in docs), key=lambda s: (s["date"], s["start"]))
    return {"store_id": store_id, "week_start": week_start.isoformat(), "items": items}


@router.post(
    "/stores/{store_id}/roster/publish",
    summary="Publish every draft of a store-week (validated; events in date/start order)",
)
async def publish_week(
    store_id: str, body: PublishWeekBody, commands: CommandsDep, response: Response,
    correlation_id: CorrelationId = None,
) -> dict[str, Any]:  # fmt: skip
    result = await commands.publish_store_week(store_id, body.week_start, correlation_id)
    return _emitted(result, response)


@router.get("/exam-types", summary="Exam types with duration and required skill")
async def list_exam_types(repo: RepoDep) -> dict[str, Any]:
    return {"items": await repo.list_exam_types()}


@router.put("/exam-types/{code}", summary="Define an exam type chain-wide (emits per store)")
async def put_exam_type(
    code: str, body: ExamTypeBody, commands: CommandsDep, response: Response,
    correlation_id: CorrelationId = None,
) -> dict[str, Any]:  # fmt: skip
    exam = ExamType(
        code, body.name, body.duration_minutes, body.required_skill, body.preparation_notes
    )
    return _emitted(await commands.put_exam_type(exam, correlation_id), response)


# ---------------------------------------------------------------------- optometrists


@router.put("/optometrists/{optometrist_id}", summary="Hire or change an optometrist")
async def put_optometrist(
    optometrist_id: str, body: OptometristBody, commands: CommandsDep, response: Response,
    correlation_id: CorrelationId = None,
) -> dict[str, Any]:  # fmt: skip
    opt = Optometrist(
        optometrist_id, body.name, frozenset(body.skills), body.home_store_id,
        tuple(dict.fromkeys(body.store_ids)),
    )  # fmt: skip
    result = await commands.put_optometrist(opt, correlation_id, rehire=body.rehire)
    return _emitted(result, response)


@router.get("/optometrists/{optometrist_id}", summary="One optometrist")
async def get_optometrist(optometrist_id: str, repo: RepoDep) -> dict[str, Any]:
    doc = await repo.get_optometrist(optometrist_id)
    if doc is None:
        raise RosterViolation(404, "unknown_optometrist", f"no optometrist {optometrist_id!r}")
    return doc


@router.post("/optometrists/{optometrist_id}/offboard", summary="The optometrist leaves")
async def offboard(
    optometrist_id: str, body: OffboardBody, commands: CommandsDep, response: Response,
    correlation_id: CorrelationId = None,
) -> dict[str, Any]:  # fmt: skip
    result = await commands.offboard(optometrist_id, body.effective_date, correlation_id)
    return _emitted(result, response)


@router.post("/optometrists/{optometrist_id}/leave", summary="Grant leave (or sick days)")
async def grant_leave(
    optometrist_id: str, body: LeaveBody, commands: CommandsDep, response: Response,
    correlation_id: CorrelationId = None, idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:  # fmt: skip
    leave = Leave(
        body.leave_id or _id_from("lv", optometrist_id, idempotency_key), optometrist_id,
        body.start_date, body.end_date, body.kind,
    )  # fmt: skip
    result = await commands.grant_leave(leave, correlation_id)
    return {"leave_id": leave.leave_id, **_emitted(result, response)}


@router.post("/optometrists/{optometrist_id}/sick-days", summary="Report sick day(s)")
async def report_sick(
    optometrist_id: str, body: SickDayBody, commands: CommandsDep, response: Response,
    correlation_id: CorrelationId = None,
) -> dict[str, Any]:  # fmt: skip
    last = body.date + dt.timedelta(days=body.days - 1)
    leave = Leave(f"sick-{optometrist_id}-{body.date}", optometrist_id, body.date, last, "sick")
    result = await commands.grant_leave(leave, correlation_id)
    return {"leave_id": leave.leave_id, **_emitted(result, response)}


@router.post("/optometrists/{optometrist_id}/training", summary="Schedule training")
async def schedule_training(
    optometrist_id: str, body: TrainingBody, commands: CommandsDep, response: Response,
    correlation_id: CorrelationId = None, idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:  # fmt: skip
    opt = await commands.optometrist(optometrist_id)
    store = await commands.store(body.store_id or opt.home_store_id, status=422)
    training = Training(
        body.training_id or _id_from("tr", optometrist_id, idempotency_key), optometrist_id,
        body.date, _range(body.start, body.end), store.timezone,
    )  # fmt: skip
    result = await commands.schedule_training(training, correlation_id)
    return {"training_id": training.training_id, **_emitted(result, response)}


@router.get(
    "/optometrists/{optometrist_id}/schedule",
    summary="Day view: published shifts minus breaks/training/leave, bookings and free gaps",
)
async def schedule(
    optometrist_id: str, date: LocalDayQuery, commands: CommandsDep
) -> dict[str, Any]:
    repo = commands.repo
    if await repo.get_optometrist(optometrist_id) is None:
        raise RosterViolation(404, "unknown_optometrist", f"no optometrist {optometrist_id!r}")
    query = {"published.optometrist_id": optometrist_id, "published.date": date.isoformat()}
    placed = []
    async for doc in repo.db.shifts.find(query):
        if doc["published"]["cancelled"]:
            continue
        shift = shift_from_fields(doc["_id"], doc["published"])
        store = store_from_doc(await repo.get_store(shift.store_id) or {})
        placed.append(PlacedShift(shift, store.timezone))
    return day_schedule(
        optometrist_id, date, placed,
        await repo.leave_on(optometrist_id, date),
        await repo.training_on(optometrist_id, date),
        await repo.bookings_on(optometrist_id, date),
    )  # fmt: skip


# ---------------------------------------------------------------------- shifts (drafts)


def _shift(shift_id: str, body: ShiftBody) -> Shift:
    return _domain(lambda: Shift(
        shift_id, body.optometrist_id, body.store_id, body.date,
        _range(body.start, body.end), _breaks(body.breaks),
    ))  # fmt: skip


@router.post("/shifts", status_code=201, summary="Draft a shift (emits nothing until published)")
async def create_shift(body: NewShiftBody, commands: CommandsDep) -> dict[str, Any]:
    shift_id = body.shift_id or f"sh-{uuid.uuid4().hex[:12]}"
    return shift_view(await commands.draft_shift(_shift(shift_id, body)))


@router.put("/shifts/{shift_id}", summary="Draft a new version of a shift")
async def put_shift(shift_id: str, body: ShiftBody, commands: CommandsDep) -> dict[str, Any]:
    return shift_view(await commands.draft_shift(_shift(shift_id, body)))


@router.get("/shifts/{shift_id}", summary="A shift: current version, state, published version")
async def get_shift(shift_id: str, repo: RepoDep) -> dict[str, Any]:
    doc = await repo.get_shift(shift_id)
    if doc is None:
        raise RosterViolation(404, "unknown_shift", f"no shift {shift_id!r}")
    return shift_view(doc)


@router.delete("/shifts/{shift_id}", summary="Drop a draft, or draft the cancellation")
async def delete_shift(shift_id: str, commands: CommandsDep) -> dict[str, Any]:
    doc = await commands.cancel_shift(shift_id)
    return {"shift_id": shift_id, "state": "deleted"} if doc is None else shift_view(doc)


@router.post("/shifts/{shift_id}/swap", summary="Cover or exchange a shift (as a draft)")
async def swap_shift(shift_id: str, body: SwapBody, commands: CommandsDep) -> dict[str, Any]:
    docs = await commands.swap(shift_id, body.optometrist_id, body.with_shift_id)
    return {"items": [shift_view(d) for d in docs]}


@router.post("/shifts/{shift_id}/publish", summary="Publish one shift's pending change")
async def publish_shift(
    shift_id: str, commands: CommandsDep, response: Response,
    correlation_id: CorrelationId = None,
) -> dict[str, Any]:  # fmt: skip
    return _emitted(await commands.publish_shifts([shift_id], correlation_id), response)


@router.post("/shifts/publish", summary="Publish a batch of shifts together")
async def publish_batch(
    body: PublishShiftsBody, commands: CommandsDep, response: Response,
    correlation_id: CorrelationId = None,
) -> dict[str, Any]:  # fmt: skip
    return _emitted(await commands.publish_shifts(body.shift_ids, correlation_id), response)


# ---------------------------------------------------------------------- weekly templates


def _pattern(p: DayPatternBody) -> DayPattern:
    return DayPattern(_range(p.start, p.end), _breaks(p.breaks))


@router.put("/templates/{template_id}", summary="A recurring week for one optometrist")
async def put_template(
    template_id: str, body: TemplateBody, commands: CommandsDep
) -> dict[str, Any]:
    days = {day.strip().lower()[:3]: _pattern(p) for day, p in body.days.items()}
    template = _domain(
        lambda: WeeklyTemplate(template_id, body.optometrist_id, body.store_id, days),
        "invalid_template",
    )
    await commands.put_template(template)
    return await commands.template(template_id)


@router.get("/templates/{template_id}", summary="A weekly template")
async def get_template(template_id: str, commands: CommandsDep) -> dict[str, Any]:
    return await commands.template(template_id)


@router.post(
    "/templates/{template_id}/expand",
    summary="Draft the template's shifts for local dates first..last (store-local wall time)",
)
async def expand_template(
    template_id: str, body: ExpandBody, commands: CommandsDep
) -> dict[str, Any]:
    if body.last < body.first:
        raise RosterViolation(422, "invalid_range", "last is before first")
    docs = await commands.expand_template(template_id, body.first, body.last)
    return {"items": [shift_view(d) for d in docs]}
