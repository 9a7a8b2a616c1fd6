"""The live path end to end: publish → Redis → service → WebSocket, with real sockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx
import pytest
import redis
from support import RunningService, png, receive, receive_image, run_service, wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from elog_stream import Publisher
from elog_stream.config import Settings


async def test_publish_is_pushed_to_a_connected_viewer(
    service: RunningService, publisher: Publisher
) -> None:
    async with connect(service.ws_url) as ws:
        assert await receive(ws, "sync") == {"type": "sync", "topics": []}
        image = png("live")
        seq = await asyncio.to_thread(
            publisher.publish, "cxif7214/detector/sum", "cxif7214", image, "sum of panels"
        )
        header, data = await receive_image(ws)
    assert data == image
    assert header == {
        "type": "image",
        "topic": "cxif7214/detector/sum",
        "experiment": "cxif7214",
        "description": "sum of panels",
        "seq": seq,
        "updated_at": header["updated_at"],
        "content_type": "image/png",
        "size": len(image),
        "digest": publisher.grab("cxif7214/detector/sum").digest,
    }


async def test_snapshot_on_connect_then_updates(
    service: RunningService, publisher: Publisher
) -> None:
    publisher.publish("snap/a", "e1", png("a"))
    publisher.publish("snap/b", "e2", png("b"))
    wait_for(lambda: len(service_topics(service)) == 2, "the service to hold both topics")
    async with connect(service.ws_url) as ws:
        sync = await receive(ws, "sync")
        assert sorted(sync["topics"]) == ["snap/a", "snap/b"]
        first = [await receive_image(ws), await receive_image(ws)]
        assert sorted((h["topic"], d) for h, d in first) == [
            ("snap/a", png("a")),
            ("snap/b", png("b")),
        ]
        await asyncio.to_thread(publisher.publish, "snap/a", "e1", png("a2"))
        header, data = await receive_image(ws)
        assert (header["topic"], header["seq"], data) == ("snap/a", 2, png("a2"))


async def test_two_viewers_both_get_every_image(
    service: RunningService, publisher: Publisher
) -> None:
    async with connect(service.ws_url) as one, connect(service.ws_url) as two:
        await receive(one, "sync")
        await receive(two, "sync")
        await asyncio.to_thread(publisher.publish, "both", "e", png("both"))
        for ws in (one, two):
            header, data = await receive_image(ws)
            assert (header["topic"], data) == ("both", png("both"))


async def test_subscribe_narrows_by_topic_pattern_and_experiment(
    service: RunningService, publisher: Publisher
) -> None:
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        await ws.send(
            json.dumps({"type": "subscribe", "topics": ["det/*"], "experiments": ["cxif7214"]})
        )
        assert await receive(ws, "sync") == {"type": "sync", "topics": []}
        await asyncio.to_thread(publisher.publish, "other/x", "cxif7214", png("no: topic"))
        await asyncio.to_thread(publisher.publish, "det/x", "mfx1234", png("no: experiment"))
        await asyncio.to_thread(publisher.publish, "det/y", "cxif7214", png("yes"))
        header, data = await receive_image(ws)
        assert (header["topic"], data) == ("det/y", png("yes"))
        # Widening the filter sends the images now in view, and a sync listing them.
        await ws.send(json.dumps({"type": "subscribe", "topics": ["det/*"]}))
        assert sorted((await receive(ws, "sync"))["topics"]) == ["det/x", "det/y"]
        header, data = await receive_image(ws)
        assert (header["topic"], data) == ("det/x", png("no: experiment"))


async def test_filter_in_the_url_limits_the_snapshot(
    service: RunningService, publisher: Publisher
) -> None:
    publisher.publish("url/a", "exp-a", png("a"))
    publisher.publish("url/b", "exp-b", png("b"))
    wait_for(lambda: len(service_topics(service)) == 2, "the service to hold both topics")
    async with connect(service.ws_url + "?experiment=exp-b") as ws:
        assert (await receive(ws, "sync"))["topics"] == ["url/b"]
        header, _ = await receive_image(ws)
        assert header["topic"] == "url/b"
        await asyncio.to_thread(publisher.publish, "url/a", "exp-a", png("a2"))
        await asyncio.to_thread(publisher.publish, "url/b", "exp-b", png("b2"))
        header, data = await receive_image(ws)
        assert (header["topic"], data) == ("url/b", png("b2"))


async def test_raw_redis_publish_written_from_the_protocol_doc(
    service: RunningService, settings: Settings
) -> None:
    """Publish with plain Redis commands exactly as docs/protocol.md describes."""
    raw = redis.asyncio.Redis.from_url(settings.redis_url)
    image = png("raw")
    key = f"{settings.prefix}topic:{{raw/plot}}"
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        async with raw.pipeline(transaction=True) as tx:
            tx.hset(
                key,
                mapping={
                    "experiment": "raw-exp",
                    "description": "written by hand",
                    "pngimage": image,
                    "content_type": "image/png",
                    "updated_at": "1764079268.125",
                    "digest": hashlib.sha256(image).hexdigest(),
                },
            )
            tx.hincrby(key, "seq", 1)
            tx.expire(key, 3600)
            tx.publish(f"{settings.prefix}updates", '{"topic":"raw/plot"}')
            replies = await tx.execute()
        assert replies[1] == 1
        header, data = await receive_image(ws)
    await raw.aclose()
    assert data == image
    assert (header["topic"], header["experiment"], header["description"]) == (
        "raw/plot",
        "raw-exp",
        "written by hand",
    )
    assert (header["seq"], header["updated_at"]) == (1, 1764079268.125)
    assert header["digest"] == hashlib.sha256(image).hexdigest()


async def test_expired_topics_are_announced_and_dropped(settings: Settings) -> None:
    short = Settings(redis_url=settings.redis_url, prefix=settings.prefix, ttl=1)
    with run_service(short) as service, Publisher(short.redis_url, prefix=short.prefix, ttl=1) as p:
        async with connect(service.ws_url) as ws:
            await receive(ws, "sync")
            await asyncio.to_thread(p.publish, "brief", "e", png())
            await receive_image(ws)
            assert await receive(ws, "expired") == {"type": "expired", "topic": "brief"}
        assert service_topics(service) == []


async def test_no_compression_is_negotiated(service: RunningService) -> None:
    async with connect(service.ws_url) as ws:  # the client offers permessage-deflate
        assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None


async def test_malformed_messages_get_an_error_and_the_socket_stays_open(
    service: RunningService, publisher: Publisher
) -> None:
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        for bad, reason in [
            ("not json", "bad message: Expecting value"),
            ('{"type": "dance"}', 'expected {"type": "subscribe"'),
            ('{"type": "subscribe", "topics": "a"}', "topics must be a list of strings"),
            ("[1, 2]", 'expected {"type": "subscribe"'),
        ]:
            await ws.send(bad)
            message = await receive(ws, "error")
            assert message["message"].startswith(reason) or reason in message["message"]
        await ws.send(b"\x00\x01")
        assert "binary" in (await receive(ws, "error"))["message"]
        await asyncio.to_thread(publisher.publish, "still-alive", "e", png())
        header, _ = await receive_image(ws)
        assert header["topic"] == "still-alive"


async def test_oversized_client_message_closes_only_that_socket(
    service: RunningService, publisher: Publisher
) -> None:
    async with connect(service.ws_url) as good, connect(service.ws_url) as bad:
        await receive(good, "sync")
        await receive(bad, "sync")
        await bad.send("x" * 100_000)
        with pytest.raises(ConnectionClosed) as closed:
            await receive(bad, "never")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await asyncio.to_thread(publisher.publish, "after", "e", png())
        header, _ = await receive_image(good)
        assert header["topic"] == "after"


def service_topics(service: RunningService) -> list[str]:

    return [t["topic"] for t in httpx.get(service.url + "api/topics").json()]


async def test_a_resuming_viewer_gets_only_what_changed(
    service: RunningService, publisher: Publisher
) -> None:
    publisher.publish("resume/a", "e", png("a1"))
    publisher.publish("resume/b", "e", png("b1"))
    publisher.publish("resume/gone", "e", png("g"))
    wait_for(lambda: len(service_topics(service)) == 3, "three topics")
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        held = {}
        for _ in range(3):
            header, _ = await receive_image(ws)
            held[header["topic"]] = header["seq"]
    # While away: a changes, gone expires (deleted here), b stays as it was.
    await asyncio.to_thread(publisher.publish, "resume/a", "e", png("a2"))
    publisher.redis.delete(publisher.settings.keys.topic("resume/gone"))
    publisher.redis.publish(publisher.settings.keys.channel, '{"topic": "resume/gone"}')
    wait_for(lambda: sorted(service_topics(service)) == ["resume/a", "resume/b"], "the change")

    async with connect(service.ws_url + "?resume=1") as ws:
        await ws.send(json.dumps({"type": "subscribe", "have": held}))
        assert sorted((await receive(ws, "sync"))["topics"]) == ["resume/a", "resume/b"]
        header, data = await receive_image(ws)
        assert (header["topic"], header["seq"], data) == ("resume/a", 2, png("a2"))
        # b is not sent again: the next image is the next publish.
        await asyncio.to_thread(publisher.publish, "resume/c", "e", png("c"))
        header, _ = await receive_image(ws)
        assert header["topic"] == "resume/c"
        await ws.send(json.dumps({"type": "subscribe", "have": {"x": "seven"}}))
        assert "have must map" in (await receive(ws, "error"))["message"]


async def test_a_resuming_viewer_is_sent_nothing_before_its_first_subscribe(
    service: RunningService, publisher: Publisher
) -> None:
    publisher.publish("resume/live", "e", png("l1"))
    wait_for(lambda: service_topics(service) == ["resume/live"], "the topic")

    def stats() -> dict[str, Any]:
        return httpx.get(service.url + "api/stats").json()

    async with connect(service.ws_url + "?resume=1") as ws:
        wait_for(lambda: stats()["viewers"] == 1, "the viewer to be registered")
        seen = stats()["publishes_seen"]
        # Published while the viewer is registered and has not said what it holds: the Hub
        # offers it to the viewer (publishes_seen counts it first) and must hold it back.
        await asyncio.to_thread(publisher.publish, "resume/live", "e", png("l2"))
        wait_for(lambda: stats()["publishes_seen"] == seen + 1, "the Hub to take the image")
        await ws.send(json.dumps({"type": "subscribe", "have": {"resume/live": 1}}))
        first = json.loads(await ws.recv())
        assert first == {"type": "sync", "topics": ["resume/live"]}
        header, data = await receive_image(ws)
        assert (header["topic"], header["seq"], data) == ("resume/live", 2, png("l2"))


async def test_a_viewer_of_a_service_that_just_started_gets_what_redis_held(
    settings: Settings, publisher: Publisher
) -> None:
    """A viewer may connect (and resume) before the service has read every topic from Redis."""
    topics = [f"start/{i:03d}" for i in range(200)]
    for topic in topics:
        publisher.publish(topic, "e", png("x"))
    with run_service(settings, wait_healthy=False) as service:
        async with (
            connect(service.ws_url) as fresh,
            connect(service.ws_url + "?resume=1") as resuming,
        ):
            await resuming.send(json.dumps({"type": "subscribe", "have": {t: 1 for t in topics}}))
            assert sorted((await receive(fresh, "sync"))["topics"]) == topics  # a whole snapshot
            assert sorted((await receive(resuming, "sync"))["topics"]) == topics
            # The resuming viewer holds everything: the next image it gets is the next publish.
            await asyncio.to_thread(publisher.publish, "start/new", "e", png("n"))
            header, _ = await receive_image(resuming)
            assert header["topic"] == "start/new"
