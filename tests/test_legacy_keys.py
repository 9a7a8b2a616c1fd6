"""``serve --legacy-keys``: hashes written the 2014 way (bare key, three HSETs, EXPIRE, no
PUBLISH) reach viewers under the same topic name, by keyspace notifications or by a scan."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from support import (
    RunningService,
    png,
    receive,
    receive_image,
    replicas,
    run_service,
    serve,
    wait_for,
)
from websockets.asyncio.client import ClientConnection, connect

from elog_stream import Publisher
from elog_stream.config import Settings
from elog_stream.embedded import EmbeddedCluster, EmbeddedRedis, free_port

MAX_IMAGE_BYTES = 100_000


class OldElog:
    """The 2014 ``elog.py``, as it was: only its module-level connection became ``self.rdb``."""

    def __init__(self, url: str) -> None:
        self.rdb = redis.StrictRedis.from_url(url)
        self.rdb.incr("num_connections")  # throw an exception if bad connection

    def elogshow(
        self, topic: str, experiment: str, description: str = "", figure: Any = None
    ) -> None:
        # get the matplotlib plot as a string
        imgdata = io.BytesIO()
        if figure == None:  # noqa: E711
            plt.savefig(imgdata, format="png")
        else:
            figure.savefig(imgdata, format="png")
        imgdata.seek(0)  # rewind the data

        # syntax here is (redis key, hash key, hash value)
        self.rdb.hset(topic, "experiment", experiment)
        self.rdb.hset(topic, "description", description)
        self.rdb.hset(topic, "pngimage", imgdata.read())  # img str
        self.rdb.expire(topic, 3600)  # auto-delete after an hr

    def grab(self, topic: str) -> bytes:
        image = self.rdb.hget(topic, "pngimage")
        assert isinstance(image, bytes)
        return image


def figure(n: int) -> Figure:
    fig = Figure(figsize=(2, 1.5))
    fig.add_subplot().plot([0, 1, 2], [0, n, n * n])
    return fig


@pytest.fixture
def topic(redis_url: str) -> Iterator[str]:
    """A bare topic name no other test uses; its key is deleted afterwards."""
    name = f"legacy-{uuid.uuid4().hex[:12]}"
    yield name
    with redis.Redis.from_url(redis_url) as rdb:
        rdb.delete(name)


@pytest.fixture
def old(redis_url: str) -> Iterator[OldElog]:
    writer = OldElog(redis_url)
    yield writer
    writer.rdb.close()


def stats(url: str) -> dict[str, Any]:
    return httpx.get(url + "api/stats", timeout=5).json()


def legacy_mode(url: str, mode: str) -> None:
    wait_for(lambda: stats(url)["legacy_mode"] == mode, f"legacy mode {mode}")


async def viewer(ws_url: str, *topics: str) -> ClientConnection:
    ws = await connect(ws_url + "?" + "&".join(f"topic={quote(t)}" for t in topics))
    await receive(ws, "sync")
    return ws


async def test_an_old_writer_is_seen_live_through_keyspace_notifications(
    prefix: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="elog_stream.legacy")
    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("notify-keyspace-events", "Kx")  # set by someone else: kept
        settings = Settings(redis_url=server.url, prefix=prefix, legacy_keys=True)
        with run_service(settings) as service:
            legacy_mode(service.url, "notifications")
            flags = admin.config_get("notify-keyspace-events")["notify-keyspace-events"]
            assert set(flags) == set("KExgh")
            assert "enabled keyspace notifications 'Egh' (was 'xK')" in caplog.text
            old = OldElog(server.url)
            async with await viewer(service.ws_url, topic) as ws:
                for n, description in ((1, "first plot"), (2, "second plot")):
                    await asyncio.to_thread(old.elogshow, topic, "cxif7214", description, figure(n))
                    header, data = await receive_image(ws, topic)
                    assert data == old.grab(topic)
                    assert (header["experiment"], header["description"]) == (
                        "cxif7214",
                        description,
                    )
                    assert header["seq"] == n
            assert stats(service.url)["legacy_published"] == 2
            assert admin.get("num_connections") == b"1"  # other keys are left alone
            old.rdb.close()
        admin.close()


@pytest.mark.parametrize("refusal", ["renamed", "acl"])
async def test_without_config_the_old_writer_is_found_by_scanning(
    prefix: str, topic: str, refusal: str
) -> None:
    args = ("--rename-command", "CONFIG", "") if refusal == "renamed" else ()
    with EmbeddedRedis(extra_args=args) as server:
        url = server.url
        if refusal == "acl":  # a managed Redis: every command but CONFIG
            with redis.Redis.from_url(url) as admin:
                admin.execute_command(
                    "ACL", "SETUSER", "elog", "on", ">pw", "~*", "&*", "+@all", "-config"
                )
            url = f"redis://elog:pw@127.0.0.1:{server.port}/0"
        port = free_port()
        args = ("--port", str(port), "--redis-url", url, "--prefix", prefix, "--legacy-keys")
        with serve(*args, ELOG_LEGACY_SCAN_INTERVAL="0.2") as process:
            line = process.wait_for_line(r"keyspace notifications unavailable \((.*)\); (.*)")
            assert "CONFIG refused" in line[1] and line[2] == "scanning every 0.2 s"
            base = f"http://127.0.0.1:{port}/"
            wait_for(lambda: httpx.get(base + "readyz").status_code == 200, "readiness")
            assert stats(base)["legacy_mode"] == "scan"
            old = OldElog(server.url)
            async with await viewer(f"ws://127.0.0.1:{port}/ws", topic) as ws:
                for n in (1, 2):
                    await asyncio.to_thread(old.elogshow, topic, "e", f"frame {n}", figure(n))
                    header, data = await receive_image(ws, topic)
                    assert (header["seq"], header["description"]) == (n, f"frame {n}")
                    assert data == old.grab(topic)
            old.rdb.close()


@pytest.fixture
def legacy_service(settings: Settings) -> Iterator[RunningService]:
    legacy = settings.replace(legacy_keys=True, max_image_bytes=MAX_IMAGE_BYTES)
    with run_service(legacy) as service:
        legacy_mode(service.url, "notifications")
        yield service


async def test_a_half_written_hash_is_not_published(
    legacy_service: RunningService, old: OldElog, topic: str
) -> None:
    barrier = f"{topic}-barrier"
    rdb = old.rdb
    try:
        async with await viewer(legacy_service.ws_url, topic, barrier) as ws:
            await asyncio.to_thread(old.elogshow, topic, "e", "frame 1", figure(1))
            header, first = await receive_image(ws, topic)
            assert (header["seq"], header["description"]) == (1, "frame 1")

            # Frame 2 begins: its experiment and description, not its image yet.
            rdb.hset(topic, "experiment", "e")
            rdb.hset(topic, "description", "frame 2")
            # A writer without EXPIRE, after them: published once its HSETs have settled,
            # so the half-written frame would have been read by then, had it been due.
            rdb.hset(barrier, mapping={"experiment": "e", "pngimage": png("barrier")})
            header, _ = await receive_image(ws)
            assert header["topic"] == barrier

            second = png("frame 2")
            rdb.hset(topic, "pngimage", second)
            rdb.expire(topic, 3600)
            header, data = await receive_image(ws)
            assert (header["topic"], header["seq"], header["description"], data) == (
                topic,
                2,
                "frame 2",
                second,
            )
            assert data != first
        assert stats(legacy_service.url)["legacy_published"] == 3  # 2 frames and the barrier
    finally:
        rdb.delete(barrier)


async def test_replicas_publish_each_old_write_once(
    settings: Settings, old: OldElog, topic: str
) -> None:
    url = str(settings.redis_url)
    with replicas([url, url], settings.prefix, ELOG_LEGACY_KEYS="1") as group:
        for replica in group:
            legacy_mode(replica.url, "notifications")
        async with (
            await viewer(group[0].ws_url, topic) as a,
            await viewer(group[1].ws_url, topic) as b,
        ):
            for n in range(1, 6):
                await asyncio.to_thread(old.elogshow, topic, "e", f"frame {n}", figure(n))
                for ws in (a, b):
                    header, data = await receive_image(ws, topic)
                    assert header["seq"] == n  # exactly one publish per write
                    assert data == old.grab(topic)
        published = [stats(replica.url)["legacy_published"] for replica in group]
        assert sum(published) == 5
        answer = httpx.get(group[1].url + f"api/topics/{topic}", timeout=5).json()
        assert answer["seq"] == 5


async def test_hostile_old_hashes_are_refused_counted_and_harmless(
    legacy_service: RunningService, old: OldElog, topic: str, publisher: Publisher
) -> None:
    rdb = old.rdb
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>'
    hostile: dict[str, tuple[dict[str, Any], str]] = {
        f"{topic}/svg": ({"pngimage": svg}, "not_an_image"),
        f"{topic}/huge": ({"pngimage": b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES)}, "too_large"),
        f"{topic}/empty": ({"pngimage": b""}, "not_an_image"),
        f"{topic}/control": ({"experiment": "a\x00b", "pngimage": png()}, "invalid_field"),
        f"{topic}{{braced": ({"pngimage": png()}, "invalid_topic"),
        f"{topic}\x01control": ({"pngimage": png()}, "invalid_topic"),
    }
    ignored = {f"{topic}/string": "a string", f"{topic}/no-image": {"experiment": "e"}}
    try:
        for key, (fields, _) in hostile.items():
            rdb.hset(key, mapping={"experiment": "e", "description": "d", **fields})
            rdb.expire(key, 3600)
        rdb.set(f"{topic}/string", "a string")
        rdb.hset(f"{topic}/no-image", mapping={"experiment": "e"})
        rdb.expire(f"{topic}/no-image", 3600)
        async with await viewer(legacy_service.ws_url, topic) as ws:
            await asyncio.to_thread(old.elogshow, topic, "e", "fine", figure(1))
            header, _ = await receive_image(ws, topic)
            assert header["description"] == "fine"

        expected: dict[str, int] = {}
        for _, kind in hostile.values():
            expected[kind] = expected.get(kind, 0) + 1
        wait_for(
            lambda: stats(legacy_service.url)["legacy_refused"] == expected,
            f"the refusals {expected}",
        )
        metrics = httpx.get(legacy_service.url + "metrics").text
        assert 'elog_legacy_refused_total{kind="too_large"} 1.0' in metrics
        assert "elog_legacy_published_total 1.0" in metrics
        assert legacy_service.ready().status_code == 200
        topics = {t["topic"] for t in httpx.get(legacy_service.url + "api/topics").json()}
        assert topics == {topic}
        publisher.publish("after/hostile", "e", png("after"))  # everything else flows
        wait_for(
            lambda: httpx.get(legacy_service.url + "api/topics/after/hostile").status_code == 200,
            "a normal publish",
        )
    finally:
        rdb.delete(*hostile, *ignored)


async def test_off_by_default(prefix: str, topic: str) -> None:
    with EmbeddedRedis() as server, redis.Redis.from_url(server.url) as admin:
        with run_service(Settings(redis_url=server.url, prefix=prefix)) as service:
            old = OldElog(server.url)
            old.elogshow(topic, "e", "never seen", figure(1))
            async with await viewer(service.ws_url, topic, "barrier") as ws:
                with Publisher(server.url, prefix=prefix) as publisher:
                    publisher.publish("barrier", "e", png("barrier"))
                header, _ = await receive_image(ws)
                assert header["topic"] == "barrier"
            assert httpx.get(service.url + f"api/topics/{topic}").status_code == 404
            assert stats(service.url)["legacy_mode"] is None
            old.rdb.close()
        assert admin.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
        assert not admin.exists(f"{prefix}legacy:{{{topic}}}")


async def test_on_a_cluster_old_writes_on_every_master_are_found_by_scanning(
    prefix: str,
) -> None:
    with EmbeddedCluster(masters=3) as cluster:
        settings = Settings(
            redis_url=cluster.urls[0], prefix=prefix, legacy_keys=True, legacy_scan_interval=0.2
        )
        with run_service(settings) as service, redis.RedisCluster.from_url(cluster.urls[0]) as rdb:
            legacy_mode(service.url, "scan")
            topics = [f"cluster/{n}" for n in range(12)]
            nodes = {rdb.get_node_from_key(t).name for t in topics}
            assert len(nodes) == 3  # every master holds some
            async with await viewer(service.ws_url, *topics) as ws:
                for n, name in enumerate(topics):
                    rdb.hset(name, "experiment", "e")
                    rdb.hset(name, "description", f"plot {n}")
                    rdb.hset(name, "pngimage", png(name))
                    rdb.expire(name, 3600)
                received = {}
                while len(received) < len(topics):
                    header, data = await receive_image(ws)
                    received[header["topic"]] = data
                assert received == {name: png(name) for name in topics}
