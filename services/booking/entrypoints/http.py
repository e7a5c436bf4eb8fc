"""`python -m services.booking.entrypoints.http`: the booking HTTP service."""

from __future__ import annotations

from optisync_common.http import create_app, serve
from services.booking.settings import get_settings

settings = get_settings()
app = create_app(
    settings,
    title="OptiSync booking",
    description="Bookings from every channel, decided by the availability processor.",
)

if __name__ == "__main__":
    serve(app, settings)
