"""Every collection's pause is timed into `optisync_gc_pause_seconds`, by generation."""

import gc
import math

import uvicorn
from prometheus_client import REGISTRY

from optisync_common import http
from optisync_common.metrics import observe_gc_pauses
from services.booking.entrypoints import processor
from services.booking.settings import BookingSettings


def _pauses(generation: int) -> float:
    value = REGISTRY.get_sample_value(
        "optisync_gc_pause_seconds_count", {"generation": str(generation)}
    )
    return value or 0.0


def test_each_collection_is_timed_under_its_generation_and_the_timer_goes_in_once():
    observe_gc_pauses()
    observe_gc_pauses()  # serve() may be reached twice in one process (tests): one timer
    gc.disable()  # no automatic collection between the readings
    try:
        before = [_pauses(g) for g in range(3)]
        gc.collect(0)
        gc.collect(2)
        after = [_pauses(g) for g in range(3)]
    finally:
        gc.enable()
    assert after[0] - before[0] == 1
    assert after[1] - before[1] == 0
    assert after[2] - before[2] == 1
    assert sum(1 for callback in gc.callbacks if type(callback).__name__ == "_GcPauseTimer") == 1


def test_serve_sets_the_services_thresholds_and_the_processor_collects_young_often(monkeypatch):
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    before = gc.get_threshold()
    try:
        settings = BookingSettings(environment="test")
        app = processor.build_app(settings)
        http.serve(app, settings, gc_thresholds=processor.GC_THRESHOLDS)
        assert gc.get_threshold() == processor.GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    # Smaller young and middle generations, full collections (which walk all the tables) as
    # rare as in every other service.
    assert processor.GC_THRESHOLDS[0] < http.GC_THRESHOLDS[0]
    assert math.prod(processor.GC_THRESHOLDS) == math.prod(http.GC_THRESHOLDS)
