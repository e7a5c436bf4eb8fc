from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from optisync_common.resources import Resources
from services.roster.adapters.repository import RosterRepository


def get_repository(request: Request) -> RosterRepository:
    resources: Resources = request.app.state.resources
    return RosterRepository(resources.db)


RepoDep = Annotated[RosterRepository, Depends(get_repository)]
