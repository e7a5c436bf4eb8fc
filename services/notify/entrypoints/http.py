"""`python -m services.notify.entrypoints.http`: the notify HTTP service."""

from __future__ import annotations

from optisync_common.http import create_app, serve
from services.notify.settings import get_settings

settings = get_settings()
app = create_app(
    settings,
    title="OptiSync notify",
    description="Notifications, reminders, channel adapters and inbound message routing.",
)

if __name__ == "__main__":
    serve(app, settings)
