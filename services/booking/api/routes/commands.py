"""Status of a command answered 202: pending until the processor's decision arrives."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from optisync_common.problems import ProblemError
from services.booking.api.deps import ContextDep, problems
from services.booking.api.models import CommandStatus

router = APIRouter(prefix="/v1/commands", tags=["commands"])


@router.get(
    "/{correlation_id}",
    response_model=CommandStatus,
    responses=problems(404, 422, 503),
    summary="The outcome of a command, once decided (kept for 24 h)",
)
async def command_status(
    correlation_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    context: ContextDep,
) -> Response:
    stored = await context.gateway.status(correlation_id)
    if stored is None:
        raise ProblemError(404, "unknown_command", f"no command {correlation_id!r}")
    return Response(stored, media_type="application/json")
