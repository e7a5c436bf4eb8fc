"""`python -m services.analytics.entrypoints.http`: the HQ API and dashboard page."""

from __future__ import annotations

from fastapi import FastAPI

from optisync_common.clock import Clock, SystemClock
from optisync_common.http import create_app, serve
from optisync_common.resources import Resources
from services.analytics.adapters.store import KpiStore
from services.analytics.api.dashboard import router as dashboard_router
from services.analytics.api.routes import router as kpi_router
from services.analytics.settings import AnalyticsSettings, get_settings


def build_app(settings: AnalyticsSettings, clock: Clock | None = None) -> FastAPI:
    async def start(app: FastAPI, resources: Resources) -> None:
        await KpiStore(resources.db).ensure_indexes()

    app = create_app(
        settings,
        title="OptiSync analytics",
        description="HQ KPIs: conversion, cancellation, no-show, waitlist fill and satisfaction "
        "per store, region and chain; the dashboard page is at /dashboard.",
        routers=[kpi_router, dashboard_router],
        # No Kafka use of its own; the producer gives /readyz the same `kafka` check as every
        # service (the numbers it serves are only fresh while Kafka is reachable).
        on_startup=[start],
    )
    app.state.clock = clock or SystemClock()
    return app


if __name__ == "__main__":
    settings = get_settings()
    serve(build_app(settings), settings)
