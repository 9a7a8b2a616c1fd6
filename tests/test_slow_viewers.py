"""A viewer that stops reading never hurts the others, nor the service's memory, and is closed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import psutil
import pytest
from support import (
    DEADLINE,
    ServeProcess,
    cli_args,
    http_status,
    receive,
    receive_image,
    serve,
    stuck_viewer,
    wait_for,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from elog_stream import AsyncPublisher
from elog_stream.config import Settings
from elog_stream.embedded import free_port

IMAGE_BYTES = 1_000_000
TIMEOUT = 3  # ELOG_SLOW_VIEWER_TIMEOUT in the close test
MARGIN = 3.0  # the stuck viewer is gone within TIMEOUT + MARGIN of its sender blocking

Stats = Callable[[], Awaitable[dict[str, Any]]]


def big_png(index: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + index.to_bytes(8, "big") + os.urandom(IMAGE_BYTES - 16)


async def publish_until_blocked(
    publisher: AsyncPublisher, reader: ClientConnection, stats: Stats, stuck: int, first: int = 0
) -> int:
    """Publish 1 MB images one at a time until the senders of ``stuck`` viewers are blocked.

    A blocked sender leaves its pending image in its mailbox, so from then on every publish
    supersedes exactly one image per blocked viewer (``reader`` takes each image at once).
    Also returns once a stuck viewer is gone. Returns the index of the next image.
    """
    for index in range(first, first + 50):
        before = await stats()
        seq = await publisher.publish("big", "e", big_png(index))
        header, _ = await receive_image(reader, "big")
        assert header["seq"] == seq
        after = await stats()
        superseded = after["frames_superseded"] - before["frames_superseded"]
        if superseded == stuck or after["viewers"] < before["viewers"]:
            return index + 1
    pytest.fail(f"{stuck} viewers still not blocked after 50 images")


async def until(condition: Callable[[], Awaitable[object]], what: str, deadline: float) -> None:
    end = time.monotonic() + deadline
    while not await condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline:.1f} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def served(settings: Settings, timeout: float) -> Iterator[tuple[int, ServeProcess]]:
    port = free_port()
    args = cli_args(settings, "--port", str(port))
    with serve(*args, ELOG_SLOW_VIEWER_TIMEOUT=str(timeout)) as server:
        url = f"http://127.0.0.1:{port}/readyz"
        wait_for(lambda: http_status(url) == 200, "the service subprocess")
        yield port, server


async def test_a_stuck_viewer_is_closed_with_4008_on_time(settings: Settings) -> None:
    with served(settings, TIMEOUT) as (port, _):
        ws_url = f"ws://127.0.0.1:{port}/ws"
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/") as http,
            AsyncPublisher(settings.redis_url, prefix=settings.prefix) as publisher,
            connect(ws_url, max_size=None, ping_interval=None) as normal,
            stuck_viewer(ws_url, port) as stuck,
        ):

            async def stats() -> dict[str, Any]:
                return (await http.get("api/stats")).json()

            await receive(normal, "sync")
            assert (await stats())["viewers"] == 2
            await publish_until_blocked(publisher, normal, stats, stuck=1)
            blocked = time.monotonic()

            async def gone() -> bool:
                return (await stats())["viewers"] == 1

            await until(gone, "the stuck viewer to be unregistered", TIMEOUT + MARGIN)
            assert time.monotonic() - blocked <= TIMEOUT + MARGIN
            assert (await stats())["viewer_disconnects"].get("too_slow") == 1

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


async def test_a_stuck_viewer_costs_bounded_memory(settings: Settings) -> None:
    images = 150  # 150 MB if they were queued for the stuck viewer
    with served(settings, 600) as (port, server):  # stays stuck for the whole test
        ws_url = f"ws://127.0.0.1:{port}/ws"
        service = psutil.Process(server.process.pid)
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/") as http,
            AsyncPublisher(settings.redis_url, prefix=settings.prefix) as publisher,
            connect(ws_url, max_size=None, ping_interval=None) as normal,
            stuck_viewer(ws_url, port),
        ):

            async def stats() -> dict[str, Any]:
                return (await http.get("api/stats")).json()

            await receive(normal, "sync")
            index = await publish_until_blocked(publisher, normal, stats, stuck=1)
            baseline = peak = service.memory_info().rss
            for i in range(index, index + images):
                seq = await publisher.publish("big", "e", big_png(i))
                header, data = await receive_image(normal, "big")
                assert header["seq"] == seq and data[8:16] == i.to_bytes(8, "big")
                peak = max(peak, service.memory_info().rss)
            assert peak - baseline < 100 * 1024 * 1024, f"RSS grew {(peak - baseline) >> 20} MiB"
            counters = await stats()
            assert counters["viewers"] == 2
            assert counters["frames_superseded"] >= images
