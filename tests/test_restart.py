"""Clean shutdown (viewers told 1001, tasks awaited) and start-up from the state in Redis."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from support import png, receive, receive_image, run_service, wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from elog_stream import Publisher
from elog_stream.config import Settings


async def test_shutdown_closes_viewers_with_1001(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="elog_stream")
    with run_service(settings, log_config=None) as service:
        async with connect(service.ws_url) as one, connect(service.ws_url) as two:
            await receive(one, "sync")
            await receive(two, "sync")
            service.server.should_exit = True
            for ws in (one, two):
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(15):
                        await receive(ws, "never")
                assert closed.value.rcvd is not None
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                    1001,
                    "server shutting down",
                )
    disconnects = [
        r.getMessage() for r in caplog.records if "viewer disconnected" in r.getMessage()
    ]
    assert len(disconnects) == 2
    assert all("reason=server_closed" in line for line in disconnects)


async def test_a_restarted_service_serves_what_is_in_redis(
    settings: Settings, publisher: Publisher
) -> None:
    with run_service(settings) as first:
        publisher.publish("kept/a", "e", png("a"))
        wait_for(
            lambda: httpx.get(first.url + "api/topics/kept/a").status_code == 200, "kept/a live"
        )
    publisher.publish("kept/b", "e", png("b"))  # while no service runs
    with run_service(settings) as second:
        topics = httpx.get(second.url + "api/topics").json()
        assert sorted(t["topic"] for t in topics) == ["kept/a", "kept/b"]
        async with connect(second.ws_url) as ws:
            assert sorted((await receive(ws, "sync"))["topics"]) == ["kept/a", "kept/b"]
            images = [await receive_image(ws), await receive_image(ws)]
        assert {header["topic"]: data for header, data in images} == {
            "kept/a": png("a"),
            "kept/b": png("b"),
        }
