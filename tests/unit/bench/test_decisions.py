"""The decision benchmark measures real bookings: every command it times is confirmed."""

from __future__ import annotations

from bench.decisions import measure


def test_every_measured_command_books_a_slot():
    result = measure(batch=3, commands=60, warm_up=30)
    assert result["confirmed"] == result["commands"] == 60
    assert result["cpu_us_per_command"] > 0 and result["bytes_per_command"] > 0
