"""Logging that junk cannot flood: one line per key per interval, a few per kind."""

from __future__ import annotations

import logging
import time
from collections import Counter

MAX_TEXT = 200


def shorten(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class ThrottledLog:
    """Logs a problem at most once per (kind, key) and ``per_kind`` times per kind per interval.

    What is held back is counted and mentioned in the next line of that kind. Memory is bounded
    by ``max_keys``; the oldest keys are forgotten first.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        per_kind: int = 10,
        max_keys: int = 1024,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._per_kind = per_kind
        self._max_keys = max_keys
        self._last: dict[tuple[str, str], float] = {}
        self._window: dict[str, tuple[float, int]] = {}  # kind -> (window start, lines)
        self._held: Counter[str] = Counter()

    def warning(self, kind: str, key: str, message: str) -> bool:
        """Log ``message`` (shortened) unless throttled; return whether it was logged."""
        return self.log(logging.WARNING, kind, key, message)

    def log(
        self,
        level: int,
        kind: str,
        key: str,
        message: str,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Log ``message`` (shortened) at ``level`` unless throttled; return whether it was."""
        now = time.monotonic()
        last = self._last.get((kind, key))
        start, lines = self._window.get(kind, (now, 0))
        if now - start >= self._interval:
            start, lines = now, 0
        if (last is not None and now - last < self._interval) or lines >= self._per_kind:
            self._held[kind] += 1
            return False
        self._last.pop((kind, key), None)
        self._last[(kind, key)] = now
        while len(self._last) > self._max_keys:
            del self._last[next(iter(self._last))]
        self._window[kind] = (start, lines + 1)
        held = self._held.pop(kind, 0)
        suffix = f" ({held} more {kind} not logged)" if held else ""
        text = shorten(message, 2 * MAX_TEXT)
        self._logger.log(level, "%s: %s%s", kind, text, suffix, exc_info=exc_info)
        return True
