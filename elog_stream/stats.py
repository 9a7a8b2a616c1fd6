"""Counters of what the service dropped or lost on purpose, for logs and metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    """Process-wide counters; updated only from the event loop, so no locking."""

    frames_superseded: int = 0  # images a slow viewer skipped because a newer one replaced them
    viewer_disconnects: Counter[str] = field(default_factory=Counter)  # by reason kind
    redis_reconnects: int = 0
    publish_rate_limited: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_superseded": self.frames_superseded,
            "viewer_disconnects": dict(self.viewer_disconnects),
            "redis_reconnects": self.redis_reconnects,
            "publish_rate_limited": self.publish_rate_limited,
        }
