"""Publishing that never blocks the caller: background mode, latest wins, rate limits, exit."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import numpy
import pytest
import redis
from support import DEADLINE, RunningService, png, receive, receive_image, wait_for
from websockets.asyncio.client import connect

from elog_stream import (
    AsyncPublisher,
    InvalidNameError,
    Publisher,
    RedisUnavailableError,
    SettingsError,
    TopicNotFoundError,
)
from elog_stream.config import Settings
from elog_stream.embedded import EmbeddedRedis, free_port


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    """A server of this test's own, to pause or stop without disturbing the others."""
    with EmbeddedRedis() as server:
        yield server


def pause_writes(server: EmbeddedRedis, milliseconds: int) -> None:
    """Stall every write (the publish script included) for ``milliseconds``, or until unpaused."""
    with redis.Redis.from_url(server.url) as admin:
        admin.execute_command("CLIENT", "PAUSE", milliseconds, "WRITE")


def unpause(server: EmbeddedRedis) -> None:
    with redis.Redis.from_url(server.url) as admin:
        admin.execute_command("CLIENT", "UNPAUSE")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_background_publish_returns_none_and_reaches_the_viewer(
    service: RunningService, settings: Settings
) -> None:
    detector = numpy.arange(64 * 48, dtype=numpy.float32).reshape(48, 64)
    with Publisher(settings.redis_url, prefix=settings.prefix, background=True) as publisher:
        async with connect(service.ws_url) as ws:
            await receive(ws, "sync")
            assert publisher.publish("bg/plain", "e", png("bg")) is None
            assert publisher.publish("bg/detector", "e", detector, cmap="gray") is None
            detector[:] = 0  # the caller's array is free again: a copy was queued
            received = {}
            for _ in range(2):
                header, data = await receive_image(ws)
                received[header["topic"]] = data
        assert publisher.flush(DEADLINE)
        assert publisher.sent == {"bg/plain": 1, "bg/detector": 1}
        assert publisher.dropped == {}
    assert received["bg/plain"] == png("bg")
    detector_png = received["bg/detector"]
    assert detector_png.startswith(b"\x89PNG") and len(set(detector_png)) > 50  # not blank


def test_the_newest_frame_wins_and_pending_frames_stay_bounded(
    private_redis: EmbeddedRedis, prefix: str
) -> None:
    with Publisher(
        private_redis.url, prefix=prefix, background=True, max_pending_topics=3, redis_timeout=60
    ) as publisher:
        publisher.publish("warm", "e", png("warm"))
        assert publisher.flush(DEADLINE)
        pause_writes(private_redis, 60_000)
        try:
            publisher.publish("stall/a", "e", png("a0"))
            # The worker took it and waits for the paused server: nothing else is sent now.
            wait_for(lambda: publisher.pending == 0, "the worker to take the first frame")
            pending = []
            for name in ("t0", "t1", "t2", "t3", "t4"):
                assert publisher.publish(f"stall/{name}", "e", png(name)) is None
                pending.append(publisher.pending)
            for i in range(1, 51):
                assert publisher.publish("stall/a", "e", png(f"a{i}")) is None
                pending.append(publisher.pending)
            assert max(pending) == 3
            assert publisher.dropped == {
                "stall/t0": 1,  # evicted by t3
                "stall/t1": 1,  # evicted by t4
                "stall/t2": 1,  # evicted by a1
                "stall/a": 49,  # a1 … a49, each replaced by the next
            }
        finally:
            unpause(private_redis)
        assert publisher.flush(DEADLINE)
        assert publisher.grab("stall/a").data == png("a50")
        assert publisher.grab("stall/a").seq == 2  # a0, then a50
        assert publisher.grab("stall/t4").data == png("t4")
        with pytest.raises(TopicNotFoundError):
            publisher.grab("stall/t0")
        assert publisher.sent == {"warm": 1, "stall/a": 2, "stall/t3": 1, "stall/t4": 1}


def test_close_delivers_what_is_pending(private_redis: EmbeddedRedis, prefix: str) -> None:
    publisher = Publisher(private_redis.url, prefix=prefix, background=True, redis_timeout=60)
    publisher.publish("warm", "e", png("warm"))
    assert publisher.flush(DEADLINE)
    pause_writes(private_redis, 1000)  # ends by itself, well within close()'s 5 s
    for name in ("x", "y", "z"):
        assert publisher.publish(f"close/{name}", "e", png(name)) is None
    publisher.close()
    publisher.close()  # twice is fine
    assert publisher.dropped == {}
    with pytest.raises(RuntimeError, match="closed"):
        publisher.publish("close/x", "e", png("late"))
    with Publisher(private_redis.url, prefix=prefix) as reader:
        assert [reader.grab(f"close/{name}").data for name in "xyz"] == [png(n) for n in "xyz"]


def test_a_redis_outage_is_ridden_out_keeping_the_newest_frame(prefix: str) -> None:
    server = EmbeddedRedis().start()
    try:
        with Publisher(server.url, prefix=prefix, background=True) as publisher:
            publisher.publish("out/a", "e", png("a0"))
            assert publisher.flush(DEADLINE)
            server.stop()
            # Its pooled connection may not have seen the server go yet: a publish sent on it
            # could not tell whether the server ran it. Once the outage is seen, it can.
            with pytest.raises(RedisUnavailableError):
                publisher.grab("out/a")
            for i in range(1, 21):
                assert publisher.publish("out/a", "e", png(f"a{i}")) is None
            assert not publisher.flush(0.5)  # still waiting for Redis
            wait_for(lambda: publisher.dropped == {"out/a": 19}, "all but the newest dropped")
            server = EmbeddedRedis(port=server.port).start()
            assert publisher.flush(DEADLINE)
            assert publisher.grab("out/a").data == png("a20")
            assert publisher.sent == {"out/a": 2}
            assert publisher.dropped == {"out/a": 19}
    finally:
        server.stop()


def test_invalid_input_raises_in_the_callers_thread(settings: Settings) -> None:
    with Publisher(settings.redis_url, prefix=settings.prefix, background=True) as publisher:
        with pytest.raises(InvalidNameError, match="empty path segment"):
            publisher.publish("a//b", "e", png())
        with pytest.raises(InvalidNameError, match="experiment is empty"):
            publisher.publish("a", "", png())
        with pytest.raises(ValueError, match="quality must be an integer from 1 to 100"):
            publisher.publish("a", "e", numpy.zeros((4, 4)), format="jpeg", quality=0)
        with pytest.raises(TypeError, match="image must be"):
            publisher.publish("a", "e", 42)
        assert publisher.pending == 0
        assert not [t for t in threading.enumerate() if t.name == "elog-publisher-outbox"]
    assert publisher.sent == {} and publisher.dropped == {}


EXIT_SCRIPT = """
import matplotlib
matplotlib.use("Agg")
from matplotlib import pyplot
from elog_stream import elogshow

figure = pyplot.figure()
(line,) = figure.gca().plot([0, 1])
for i in range(20):
    line.set_ydata([0, i])
    assert elogshow("exit/plot", "e", f"frame {i}", figure, block=False) is None
print("published", flush=True)
"""


def run_script(script: str, redis_url: str, prefix: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELOG_")}
    env.update(ELOG_REDIS_URL=redis_url, ELOG_PREFIX=prefix)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=4 * DEADLINE,  # the test's deadline: the exit must not hang
    )


def test_frames_queued_at_exit_are_sent(private_redis: EmbeddedRedis, prefix: str) -> None:
    pause_writes(private_redis, 3000)  # the script's frames wait; its exit must flush them
    done = run_script(EXIT_SCRIPT, private_redis.url, prefix)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "published\n"
    with Publisher(private_redis.url, prefix=prefix) as reader:
        assert reader.grab("exit/plot").description == "frame 19"


def test_exit_does_not_hang_when_redis_is_unreachable(prefix: str) -> None:
    done = run_script(EXIT_SCRIPT, f"redis://127.0.0.1:{free_port()}/0", prefix)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "published\n"
    assert "'exit/plot': not sent before the publisher closed" in done.stderr


def test_rate_limit_sends_the_newest_frame_when_due(settings: Settings) -> None:
    images = [png(str(i)) for i in range(50)]
    with Publisher(settings.redis_url, prefix=settings.prefix, max_rate=5) as publisher:
        start = time.monotonic()
        seqs = [publisher.publish("rate/sync", "e", image) for image in images]
        assert seqs[0] == 1  # sent at once, in the caller's thread
        # The caller publishes nothing more: the worker sends the held frame when it is due.
        wait_for(
            lambda: publisher.grab("rate/sync").digest == digest(images[-1]),
            "the last frame to be stored",
        )
        elapsed = time.monotonic() - start
        sent, dropped = publisher.sent["rate/sync"], publisher.dropped["rate/sync"]
    assert sent + dropped == 50
    assert sent <= 1 + elapsed * 5 + 1  # one per 0.2 s, however slow this machine is
    assert sum(seq is not None for seq in seqs) < sent  # the last one sent by the worker


async def test_async_rate_limit_sends_the_newest_frame_when_due(settings: Settings) -> None:
    images = [png(str(i)) for i in range(50)]
    async with AsyncPublisher(settings.redis_url, prefix=settings.prefix, max_rate=5) as publisher:
        start = time.monotonic()
        seqs = [await publisher.publish("rate/async", "e", image) for image in images]
        assert seqs[0] == 1
        async with asyncio.timeout(DEADLINE):
            while (await publisher.grab("rate/async")).digest != digest(images[-1]):
                await asyncio.sleep(0.02)  # polling with a deadline
        elapsed = time.monotonic() - start
        sent, dropped = publisher.sent["rate/async"], publisher.dropped["rate/async"]
    assert sent + dropped == 50
    assert sent <= 1 + elapsed * 5 + 1
    assert sum(seq is not None for seq in seqs) < sent  # the last one sent by the held task


async def test_aclose_sends_what_the_rate_limit_holds(settings: Settings) -> None:
    publisher = AsyncPublisher(settings.redis_url, prefix=settings.prefix, max_rate=0.01)
    assert await publisher.publish("rate/held", "e", png("first")) == 1
    assert await publisher.publish("rate/held", "e", png("second")) is None  # due in 100 s
    assert await publisher.publish("rate/held", "e", png("third")) is None
    await publisher.aclose()
    assert publisher.sent == {"rate/held": 2} and publisher.dropped == {"rate/held": 1}
    async with AsyncPublisher(settings.redis_url, prefix=settings.prefix) as reader:
        assert (await reader.grab("rate/held")).data == png("third")


def test_max_rate_comes_from_the_environment_too(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELOG_MAX_RATE", "0")
    with pytest.raises(SettingsError, match="ELOG_MAX_RATE='0': expected a number > 0"):
        Publisher(settings.redis_url)
    monkeypatch.setenv("ELOG_MAX_RATE", "0.01")
    with Publisher(settings.redis_url, prefix=settings.prefix) as publisher:
        assert publisher.publish("env/rate", "e", png("1")) == 1
        assert publisher.publish("env/rate", "e", png("2")) is None  # held for 100 s
        assert publisher.pending == 1
    assert publisher.sent == {"env/rate": 2}  # close() sent it
