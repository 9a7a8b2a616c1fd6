"""``/metrics`` (Prometheus text), ``/api/stats`` as its JSON view, ``/healthz`` and ``/readyz``.

Every number is scraped from a real service while a real viewer, publisher and Redis move it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from support import RunningService, png, receive, receive_image, run_service, wait_for
from websockets.asyncio.client import connect

from elog_stream.config import Settings
from elog_stream.embedded import EmbeddedRedis
from elog_stream.protocol import encode_notification

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
VIEW = "view-token-for-the-metrics"


def scrape(service: RunningService, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of ``/metrics``, by name and labels."""
    response = httpx.get(service.url + "metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def metric(service: RunningService, name: str, **labels: str) -> float:
    return value(scrape(service), name, **labels)


async def test_counters_move_as_images_reach_a_viewer(service: RunningService) -> None:
    assert service.publisher is not None
    before = scrape(service)
    assert value(before, "elog_viewers") == 0
    images = [png(f"metrics {i}") for i in range(3)]
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")  # registered by now
        assert metric(service, "elog_viewers") == 1
        for i, image in enumerate(images):
            service.publisher.publish("metrics/t", "e", image)
            header, data = await receive_image(ws, "metrics/t")
            assert data == image and header["seq"] == i + 1

        def grew(name: str) -> float:
            return value(scrape(service), name) - value(before, name)

        # The server counts a frame once its socket took it, which may be just after it arrived.
        wait_for(lambda: grew("elog_seen_to_sent_seconds_count") == 3, "3 latencies")
        after = scrape(service)
        assert grew("elog_publishes_seen_total") == 3
        assert grew("elog_images_sent_total") == 3
        assert grew("elog_image_bytes_sent_total") == sum(map(len, images))
        assert value(after, "elog_seen_to_sent_seconds_sum") > 0
        # Loopback, an idle machine or not: well under the top bucket.
        assert value(after, "elog_seen_to_sent_seconds_bucket", le="10.0") == value(
            after, "elog_seen_to_sent_seconds_count"
        )
        assert value(after, "elog_topics") == 1

    wait_for(lambda: metric(service, "elog_viewers") == 0, "the viewer gauge to drop to 0")
    gone = "elog_viewer_disconnects_total"
    wait_for(lambda: metric(service, gone, reason="client_closed") == 1, "the disconnect")

    # /api/stats is a view of the same numbers.
    samples = scrape(service)
    stats = httpx.get(service.url + "api/stats").json()
    assert stats["viewers"] == 0 and stats["topics"] == 1
    assert stats["images_sent"] == value(samples, "elog_images_sent_total") == 3
    assert stats["image_bytes_sent"] == value(samples, "elog_image_bytes_sent_total")
    assert stats["publishes_seen"] == value(samples, "elog_publishes_seen_total")
    assert stats["seen_to_sent_seconds"]["count"] == 3
    assert stats["viewer_disconnects"] == {"client_closed": 1}


def test_http_publishes_are_counted_by_status(settings: Settings) -> None:
    limited = Settings(
        redis_url=settings.redis_url, prefix=settings.prefix, publish_rate=0.01, publish_burst=2
    )
    with run_service(limited) as service:
        url = service.url + "api/topics/metrics/http"
        params = {"experiment": "e"}
        statuses = [
            httpx.post(url, params=params, content=png()).status_code,
            httpx.post(url, params=params, content=b"not an image").status_code,
            httpx.post(url, params=params, content=png()).status_code,  # over the burst
        ]
        assert statuses == [201, 415, 429]
        samples = scrape(service)
        for status in ("201", "415", "429"):
            assert value(samples, "elog_http_publishes_total", status=status) == 1, status
        stats = httpx.get(service.url + "api/stats").json()
        assert stats["http_publishes"] == {"201": 1, "415": 1, "429": 1}
        assert stats["publish_rate_limited"] == 1


@pytest.fixture
def raw(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(str(settings.redis_url))
    yield client
    client.close()


def test_feed_errors_are_counted_by_kind(
    service: RunningService, settings: Settings, raw: redis.Redis
) -> None:
    assert metric(service, "elog_feed_errors_total", kind="wrong_type") == 0
    raw.set(settings.keys.topic("metrics/junk"), "not a hash")
    raw.publish(settings.keys.channel, encode_notification("metrics/junk"))
    wait_for(
        lambda: metric(service, "elog_feed_errors_total", kind="wrong_type") == 1,
        "the wrong_type error to be counted",
    )
    assert httpx.get(service.url + "api/stats").json()["feed_errors"] == {"wrong_type": 1}


def test_metrics_need_a_view_grant(settings: Settings) -> None:
    guarded = Settings(redis_url=settings.redis_url, prefix=settings.prefix, view_token=VIEW)
    with run_service(guarded) as service:
        refused = httpx.get(service.url + "metrics")
        assert refused.status_code == 401
        assert "elog_" not in refused.text
        post = httpx.post(service.url + "api/topics/t", params={"experiment": "e"}, content=png())
        assert post.status_code == 401
        samples = scrape(service, headers={"Authorization": f"Bearer {VIEW}"})
        assert ("elog_viewers", frozenset()) in samples
        # Refused by the access check, before the handler: counted all the same.
        assert value(samples, "elog_http_publishes_total", status="401") == 1
        for probe in ("healthz", "readyz"):  # public
            assert httpx.get(service.url + probe).status_code == 200


def test_readyz_follows_redis_and_healthz_does_not(prefix: str) -> None:
    """Liveness must not restart a process because Redis is down; readiness says it is."""
    redis_server = EmbeddedRedis().start()
    try:
        settings = Settings(redis_url=redis_server.url, prefix=prefix)
        with run_service(settings) as service:
            assert service.ready().status_code == 200
            assert service.health().status_code == 200
            redis_server.stop()
            wait_for(lambda: service.ready().status_code == 503, "readyz to say 503")
            ready = service.ready().json()
            assert ready["status"] == "unavailable" and "Redis" in ready["reason"]
            health = service.health()
            assert health.status_code == 200 and health.json()["status"] == "ok"
    finally:
        redis_server.stop()
