"""`python -m services.roster.entrypoints.http`: the roster HTTP service."""

from __future__ import annotations

from fastapi import FastAPI

from optisync_common.http import create_app, serve
from optisync_common.resources import Resources
from services.roster.adapters.repository import RosterRepository
from services.roster.api.routes import router
from services.roster.settings import get_settings


async def _indexes(app: FastAPI, resources: Resources) -> None:
    await RosterRepository(resources.db).ensure_indexes()


settings = get_settings()
app = create_app(
    settings,
    title="OptiSync roster",
    description="Stores, optometrists, exam types and shifts; publishes roster.events.v1.",
    routers=[router],
    redis=False,
    on_startup=[_indexes],
)

if __name__ == "__main__":
    serve(app, settings)
