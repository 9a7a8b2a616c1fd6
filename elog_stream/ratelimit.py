"""Token-bucket rate limits per key (a valid token, or a client address)."""

from __future__ import annotations

import time
from collections import OrderedDict


class RateLimiter:
    """Allows ``rate`` events per second per key, in bursts of up to ``burst``.

    Remembers at most ``max_keys`` keys, forgetting the least recently seen (a forgotten key
    starts again with a full bucket).
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be positive and burst at least 1, not {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Take one event for ``key``: 0.0 if allowed, else seconds until one would be."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
