"""``serve --legacy-keys`` under attack: hostile hashes and claims, floods, a writer that never
pauses. Each test runs a real valkey-server and a real service."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from support import RunningService, png, receive_image, run_service, wait_for
from test_legacy_keys import OldElog, figure, legacy_mode, stats, viewer

from elog_stream import Publisher
from elog_stream.config import Settings
from elog_stream.embedded import EmbeddedRedis

MAX_IMAGE_BYTES = 100_000


@pytest.fixture
def private() -> Iterator[tuple[redis.Redis, RunningService]]:
    """A private Redis (its command counts are ours alone) and a legacy service on it that
    scans for lost events every 0.2 s."""
    with EmbeddedRedis() as server, redis.Redis.from_url(server.url) as admin:
        settings = Settings(
            redis_url=server.url,
            legacy_keys=True,
            max_image_bytes=MAX_IMAGE_BYTES,
            reconcile_interval=0.2,
        )
        with run_service(settings) as service:
            legacy_mode(service.url, "notifications")
            yield admin, service


def calls(admin: redis.Redis, command: str) -> int:
    """How often Redis ran ``command``, scripts' calls included."""
    return int(admin.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_an_oversized_hash_is_refused_without_being_read(
    private: tuple[redis.Redis, RunningService],
) -> None:
    admin, service = private
    huge = b"\x89PNG\r\n\x1a\n" + bytes(20 * MAX_IMAGE_BYTES)
    admin.hset("huge", mapping={"experiment": "e", "pngimage": huge})
    admin.expire("huge", 3600)
    wait_for(lambda: stats(service.url)["legacy_refused"] == {"too_large": 1}, "the refusal")
    scans = calls(admin, "scan")
    wait_for(lambda: calls(admin, "scan") >= scans + 3, "three more scans")
    # Its fields were measured (HSTRLEN), never copied into the script (HMGET) nor hashed.
    assert calls(admin, "hmget") == 0
    assert stats(service.url)["legacy_refused"] == {"too_large": 1}


async def test_a_pending_claim_without_expiry_blocks_nothing(
    private: tuple[redis.Redis, RunningService],
) -> None:
    admin, service = private
    admin.set("elog:legacy:{planted}", "pending:" + "0" * 40)  # no expiry: no service's
    old = OldElog(str(service.settings.redis_url))
    async with await viewer(service.ws_url, "planted") as ws:
        await asyncio.to_thread(old.elogshow, "planted", "e", "seen", figure(1))
        header, _ = await receive_image(ws, "planted")
        assert header["description"] == "seen"
    old.rdb.close()


async def test_a_writer_that_never_pauses_is_still_published(
    private: tuple[redis.Redis, RunningService],
) -> None:
    admin, service = private
    stop = threading.Event()

    def write() -> None:  # HSETs without EXPIRE, never 0.2 s apart: the settle never ends
        with redis.Redis.from_url(str(service.settings.redis_url)) as rdb:
            n = 0
            while not stop.is_set():
                n += 1
                rdb.hset("busy", mapping={"experiment": "e", "pngimage": png(str(n % 10))})

    writer = threading.Thread(target=write)
    writer.start()
    try:
        async with await viewer(service.ws_url, "busy") as ws:
            header, _ = await receive_image(ws, "busy")
            assert header["topic"] == "busy"
    finally:
        stop.set()
        writer.join()


async def test_a_flood_of_writes_leaves_other_topics_flowing(
    private: tuple[redis.Redis, RunningService],
) -> None:
    admin, service = private
    stop = threading.Event()
    image = png("flood")

    def flood() -> None:  # distinct bare keys, as fast as Redis takes them
        with redis.Redis.from_url(str(service.settings.redis_url)) as rdb:
            n = 0
            while not stop.is_set():
                with rdb.pipeline(transaction=False) as pipe:
                    for _ in range(500):
                        n += 1
                        pipe.hset(f"flood/{n % 50_000}", mapping={"pngimage": image})
                    pipe.execute()

    writers = [threading.Thread(target=flood) for _ in range(2)]
    for writer in writers:
        writer.start()
    try:
        # The bridge is busy with the flood (how fast it gets through it is the benchmark's
        # business, not this test's: under load a few publishes a second is all it manages).
        wait_for(lambda: stats(service.url)["legacy_published"] >= 10, "legacy publishes", 60)
        topic = f"normal-{uuid.uuid4().hex[:8]}"
        with Publisher(str(service.settings.redis_url)) as publisher:
            async with await viewer(service.ws_url, topic) as ws:
                for n in range(3):
                    data = png(f"normal {n}")
                    await asyncio.to_thread(publisher.publish, topic, "e", data)
                    header, received = await receive_image(ws, topic)
                    assert (header["seq"], received) == (n + 1, data)
        assert service.ready().status_code == 200
        assert httpx.get(service.url + "api/topics/" + topic, timeout=5).status_code == 200
    finally:
        stop.set()
        for writer in writers:
            writer.join()
