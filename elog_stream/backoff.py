"""Exponential backoff with full jitter, the one policy of every retry loop (redis-py's)."""

from __future__ import annotations

from redis.backoff import ExponentialWithJitterBackoff


class Backoff:
    """Delays growing from about ``base`` towards ``cap`` seconds, each drawn at random below.

    Call ``next_delay`` after each failure and ``reset`` after a success.
    """

    def __init__(self, base: float = 0.1, cap: float = 5.0) -> None:
        self._policy = ExponentialWithJitterBackoff(cap=cap, base=base)
        self.failures = 0

    def next_delay(self) -> float:
        delay = float(self._policy.compute(self.failures))
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
