"""Retry backoff with jitter and a per-endpoint circuit breaker (pure: time is passed in)."""

from __future__ import annotations

import random
from dataclasses import dataclass


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so retries of many
    notifications after one outage spread out instead of arriving together."""
    ceiling = min(cap_s, base_s * 2.0 ** max(attempt - 1, 0))
    jitter: float = (rng or random).uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


@dataclass
class CircuitBreaker:
    """Closed -> open after `failures` consecutive failures; after `open_s` one trial call is
    let through (half-open): success closes it, failure opens it again."""

    failures: int = 5
    open_s: float = 30.0
    consecutive_failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False

    def allow(self, now: float) -> bool:
        if self.opened_at is None:
            return True
        if now - self.opened_at < self.open_s or self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def retry_at(self, now: float) -> float:
        return now if self.opened_at is None else max(now, self.opened_at + self.open_s)

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        self.trial_in_flight = False

    def record_failure(self, now: float) -> None:
        self.consecutive_failures += 1
        self.trial_in_flight = False
        if self.opened_at is not None or self.consecutive_failures >= self.failures:
            self.opened_at = now

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.trial_in_flight else "open"
