"""`python -m services.analytics.entrypoints.worker`: the analytics aggregator process.

python -m services.analytics.entrypoints.worker            # serve (port ANALYTICS_WORKER_PORT)
python -m services.analytics.entrypoints.worker rebuild    # drop the KPIs, replay the topics, exit
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from fastapi import FastAPI

from optisync_common.http import create_app, serve
from optisync_common.logging import configure_logging
from optisync_common.resources import Resources, open_resources
from services.analytics.adapters.worker import AggregatorWorker, rebuild
from services.analytics.settings import AnalyticsSettings, get_settings


def build_app(settings: AnalyticsSettings, worker: AggregatorWorker | None = None) -> FastAPI:
    running = worker or AggregatorWorker(settings)

    async def start(app: FastAPI, resources: Resources) -> None:
        app.state.worker = running
        await running.start(resources)

    async def stop(app: FastAPI, resources: Resources) -> None:
        await running.stop()

    return create_app(
        settings.model_copy(update={"http_port": settings.worker_port}),
        title="OptiSync analytics aggregator",
        description="Aggregates booking facts, deliveries and feedback into KPIs per store-day.",
        kafka=False,
        on_startup=[start],
        on_shutdown=[stop],
        extra_checks={"kafka": running.check_kafka, "aggregator": running.check},
    )


async def _rebuild(settings: AnalyticsSettings) -> None:
    async with open_resources(settings, kafka=False) as resources:
        await rebuild(settings, resources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The analytics aggregator")
    parser.add_argument("command", nargs="?", choices=["serve", "rebuild"], default="serve")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "rebuild":
        configure_logging(settings.service_name, settings.log_level)
        asyncio.run(_rebuild(settings))
        return 0
    serve(build_app(settings), settings.model_copy(update={"http_port": settings.worker_port}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
