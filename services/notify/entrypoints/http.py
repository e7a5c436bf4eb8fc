"""`python -m services.notify.entrypoints.http`: the notify HTTP service."""

from __future__ import annotations

from fastapi import FastAPI

from optisync_common.http import create_app, serve
from services.notify.api.routes import router
from services.notify.settings import NotifySettings, get_settings


def build_app(settings: NotifySettings) -> FastAPI:
    return create_app(
        settings,
        title="OptiSync notify",
        description="Notifications, reminders, channel adapters and inbound message routing.",
        routers=[router],
    )


settings = get_settings()
app = build_app(settings)

if __name__ == "__main__":
    serve(app, settings)
