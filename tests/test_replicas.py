"""Several service processes on one Redis: every replica serves every publish, wherever made."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
from support import Replica, png, receive, receive_image, replicas, wait_for
from websockets.asyncio.client import ClientConnection, connect

from elog_stream import Publisher
from elog_stream.config import Settings


def topics_of(replica: Replica) -> dict[str, int]:
    answer = httpx.get(replica.url + "api/topics", timeout=5)
    return {t["topic"]: t["seq"] for t in answer.json()} if answer.status_code == 200 else {}


async def collect(ws: ClientConnection, expected: dict[str, bytes]) -> dict[str, bytes]:
    """Images received until every topic of ``expected`` holds its expected bytes."""
    got: dict[str, bytes] = {}
    while any(got.get(topic) != data for topic, data in expected.items()):
        header, data = await receive_image(ws)
        got[header["topic"]] = data
    return got


async def test_viewers_on_every_replica_get_every_publish_made_anywhere(
    settings: Settings, publisher: Publisher
) -> None:
    url = str(settings.redis_url)
    with replicas([url] * 3, settings.prefix) as group:
        async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient() as http:
            viewers = [await stack.enter_async_context(connect(r.ws_url)) for r in group]
            for ws in viewers:
                await receive(ws, "sync")
            expected = {}
            for i in range(18):
                topic, data = f"seq/{i}", png(f"image {i}")
                expected[topic] = data
                if i % 2:  # over HTTP, to each replica in turn
                    answer = await http.post(
                        group[i % 3].url + f"api/topics/{topic}?experiment=e", content=data
                    )
                    assert answer.status_code == 201, answer.text
                else:
                    await asyncio.to_thread(publisher.publish, topic, "e", data)
            for ws in viewers:
                async with asyncio.timeout(15):
                    assert await collect(ws, expected) == expected
            # ... and one topic updated by both, in turn, waiting for each to arrive everywhere
            for i in range(6):
                data = png(f"shared {i}")
                if i % 2:
                    answer = await http.post(
                        group[i % 3].url + "api/topics/seq/shared?experiment=e", content=data
                    )
                    assert answer.status_code == 201
                else:
                    await asyncio.to_thread(publisher.publish, "seq/shared", "e", data)
                for ws in viewers:
                    async with asyncio.timeout(15):
                        header, got = await receive_image(ws, "seq/shared")
                        while got != data:
                            header, got = await receive_image(ws, "seq/shared")
                    assert header["seq"] == i + 1


async def test_a_read_on_another_replica_right_after_a_201_is_answered(
    settings: Settings,
) -> None:
    with replicas([str(settings.redis_url)] * 3, settings.prefix) as group:
        with httpx.Client(timeout=10) as http:
            for i in range(12):
                writer, reader = group[i % 3], group[(i + 1) % 3]
                topic = f"ryw/{i}"
                answer = http.post(writer.url + f"api/topics/{topic}?experiment=e", content=png())
                assert answer.status_code == 201, answer.text
                seq = answer.json()["seq"]
                read = http.get(reader.url + f"api/topics/{topic}")  # at once: Redis fallback
                assert read.status_code == 200, read.text
                assert read.json()["seq"] == seq
                image = http.get(reader.url + f"api/topics/{topic}/image")
                assert image.status_code == 200 and image.content == png()


async def test_a_viewer_resuming_on_another_replica_gets_only_what_changed(
    settings: Settings, publisher: Publisher
) -> None:
    with replicas([str(settings.redis_url)] * 3, settings.prefix) as (a, b, c):
        for name in ("a", "b", "gone"):
            publisher.publish(f"resume/{name}", "e", png(f"{name}1"))
        for replica in (a, b, c):
            wait_for(lambda r=replica: len(topics_of(r)) == 3, "three topics")  # type: ignore[misc]
        async with connect(a.ws_url) as ws:
            await receive(ws, "sync")
            held = {}
            for _ in range(3):
                header, _ = await receive_image(ws)
                held[header["topic"]] = header["seq"]
        # While away: a changes (over HTTP on b), gone is deleted, b stays as it was.
        answer = httpx.post(b.url + "api/topics/resume/a?experiment=e", content=png("a2"))
        assert answer.status_code == 201
        publisher.redis.delete(publisher.settings.keys.topic("resume/gone"))
        publisher.redis.publish(publisher.settings.keys.channel, '{"topic": "resume/gone"}')
        wait_for(lambda: topics_of(c) == {"resume/a": 2, "resume/b": 1}, "the change on c")

        async with connect(c.ws_url + "?resume=1") as ws:
            await ws.send(json.dumps({"type": "subscribe", "have": held}))
            assert sorted((await receive(ws, "sync"))["topics"]) == ["resume/a", "resume/b"]
            header, data = await receive_image(ws)
            assert (header["topic"], header["seq"], data) == ("resume/a", 2, png("a2"))
            await asyncio.to_thread(publisher.publish, "resume/c", "e", png("c"))
            header, _ = await receive_image(ws)
            assert header["topic"] == "resume/c"  # b was not sent again
