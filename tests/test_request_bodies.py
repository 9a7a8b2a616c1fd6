"""Request bodies cannot pin the service's memory: a budget for all of them, a time limit each."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from support import (
    DEADLINE,
    cli_args,
    http_status,
    png,
    receive,
    receive_image,
    run_service,
    serve,
    wait_for,
)
from websockets.asyncio.client import connect

from elog_stream import Publisher
from elog_stream.config import Settings
from elog_stream.embedded import free_port

MIB = 1024 * 1024


def stalled_post(url: str, declared: int, body: bytes | memoryview) -> socket.socket:
    """A publish that declares ``declared`` bytes, sends ``body`` and then stalls."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=DEADLINE)
    head = (
        f"POST {parts.path}api/topics/stalled?experiment=e HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\nContent-Type: image/png\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode())
    if body:
        sock.sendall(body)
    return sock


def status_of(sock: socket.socket) -> int:
    """The status of the response the service sends on ``sock`` (waits for it)."""
    reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 "), reply[:100]
    return int(reply.split(b" ", 2)[1])


def test_a_body_that_stalls_is_refused_with_408(settings: Settings) -> None:
    with run_service(settings.replace(body_timeout=1)) as service:
        with stalled_post(service.url, 1000, png("half")[:10]) as sock:
            assert status_of(sock) == 408
        assert service.health().status_code == 200


def test_bodies_in_flight_share_one_budget(settings: Settings) -> None:
    limited = settings.replace(
        max_image_bytes=MIB, max_bodies_in_flight_bytes=2 * MIB, body_timeout=5
    )
    with run_service(limited) as service:
        target = service.url + "api/topics/budget"
        holders = [stalled_post(service.url, MIB, b"\x89PNG") for _ in range(2)]
        try:
            # The budget is taken by the stalled uploads: others are told to come back.
            wait_for(
                lambda: (
                    httpx.post(target, params={"experiment": "e"}, content=png()).status_code == 503
                ),
                "a publish to be refused while the budget is held",
            )
            busy = httpx.post(target, params={"experiment": "e"}, content=png())
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert "retry shortly" in busy.json()["detail"]
            # Reads are not held up.
            assert httpx.get(service.url + "api/topics").status_code == 200
            # The stalled uploads time out and give their share back.
            assert [status_of(sock) for sock in holders] == [408, 408]
        finally:
            for sock in holders:
                sock.close()
        accepted = httpx.post(target, params={"experiment": "e"}, content=png())
        assert accepted.status_code == 201


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    with serve(*cli_args(settings, "--port", str(port)), ELOG_BODY_TIMEOUT="60") as server:
        base = f"http://127.0.0.1:{port}/"
        wait_for(lambda: http_status(base + "readyz") == 200, "the service subprocess")
        yield base, psutil.Process(server.process.pid)


async def test_stalled_uploads_keep_memory_bounded_and_viewers_served(
    served, settings: Settings
) -> None:
    """40 uploads of 19.9 MB of a declared 20 MB, stalled: the issue measured +780 MiB."""
    base, service = served
    declared = 20 * 1000 * 1000
    body = memoryview(bytes(declared - 100_000))  # one buffer shared by every sender
    sockets: list[socket.socket] = []

    def upload() -> None:
        sock = stalled_post(base, declared, b"")
        sockets.append(sock)
        with contextlib.suppress(OSError):  # a refused upload may be read and dropped, or cut
            sock.sendall(body)

    def answered() -> list[socket.socket]:
        return select.select(sockets, [], [], 0)[0]

    with Publisher(settings.redis_url, prefix=settings.prefix) as publisher:
        async with connect(base.replace("http", "ws", 1) + "ws") as viewer:
            await receive(viewer, "sync")
            baseline = service.memory_info().rss
            senders = [threading.Thread(target=upload) for _ in range(40)]
            for thread in senders:
                thread.start()
            try:
                for thread in senders:
                    thread.join(DEADLINE)
                assert len(sockets) == 40
                # What does not fit the 64 MiB budget is refused at once; the 3 uploads of
                # 19.9 MB that fit wait for their last bytes (until ELOG_BODY_TIMEOUT, 60 s).
                wait_for(lambda: len(answered()) >= 37, "37 uploads to be refused")
                assert sorted(status_of(sock) for sock in answered()) == [503] * 37
                growth = (service.memory_info().rss - baseline) / MIB
                assert growth < 150, f"the service grew by {growth:.0f} MiB"
                for i in range(5):  # a viewer is served meanwhile
                    seq = publisher.publish("normal", "e", png(str(i)))
                    header, _ = await receive_image(viewer, "normal")
                    assert header["seq"] == seq
                assert http_status(base + "readyz") == 200
            finally:
                for sock in sockets:
                    sock.close()
