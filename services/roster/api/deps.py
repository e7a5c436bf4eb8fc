from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request

from optisync_common.resources import Resources
from services.roster.adapters.commands import RosterCommands
from services.roster.adapters.repository import RosterRepository


def get_repository(request: Request) -> RosterRepository:
    resources: Resources = request.app.state.resources
    return RosterRepository(resources.db)


def get_commands(request: Request) -> RosterCommands:
    commands: RosterCommands = request.app.state.commands
    return commands


RepoDep = Annotated[RosterRepository, Depends(get_repository)]
CommandsDep = Annotated[RosterCommands, Depends(get_commands)]
# A new store's id: the platform keys state by "<store id>|...", and events carry ids of at
# most 128 characters.
NewStoreId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[^|\s]+$", description="no '|' or spaces")
]
CorrelationId = Annotated[
    str | None,
    Header(alias="X-Correlation-Id", max_length=256, description="carried into the events"),
]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=256,
           description="a retry with the same key names the same leave/training"),
]  # fmt: skip
