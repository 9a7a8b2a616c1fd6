"""Frames waiting to be sent, per topic: the newest wins, each due when its topic's rate allows.

The one rate-limit and pending-frames logic of both publishers (see publisher.py, outbox.py).
No I/O, no clock: every method that needs the time is given it (``time.monotonic()``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from .mailbox import LatestWins

K = TypeVar("K")
V = TypeVar("V")


class Throttle(Generic[K, V]):
    """At most one held value per key, released at most ``max_rate`` times per second per key.

    ``max_rate`` None means no limit: every held value is due at once. A newer value of a key
    replaces the held one (which keeps its place in line); a new key beyond ``max_keys`` evicts
    the longest-held one. Both are returned as dropped. Memory is bounded by ``max_keys`` held
    values plus the keys sent within the last interval. Not thread-safe.
    """

    def __init__(self, max_rate: float | None = None, max_keys: int = 100) -> None:
        if max_rate is not None and not max_rate > 0:
            raise ValueError(f"max_rate must be a number of frames per second > 0, not {max_rate}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self.interval = 0.0 if max_rate is None else 1.0 / max_rate
        self.max_keys = max_keys
        self._held: LatestWins[K, V] = LatestWins()
        self._sent_at: OrderedDict[K, float] = OrderedDict()  # within the interval, oldest first
        self._in_flight: set[K] = set()

    def send_now(self, key: K, now: float) -> bool:
        """Whether a value of ``key`` may be sent now, bypassing the queue; if so, count it sent.

        False while a value of ``key`` is held or being sent (it must not be overtaken) or its
        interval runs.
        """
        self._forget(now)
        if key in self._held or key in self._in_flight or self._due(key, now) > now:
            return False
        self._mark_sent(key, now)
        return True

    def hold(self, key: K, value: V) -> list[tuple[K, V]]:
        """Hold ``value`` until it is due; return the (key, value) pairs dropped to make room."""
        dropped = []
        if key not in self._held and len(self._held) >= self.max_keys:
            dropped.append(self._held.popleft())
        replaced = self._held.put(key, value)
        if replaced is not None:
            dropped.append((key, replaced))
        return dropped

    def restore(self, key: K, value: V) -> list[tuple[K, V]]:
        """Hold again a value taken whose send failed, unless a newer one of ``key`` is held.

        Returns what was dropped: ``value`` itself when superseded, else as ``hold``.
        """
        if key in self._held:
            return [(key, value)]
        return self.hold(key, value)

    def take(self, now: float) -> tuple[K, V] | None:
        """Remove and return the longest-held value that is due, counting it sent; else None.

        Its key is in flight until ``done``.
        """
        self._forget(now)
        for key in self._held:
            if self._due(key, now) <= now:
                value = self._held.pop(key)
                if value is not None:
                    self._mark_sent(key, now)
                    self._in_flight.add(key)
                    return key, value
        return None

    def done(self, key: K) -> None:
        """The value of ``key`` last taken was sent, or failed (then ``restore`` it or drop it)."""
        self._in_flight.discard(key)

    def next_due(self, now: float) -> float | None:
        """Seconds until a held value is due (0.0: one is), None when nothing is held."""
        if not self._held:
            return None
        return max(0.0, min(self._due(key, now) for key in self._held) - now)

    def release_all(self) -> None:
        """Make every held value due now (a flush), whatever the rate limit."""
        self._sent_at.clear()

    def pop_all(self) -> list[tuple[K, V]]:
        """Remove and return every held value, longest-held first."""
        taken = []
        while self._held:
            taken.append(self._held.popleft())
        return taken

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def _due(self, key: K, now: float) -> float:
        sent = self._sent_at.get(key)
        return now if sent is None else sent + self.interval

    def _mark_sent(self, key: K, now: float) -> None:
        if self.interval:
            self._sent_at.pop(key, None)
            self._sent_at[key] = now

    def _forget(self, now: float) -> None:
        while self._sent_at:
            key, sent = next(iter(self._sent_at.items()))
            if sent + self.interval > now:
                break
            del self._sent_at[key]
