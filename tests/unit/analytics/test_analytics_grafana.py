"""The Grafana dashboard queries only metrics the analytics processes really expose."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import optisync_common.metrics
import services.analytics.adapters.metrics  # noqa: F401  (registers the pipeline metrics)

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "analytics.json"


def test_every_queried_metric_is_registered() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    names = {m for e in exprs for m in re.findall(r"\b(optisync_[a-z_]+)", e)}
    known = set(REGISTRY._names_to_collectors)  # includes `_total`, `_bucket` sample names
    assert names and names <= known, names - known
    assert optisync_common.metrics.EVENTS_CONSUMED is not None
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
