"""Counters of what the service dropped, refused or lost, for logs and metrics."""

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
    # Data read from Redis that was refused (malformed_notification, wrong_type, not_an_image,
    # ...), and the feed's own failures (crash, subscription_stale), by kind.
    feed_errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_superseded": self.frames_superseded,
            "viewer_disconnects": dict(self.viewer_disconnects),
            "redis_reconnects": self.redis_reconnects,
            "publish_rate_limited": self.publish_rate_limited,
            "feed_errors": dict(self.feed_errors),
        }
