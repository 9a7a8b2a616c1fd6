"""Benchmark clients spread over worker processes, each running many clients in one asyncio loop.

``ClientPool`` (the harness's side) owns the worker processes and talks to each over a pipe;
a worker owns its clients and their reader tasks. Every client records ``(frame id, arrival
time)`` for each image it receives; arrival times are ``time.perf_counter()``, which on Linux
is CLOCK_MONOTONIC, one clock for all processes of the machine, so they compare with the
publish times taken in the harness.

Client kinds:

- ``elog``: a viewer of the service's ``/ws`` (header text frame, then the image bytes);
- ``relay``: a client of the bare relay (one binary frame per image);
- ``visdom``: a visdom ``/socket`` client (JSON text frames; the frame id is in the title);
- ``poll``: GET the image URL once per interval (random phase), with ``If-None-Match``;
- ``idle``: a WebSocket that only reads (memory per idle viewer).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from .frames import frame_id, raise_fd_limit

OPEN_TIMEOUT = 120.0  # thousands of handshakes on a busy machine
CONNECTS_AT_ONCE = 64  # per worker: stays under the server's listen backlog
VISDOM_TITLE = re.compile(r'"title": "frame-(\d+)"')
KINDS = ("elog", "relay", "visdom", "poll", "idle")


class _Worker:
    """One worker process: its clients, their tasks, and what they received."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sockets: list[ClientConnection] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.arrivals: list[tuple[int, float]] = []
        self.seen: Counter[int] = Counter()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        loop.add_reader(self.conn.fileno(), lambda: inbox.put_nowait(self.conn.recv()))
        try:
            while True:
                command, *args = await inbox.get()
                if command == "stop":
                    return
                self.conn.send(await getattr(self, command)(*args))
        finally:
            loop.remove_reader(self.conn.fileno())
            await self.close()

    def _arrived(self, last: list[int], ident: int) -> None:
        """Record ``ident`` unless this client's previous image was the same (the relay
        reads the newest image once per notification, so a burst can send it twice)."""
        if last[0] != ident:
            last[0] = ident
            self.arrivals.append((ident, time.perf_counter()))
            self.seen[ident] += 1

    async def open(self, count: int, kind: str, url: str, interval: float) -> list[str]:
        """Start ``count`` clients; the reasons of those that failed."""
        gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
        starts = [self._start(kind, url, interval, gate) for _ in range(count)]
        results = await asyncio.gather(*starts, return_exceptions=True)
        return [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]

    async def _start(self, kind: str, url: str, interval: float, gate: asyncio.Semaphore) -> None:
        if kind == "poll":
            self.tasks.append(asyncio.create_task(self._poll(url, interval)))
            return
        async with gate:
            ws = await connect(
                url, max_size=None, compression=None, open_timeout=OPEN_TIMEOUT, ping_interval=None
            )
        self.sockets.append(ws)
        self.tasks.append(asyncio.create_task(self._read(kind, ws)))

    async def _read(self, kind: str, ws: ClientConnection) -> None:
        last = [0]
        with contextlib.suppress(Exception):  # the connection closed: this client is done
            async for message in ws:
                if kind in ("elog", "relay") and isinstance(message, bytes):
                    self._arrived(last, frame_id(message))
                elif kind == "visdom" and isinstance(message, str):
                    found = VISDOM_TITLE.search(message, 0, 1000)
                    if found:
                        self._arrived(last, int(found[1]))

    async def _poll(self, url: str, interval: float) -> None:
        etag, last = "", [0]
        async with httpx.AsyncClient(timeout=30) as http:
            await asyncio.sleep(random.uniform(0, interval))  # browsers poll out of phase
            next_poll = time.perf_counter()
            while True:
                with contextlib.suppress(httpx.HTTPError):  # try again at the next poll
                    headers = {"If-None-Match": etag} if etag else {}
                    response = await http.get(url, headers=headers)
                    if response.status_code == 200:
                        etag = response.headers.get("etag", "")
                        self._arrived(last, frame_id(response.content))
                next_poll += interval
                await asyncio.sleep(max(0.0, next_poll - time.perf_counter()))

    async def seen_count(self, ident: int) -> int:
        return self.seen[ident]

    async def take(self) -> list[tuple[int, float]]:
        taken, self.arrivals = self.arrivals, []
        self.seen.clear()
        return taken

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        self.tasks, self.sockets = [], []
        await self.take()


def _worker_main(conn: Connection) -> None:
    raise_fd_limit()
    asyncio.run(_Worker(conn).serve())


async def _receive(conn: Connection) -> Any:
    """``conn.recv()`` without blocking the event loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def ready() -> None:
        loop.remove_reader(conn.fileno())
        try:
            future.set_result(conn.recv())
        except Exception as exc:  # EOFError: the worker died
            future.set_exception(exc)

    loop.add_reader(conn.fileno(), ready)
    try:
        return await future
    finally:
        loop.remove_reader(conn.fileno())


class ClientPool:
    """``workers`` client processes (spawned, not forked, so no event loop is inherited).

    Use as an async context manager; leaving it stops and joins every worker. Commands go to
    the workers at once and their answers are gathered, one command in flight per worker.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        context = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        for index in range(workers):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_worker_main, args=(theirs,), name=f"bench-clients-{index}", daemon=True
            )
            self._conns.append(ours)
            self._processes.append(process)
        self.count = 0  # clients open now

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    async def __aenter__(self) -> ClientPool:
        for process in self._processes:
            process.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for process in self._processes:
            await asyncio.to_thread(process.join, 30)
            if process.is_alive():
                process.kill()

    async def _all(self, *command: Any, counts: Sequence[int] | None = None) -> list[Any]:
        targets = [i for i in range(len(self._conns)) if counts is None or counts[i]]

        async def call(index: int) -> Any:
            args = command if counts is None else (command[0], counts[index], *command[1:])
            self._conns[index].send(args)
            return await _receive(self._conns[index])

        return list(await asyncio.gather(*(call(i) for i in targets)))

    async def open(self, kind: str, url: str, count: int, interval: float = 1.0) -> list[str]:
        """Open ``count`` clients of ``kind`` spread evenly; the reasons of any that failed."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        workers = len(self._conns)
        counts = [count // workers + (i < count % workers) for i in range(workers)]
        failures = await self._all("open", kind, url, interval, counts=counts)
        self.count = count
        return [reason for failed in failures for reason in failed]

    async def seen(self, ident: int) -> int:
        """How many clients have received frame ``ident`` since the last ``take``."""
        return sum(await self._all("seen_count", ident))

    async def wait_seen(self, ident: int, count: int, deadline: float) -> bool:
        """Whether ``count`` clients received frame ``ident`` within ``deadline`` seconds."""
        end = time.monotonic() + deadline
        while await self.seen(ident) < count:
            if time.monotonic() > end:
                return False
            await asyncio.sleep(0.02)
        return True

    async def take(self) -> list[tuple[int, float]]:
        """Every ``(frame id, arrival)`` recorded since the last ``take``, and forget them."""
        return [arrival for taken in await self._all("take") for arrival in taken]

    async def close(self) -> None:
        """Close every client (the workers stay)."""
        await self._all("close")
        self.count = 0
