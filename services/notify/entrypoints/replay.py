"""`python -m services.notify.entrypoints.replay [--id NOTIFICATION_ID ...] [--store STORE_ID]`:
re-send dead-lettered notifications from notify.dlq.v1 (each at most once more)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from optisync_common.logging import configure_logging
from services.notify.adapters.replay import replay
from services.notify.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay notifications from notify.dlq.v1")
    parser.add_argument("--id", action="append", default=[], help="only this notification id")
    parser.add_argument("--store", help="only this store's notifications")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.service_name, settings.log_level)
    report = asyncio.run(replay(settings, notification_ids=args.id, store_id=args.store))
    return 0 if not report.still_failing else 1


if __name__ == "__main__":
    sys.exit(main())
