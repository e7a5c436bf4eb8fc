"""`python -m services.booking.entrypoints.projector`: the booking projector process.

python -m services.booking.entrypoints.projector               # serve (port projector_port)
python -m services.booking.entrypoints.projector rebuild       # drop and replay, then exit
python -m services.booking.entrypoints.projector rebuild --store STORE_ID
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from fastapi import FastAPI

from optisync_common.http import create_app, serve
from optisync_common.logging import configure_logging
from optisync_common.priority import Yielding
from optisync_common.resources import Resources
from services.booking.adapters.projections import (
    Projector,
    ProjectorRunning,
    projectors,
    rebuild,
)
from services.booking.settings import BookingSettings, get_settings


def build_app(settings: BookingSettings, projector: Projector | None = None) -> FastAPI:
    running = (
        [projector]
        if projector is not None
        else projectors(
            settings,
            settings.projector_fetch_linger_ms / 1000,
            Yielding(settings.projector_yield_nice),
        )
    )

    async def start(app: FastAPI, resources: Resources) -> None:
        for p in running:
            await p.start(resources)

    async def stop(app: FastAPI, resources: Resources) -> None:
        for p in running:
            await p.stop()

    async def check() -> None:
        for p in running:
            await p.check()

    return create_app(
        settings.model_copy(update={"http_port": settings.projector_port}),
        title="OptiSync booking projector",
        description="Projects booking events, availability and roster events into MongoDB "
        "and Redis.",
        on_startup=[start],
        on_shutdown=[stop],
        extra_checks={"projector": check},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The booking projector")
    parser.add_argument("command", nargs="?", choices=["serve", "rebuild"], default="serve")
    parser.add_argument("--store", help="rebuild only this store's projections")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "rebuild":
        configure_logging(settings.service_name, settings.log_level)
        try:
            asyncio.run(rebuild(settings, store_id=args.store))
        except ProjectorRunning as exc:
            print(f"[rebuild] refused: {exc}", file=sys.stderr)
            return 2
        return 0
    serve(build_app(settings), settings.model_copy(update={"http_port": settings.projector_port}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
