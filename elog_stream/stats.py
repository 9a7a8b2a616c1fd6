"""The service's counters, as prometheus-client metrics: ``/metrics`` and ``/api/stats``.

``Stats`` is the one owner of every number the service reports. Its metrics live in a
``CollectorRegistry`` of its own (never the global one), so several services in one process
count apart; ``exposition()`` is the Prometheus text of that registry and ``as_dict()`` a JSON
view read back from it, so the two can never disagree.
"""

from __future__ import annotations

import itertools
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

# The classic text format, which every Prometheus reads; generate_latest writes it for names
# like ours. Recent prometheus-client versions label it version=1.0.0, unknown to Prometheus 2.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# 1 ms (a loopback viewer) to 10 s (a viewer near its slow-viewer timeout).
LEGACY_MODES = ("notifications", "scan")
SEEN_TO_SENT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Stats:
    """Process-wide counters; updated only from the event loop.

    The gauges are not counted here but read, at each scrape, from their owner (``watch``).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._topics = Gauge("elog_topics", "Live topics held in memory.", registry=registry)
        self._viewers = Gauge(
            "elog_viewers", "Viewers connected over WebSocket.", registry=registry
        )
        self._seen = Counter(
            "elog_publishes_seen",
            "New images the feed installed into the hub (notified, reconciled or published here).",
            registry=registry,
        )
        self._superseded = Counter(
            "elog_frames_superseded",
            "Images a viewer skipped because a newer one of the topic replaced them.",
            registry=registry,
        )
        self._disconnects = Counter(
            "elog_viewer_disconnects", "Viewers gone, by reason.", ["reason"], registry=registry
        )
        self._reconnects = Counter(
            "elog_redis_reconnects",
            "Times the feed lost its update subscription and started again.",
            registry=registry,
        )
        self._feed_errors = Counter(
            "elog_feed_errors",
            "Data read from Redis that was refused, and the feed's own failures, by kind.",
            ["kind"],
            registry=registry,
        )
        self._http_publishes = Counter(
            "elog_http_publishes",
            "HTTP publish requests answered, by status.",
            ["status"],
            registry=registry,
        )
        self._legacy_published = Counter(
            "elog_legacy_published",
            "Hashes written by the 2014 tool that this service published (--legacy-keys).",
            registry=registry,
        )
        self._legacy_refused = Counter(
            "elog_legacy_refused",
            "Hashes written by the 2014 tool that were refused, by kind.",
            ["kind"],
            registry=registry,
        )
        self._legacy_mode = Gauge(
            "elog_legacy_mode",
            "How hashes of the 2014 tool are found: 1 for the mode in use (notifications, scan).",
            ["mode"],
            registry=registry,
        )
        self._preview_hits = Counter(
            "elog_preview_cache_hits",
            "Previews served from the cache (GET ...image?max_width=N).",
            registry=registry,
        )
        self._previews_made = Counter(
            "elog_previews_made", "Previews made (decoded and scaled).", registry=registry
        )
        self._previews_refused = Counter(
            "elog_previews_refused",
            "Previews refused: too many pixels, or an image that does not decode.",
            registry=registry,
        )
        self._preview_cache_bytes = Gauge(
            "elog_preview_cache_bytes", "Bytes held by the preview cache.", registry=registry
        )
        self._webhook_delivered = Counter(
            "elog_webhook_delivered",
            "Logbook entries this service forwarded to ELOG_LOGBOOK_WEBHOOK (answered 2xx).",
            registry=registry,
        )
        self._webhook_failures = Counter(
            "elog_webhook_failures",
            "Attempts to forward a logbook entry to the webhook that failed (each retried).",
            registry=registry,
        )
        self._sent = _SentImages()
        registry.register(self._sent)

    def watch(self, topics: Callable[[], int], viewers: Callable[[], int]) -> None:
        """Read the topic and viewer gauges from these functions of their owner (the Hub)."""
        self._topics.set_function(topics)
        self._viewers.set_function(viewers)

    def watch_previews(self, cache_bytes: Callable[[], int]) -> None:
        """Read the preview cache's size from this function of its owner (``Previews``)."""
        self._preview_cache_bytes.set_function(cache_bytes)

    def preview_cache_hit(self) -> None:
        self._preview_hits.inc()

    def preview_made(self) -> None:
        self._previews_made.inc()

    def preview_refused(self) -> None:
        self._previews_refused.inc()

    def publish_seen(self) -> None:
        self._seen.inc()

    def image_sent(self, size: int, seen_to_sent: float | None) -> None:
        """An image of ``size`` bytes was handed to a socket, ``seen_to_sent`` s after it was
        installed (None: not a live update)."""
        sent = self._sent
        sent.images += 1
        sent.bytes += size
        if seen_to_sent is not None:
            sent.latency_counts[bisect_left(SEEN_TO_SENT_BUCKETS, seen_to_sent)] += 1
            sent.latency_sum += seen_to_sent

    def frame_superseded(self) -> None:
        self._superseded.inc()

    def viewer_disconnected(self, reason: str) -> None:
        self._disconnects.labels(reason=reason).inc()

    def redis_reconnected(self) -> None:
        self._reconnects.inc()

    def feed_error(self, kind: str) -> None:
        self._feed_errors.labels(kind=kind).inc()

    def http_publish(self, status: int) -> None:
        self._http_publishes.labels(status=str(status)).inc()

    def legacy_published(self) -> None:
        self._legacy_published.inc()

    def legacy_refused(self, kind: str) -> None:
        self._legacy_refused.labels(kind=kind).inc()

    def legacy_mode(self, mode: str) -> None:
        """Say which mode the legacy bridge uses now (``notifications`` or ``scan``)."""
        for name in LEGACY_MODES:
            self._legacy_mode.labels(mode=name).set(1 if name == mode else 0)

    def webhook_delivered(self) -> None:
        self._webhook_delivered.inc()

    def webhook_failed(self) -> None:
        self._webhook_failures.inc()

    def exposition(self) -> bytes:
        """The Prometheus text format (``CONTENT_TYPE``) of every metric."""
        return generate_latest(self.registry)

    def as_dict(self) -> dict[str, Any]:
        """The same numbers as JSON, for ``/api/stats``."""
        value = self.registry.get_sample_value
        http_publishes = _by_label(self._http_publishes, "status")
        return {
            "topics": int(value("elog_topics") or 0),
            "viewers": int(value("elog_viewers") or 0),
            "publishes_seen": int(value("elog_publishes_seen_total") or 0),
            "images_sent": int(value("elog_images_sent_total") or 0),
            "image_bytes_sent": int(value("elog_image_bytes_sent_total") or 0),
            "seen_to_sent_seconds": {
                "count": int(value("elog_seen_to_sent_seconds_count") or 0),
                "sum": value("elog_seen_to_sent_seconds_sum") or 0.0,
            },
            "frames_superseded": int(value("elog_frames_superseded_total") or 0),
            "viewer_disconnects": _by_label(self._disconnects, "reason"),
            "redis_reconnects": int(value("elog_redis_reconnects_total") or 0),
            "http_publishes": http_publishes,
            "publish_rate_limited": http_publishes.get("429", 0),
            "feed_errors": _by_label(self._feed_errors, "kind"),
            "preview_cache_hits": int(value("elog_preview_cache_hits_total") or 0),
            "previews_made": int(value("elog_previews_made_total") or 0),
            "previews_refused": int(value("elog_previews_refused_total") or 0),
            "preview_cache_bytes": int(value("elog_preview_cache_bytes") or 0),
            "webhook_delivered": int(value("elog_webhook_delivered_total") or 0),
            "webhook_failures": int(value("elog_webhook_failures_total") or 0),
            "legacy_published": int(value("elog_legacy_published_total") or 0),
            "legacy_refused": _by_label(self._legacy_refused, "kind"),
            "legacy_mode": next(
                (mode for mode in LEGACY_MODES if value("elog_legacy_mode", {"mode": mode})),
                None,
            ),
        }


class _SentImages:
    """The numbers counted per image per viewer, as plain numbers made metrics at each
    collection: prometheus-client's Counter and Histogram take a lock per update, 6 µs per
    image sent on a loaded 2-core machine, as much as the rest of the send."""

    def __init__(self) -> None:
        self.images = 0
        self.bytes = 0
        self.latency_counts = [0] * (len(SEEN_TO_SENT_BUCKETS) + 1)  # per bucket, then +Inf
        self.latency_sum = 0.0
        self._created = time.time()

    def collect(self) -> Iterator[Metric]:
        created = self._created
        yield CounterMetricFamily(
            "elog_images_sent", "Images handed to viewers' sockets.", self.images, created=created
        )
        yield CounterMetricFamily(
            "elog_image_bytes_sent",
            "Image bytes handed to viewers' sockets.",
            self.bytes,
            created=created,
        )
        bounds = (*SEEN_TO_SENT_BUCKETS, math.inf)
        cumulative = itertools.accumulate(self.latency_counts)
        yield HistogramMetricFamily(
            "elog_seen_to_sent_seconds",
            "Seconds from an image's installation into the hub to its bytes handed to a "
            "viewer's socket (live updates, not the snapshot a viewer gets on subscribing).",
            buckets=[(floatToGoString(b), n) for b, n in zip(bounds, cumulative, strict=True)],
            sum_value=self.latency_sum,
        )


def _by_label(counter: Counter, label: str) -> dict[str, int]:
    return {
        sample.labels[label]: int(sample.value)
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }
