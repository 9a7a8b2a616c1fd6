"""Redis going away and coming back: the service stays up, says 503, then resumes by itself."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from support import png, receive, receive_image, run_service, wait_for
from websockets.asyncio.client import connect

from elog_stream import AsyncPublisher, Publisher, RedisUnavailableError, TopicNotFoundError
from elog_stream.config import Settings
from elog_stream.embedded import EmbeddedRedis, free_port


async def test_service_survives_a_redis_restart(prefix: str) -> None:
    redis_server = EmbeddedRedis().start()
    try:
        settings = Settings(redis_url=redis_server.url, prefix=prefix)
        publisher = AsyncPublisher(redis_server.url, prefix=prefix)
        with run_service(settings) as service:
            async with connect(service.ws_url) as ws:
                await receive(ws, "sync")
                await publisher.publish("before", "e", png("before"))
                await receive_image(ws, "before")

                redis_server.stop()
                unhealthy = await asyncio.to_thread(
                    wait_for, lambda: service.ready().status_code == 503, "readyz to say 503"
                )
                assert unhealthy
                reason = service.ready().json()["reason"]
                assert f"cannot reach Redis at {redis_server.url}" in reason
                with pytest.raises(RedisUnavailableError, match=redis_server.url):
                    await publisher.publish("during", "e", png())
                async with httpx.AsyncClient() as http:
                    response = await http.post(
                        service.url + "api/topics/during", params={"experiment": "e"}, content=png()
                    )
                    assert response.status_code == 503
                    assert "cannot reach Redis" in response.json()["detail"]
                    cached = await http.get(service.url + "api/topics/before/image")
                    assert cached.content == png("before")  # still served from memory

                # Same port, empty data set: the service must reconnect on its own.
                redis_server = EmbeddedRedis(port=redis_server.port).start()
                await asyncio.to_thread(
                    wait_for, lambda: service.ready().status_code == 200, "readyz back to 200"
                )
                # The topic from before the outage is gone from Redis: the resync says so.
                assert await receive(ws, "expired") == {"type": "expired", "topic": "before"}
                await publisher.publish("after", "e", png("after"))
                header, data = await receive_image(ws, "after")
                assert data == png("after") and header["seq"] == 1
                stats = httpx.get(service.url + "api/stats").json()
                assert stats["redis_reconnects"] >= 1 and stats["viewers"] == 1
        await publisher.aclose()
    finally:
        redis_server.stop()


async def test_updates_published_while_the_subscription_was_down_are_pushed(
    prefix: str,
) -> None:
    """Kill only the service's pub/sub connection: the publish in the gap must still arrive."""
    redis_server = EmbeddedRedis().start()
    try:
        settings = Settings(redis_url=redis_server.url, prefix=prefix)
        with run_service(settings) as service, Publisher(redis_server.url, prefix=prefix) as p:
            async with connect(service.ws_url) as ws:
                await receive(ws, "sync")
                p.redis.client_kill_filter(_type="pubsub")
                p.publish("in-the-gap", "e", png("gap"))
                header, data = await receive_image(ws, "in-the-gap")
                assert data == png("gap")
    finally:
        redis_server.stop()


def test_service_starts_while_redis_is_down_and_catches_up(prefix: str) -> None:
    redis_server = EmbeddedRedis()  # not started yet
    settings = Settings(redis_url=redis_server.url, prefix=prefix)
    with run_service(settings, wait_healthy=False) as service:
        response = wait_for(lambda: service.ready(), "the service to answer")
        assert response.status_code == 503
        assert "cannot reach Redis" in response.json()["reason"]
        with redis_server:
            with Publisher(redis_server.url, prefix=prefix) as publisher:
                publisher.publish("late", "e", png("late"))
            wait_for(lambda: service.ready().status_code == 200, "readyz to turn 200")
            wait_for(
                lambda: httpx.get(service.url + "api/topics/late").status_code == 200,
                "the topic published before the service subscribed",
            )


async def test_async_publisher_buffers_latest_per_topic_while_redis_is_down(prefix: str) -> None:
    redis_server = EmbeddedRedis().start()
    try:
        async with AsyncPublisher(redis_server.url, prefix=prefix, retry_buffer=2) as publisher:
            assert await publisher.publish("buf/a", "e", png("a0")) == 1
            redis_server.stop()
            # Its open connection may not have seen the server go yet: a publish sent on it
            # now could not tell whether the server ran it. Once the outage is seen, it can.
            with pytest.raises(RedisUnavailableError):
                await publisher.ping()
            assert await publisher.publish("buf/a", "e", png("a1")) is None
            assert await publisher.publish("buf/a", "e", png("a2")) is None  # replaces a1
            assert await publisher.publish("buf/b", "e", png("b1")) is None
            assert await publisher.publish("buf/c", "e", png("c1")) is None  # evicts a2
            assert publisher.dropped == {"buf/a": 2}

            redis_server = EmbeddedRedis(port=redis_server.port).start()
            async with asyncio.timeout(15):
                await publisher.flush()
            assert (await publisher.grab("buf/b")).data == png("b1")
            assert (await publisher.grab("buf/c")).data == png("c1")
            with pytest.raises(TopicNotFoundError):  # the server restarted empty
                await publisher.grab("buf/a")
            assert await publisher.publish("buf/a", "e", png("a3")) == 1  # direct again
    finally:
        redis_server.stop()


async def test_closing_a_publisher_reports_what_never_got_sent(prefix: str) -> None:
    publisher = AsyncPublisher(f"redis://127.0.0.1:{free_port()}/0", retry_buffer=5)
    assert await publisher.publish("never", "e", png()) is None
    await publisher.aclose()
    assert publisher.dropped == {"never": 1}
