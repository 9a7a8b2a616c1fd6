"""``elog-stream serve`` stops within server.SHUTDOWN_TIMEOUT whatever viewers do, and its
embedded server never outlives it, not even a SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from support import (
    DEADLINE,
    ServeProcess,
    http_status,
    receive,
    receive_image,
    serve,
    stuck_viewer,
    wait_for,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from elog_stream import AsyncPublisher
from elog_stream.embedded import free_port
from elog_stream.server import SHUTDOWN_TIMEOUT

STUCK = 4
IMAGE_BYTES = 1_000_000


def big_png(index: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + index.to_bytes(8, "big") + os.urandom(IMAGE_BYTES - 16)


@contextlib.contextmanager
def served_with_embedded_redis() -> Iterator[tuple[int, str, ServeProcess, psutil.Process]]:
    """``serve`` with its own valkey: (port, Redis URL, the process, the valkey child)."""
    port = free_port()
    with serve("--port", str(port)) as server:
        redis_url = server.embedded_url()
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, "the service")
        children = psutil.Process(server.process.pid).children(recursive=True)
        (embedded,) = [child for child in children if "server" in child.name()]
        try:
            yield port, redis_url, server, embedded
        finally:
            if embedded.is_running():  # never leave one behind, whatever failed
                embedded.kill()


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_sigterm_ends_in_time_with_stuck_viewers_and_stops_valkey() -> None:
    with served_with_embedded_redis() as (port, redis_url, server, embedded):
        ws_url = f"ws://127.0.0.1:{port}/ws"
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/") as http,
            AsyncPublisher(redis_url) as publisher,
            connect(ws_url, max_size=None) as reader,
            contextlib.AsyncExitStack() as stack,
        ):
            for _ in range(STUCK):
                await stack.enter_async_context(stuck_viewer(ws_url, port))
            await receive(reader, "sync")

            async def stats() -> dict[str, Any]:
                return (await http.get("api/stats")).json()

            assert (await stats())["viewers"] == STUCK + 1
            # Until every stuck viewer's sender waits on a full socket: from then on, each
            # publish supersedes the pending image of each of them.
            for index in range(50):
                before = (await stats())["frames_superseded"]
                await publisher.publish("big", "e", big_png(index))
                await receive_image(reader, "big")
                if (await stats())["frames_superseded"] - before == STUCK:
                    break
            else:
                pytest.fail("the stuck viewers' buffers did not fill")

            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            status = await asyncio.to_thread(server.process.wait, SHUTDOWN_TIMEOUT + DEADLINE)
            took = time.monotonic() - started
            server.pump.join(DEADLINE)
            output = "".join(server.drain())
            assert status == 0, output
            assert took < SHUTDOWN_TIMEOUT, f"shutdown took {took:.1f} s"
            with pytest.raises(ConnectionClosed) as closed:
                await receive(reader, "never")
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001

        assert await asyncio.to_thread(wait_for, lambda: gone(embedded), "valkey to exit", 5)
        assert "Traceback" not in output, output
        assert "dropping them" in output  # the stuck viewers were dropped, not waited for


def test_sigkill_takes_the_embedded_server_along() -> None:
    with served_with_embedded_redis() as (_, _, server, embedded):
        server.process.kill()
        server.process.wait(DEADLINE)
        wait_for(lambda: gone(embedded), "the orphaned valkey to exit", 5)
