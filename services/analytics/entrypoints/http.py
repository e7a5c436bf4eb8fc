"""`python -m services.analytics.entrypoints.http`: the analytics HTTP service."""

from __future__ import annotations

from optisync_common.http import create_app, serve
from services.analytics.settings import get_settings

settings = get_settings()
app = create_app(
    settings,
    title="OptiSync analytics",
    description="Conversion, cancellation, no-show, waitlist fill and satisfaction per store.",
)

if __name__ == "__main__":
    serve(app, settings)
