"""A viewer that stops reading never hurts the others, nor the service's memory."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator

import httpx
import psutil
import pytest
from support import DEADLINE, cli_args, http_status, receive, receive_image, serve, wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from elog_stream import AsyncPublisher
from elog_stream.config import Settings
from elog_stream.embedded import free_port

IMAGES = 300
IMAGE_BYTES = 1_000_000


def big_png(index: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + index.to_bytes(8, "big") + os.urandom(IMAGE_BYTES - 16)


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    args = cli_args(settings, "--port", str(port))
    with serve(*args, ELOG_SLOW_VIEWER_TIMEOUT="2") as server:
        base = f"http://127.0.0.1:{port}/"
        wait_for(lambda: http_status(base + "healthz") == 200, "the service subprocess")
        yield base, server.process


async def test_a_stuck_viewer_is_closed_and_costs_bounded_memory(
    served, settings: Settings
) -> None:
    base, process = served
    ws_url = base.replace("http", "ws", 1) + "ws"
    service = psutil.Process(process.pid)
    async with AsyncPublisher(settings.redis_url, prefix=settings.prefix) as publisher:
        async with (
            connect(ws_url, max_size=None, ping_interval=None) as normal,
            # Never reads: with a one-frame queue the client stops reading the socket at once.
            connect(ws_url, max_size=None, max_queue=1, ping_interval=None) as stuck,
        ):
            await receive(normal, "sync")
            for i in range(3):  # warm the allocator up before the baseline
                seq = await publisher.publish("big", "e", big_png(i))
                await receive_image(normal, "big")
            baseline = service.memory_info().rss
            peak = baseline
            for i in range(3, 3 + IMAGES):
                seq = await publisher.publish("big", "e", big_png(i))
                header, data = await receive_image(normal, "big")
                assert header["seq"] == seq and data[8:16] == i.to_bytes(8, "big")
                peak = max(peak, service.memory_info().rss)
            assert peak - baseline < 100 * 1024 * 1024, f"RSS grew {(peak - baseline) >> 20} MiB"

            # Reading again, the stuck viewer finds a few stale frames, then the close code.
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(DEADLINE):
                    while True:
                        await stuck.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4008
            assert "too slow" in closed.value.rcvd.reason

            # And the normal viewer is still served.
            seq = await publisher.publish("big", "e", big_png(0))
            header, _ = await receive_image(normal, "big")
            assert header["seq"] == seq

        def stats() -> dict:
            return httpx.get(base + "api/stats").json()

        wait_for(lambda: stats()["viewer_disconnects"].get("too_slow") == 1, "the count")
        assert stats()["frames_superseded"] >= 1
