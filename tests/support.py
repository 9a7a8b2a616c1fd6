"""Helpers shared by the tests: waiting with a deadline, a service under uvicorn, images, WS."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from elog_stream import Publisher
from elog_stream.app import create_app
from elog_stream.config import Settings
from elog_stream.local import find_running
from elog_stream.server import Server

DEADLINE = 15.0


def cli_args(settings: Settings, *args: str) -> list[str]:
    """``args`` plus the options that point an ``elog-stream`` command at ``settings``' Redis."""
    return [*args, "--redis-url", str(settings.redis_url), "--prefix", settings.prefix]


def wait_for(condition: Callable[[], object], what: str, deadline: float = DEADLINE) -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class RunningService:
    url: str  # ends with "/"
    settings: Settings
    server: uvicorn.Server
    publisher: Publisher | None = None  # bound to the same Redis and prefix, when set

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "ws"

    def health(self) -> httpx.Response:
        """Liveness (``/healthz``)."""
        return httpx.get(self.url + "healthz", timeout=5)

    def ready(self) -> httpx.Response:
        """Readiness (``/readyz``): Redis answers and the update subscription is proven."""
        return httpx.get(self.url + "readyz", timeout=5)


@contextmanager
def run_service(
    settings: Settings,
    root_path: str = "",
    port: int = 0,
    wait_healthy: bool = True,
    **server_options: Any,
) -> Iterator[RunningService]:
    """Run the app under uvicorn in a thread until the block exits.

    Waits until it answers, and with ``wait_healthy`` until /readyz says 200.
    """
    server_options.setdefault("log_level", "warning")
    server = Server(create_app(settings, root_path=root_path), port=port, **server_options)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), "uvicorn to start")
        assert thread.is_alive(), "uvicorn failed to start"
        port = server.servers[0].sockets[0].getsockname()[1]
        service = RunningService(f"http://127.0.0.1:{port}{root_path}/", settings, server)
        if wait_healthy:
            wait_for(lambda: service.ready().status_code == 200, "the service to be ready")
        yield service
    finally:
        server.should_exit = True
        thread.join(DEADLINE)
        assert not thread.is_alive(), "uvicorn did not stop"


def png(text: str = "", size: tuple[int, int] = (64, 48), color: str = "navy") -> bytes:
    """A small real PNG, different for every ``text``."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).text((2, 2), text, fill="white")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, "darkred").save(buffer, format="JPEG")
    return buffer.getvalue()


async def receive(ws: ClientConnection, kind: str, deadline: float = DEADLINE) -> dict[str, Any]:
    """The next text frame of type ``kind``, skipping others (and images' binary frames)."""
    async with asyncio.timeout(deadline):
        while True:
            frame = await ws.recv()
            if isinstance(frame, str):
                message = json.loads(frame)
                if message["type"] == kind:
                    return message


async def receive_image(
    ws: ClientConnection, topic: str | None = None, deadline: float = DEADLINE
) -> tuple[dict[str, Any], bytes]:
    """The next image (header and bytes), of ``topic`` if given; other frames are skipped."""
    async with asyncio.timeout(deadline):
        while True:
            header = await receive(ws, "image", deadline)
            data = await ws.recv()
            assert isinstance(data, bytes), "an image header must be followed by a binary frame"
            assert len(data) == header["size"]
            if topic is None or header["topic"] == topic:
                return header, data


@contextlib.asynccontextmanager
async def stuck_viewer(ws_url: str, port: int) -> AsyncIterator[ClientConnection]:
    """A viewer that reads nothing: a small socket buffer, and at most one frame queued."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    async with connect(
        ws_url, sock=sock, max_size=None, max_queue=1, ping_interval=None, close_timeout=1
    ) as ws:
        yield ws


class ServeProcess:
    """A running ``elog-stream serve`` subprocess whose output lines can be waited for."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        given = args.index("--data-dir") + 1 if "--data-dir" in args else 0
        self.data_dir = Path(args[given] if given else env["ELOG_DATA_DIR"])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "elog_stream", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def drain(self) -> list[str]:
        """Every line printed so far."""
        while True:
            try:
                self.output.append(self.lines.get_nowait())
            except queue.Empty:
                return self.output

    def embedded_url(self) -> str:
        """The URL of its embedded server, with the password, once it runs (runtime file)."""
        self.wait_for_line("embedded Redis at")
        running = find_running(self.data_dir)
        assert running is not None and running.pid == self.process.pid, running
        return running.url

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        while True:
            try:
                line = self.lines.get(timeout=DEADLINE)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} in:\n{''.join(self.output)}")
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match


@contextmanager
def serve(*args: str, **env_overrides: str) -> Iterator[ServeProcess]:
    """``elog-stream serve ARGS`` in a subprocess, without the caller's ELOG_* variables.

    Its data directory is a new temporary one unless ``ELOG_DATA_DIR`` (or ``--data-dir``) is
    given: never the user's.
    """
    with tempfile.TemporaryDirectory(prefix="elog-data-", ignore_cleanup_errors=True) as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ELOG_")}
        env.update(ELOG_DATA_DIR=data, XDG_DATA_HOME=data)
        with _serving(ServeProcess(list(args), {**env, **env_overrides})) as server:
            yield server


@contextmanager
def _serving(server: ServeProcess) -> Iterator[ServeProcess]:
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait(DEADLINE)
        server.pump.join(DEADLINE)
        assert server.process.stdout is not None
        server.process.stdout.close()


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port in threads; yields ``http://127.0.0.1:PORT``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(DEADLINE)


def http_status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return 0


@dataclass
class Replica:
    """One ``elog-stream serve`` process of a group sharing one Redis (or cluster)."""

    url: str  # ends with "/"
    process: ServeProcess

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "ws"


@contextmanager
def replicas(redis_urls: list[str], prefix: str, **env: str) -> Iterator[list[Replica]]:
    """One ``elog-stream serve`` per URL in ``redis_urls``, all healthy before the block runs."""
    from elog_stream.embedded import free_port

    with contextlib.ExitStack() as stack:
        started = []
        for redis_url in redis_urls:
            port = free_port()
            args = ["--port", str(port), "--redis-url", redis_url, "--prefix", prefix]
            process = stack.enter_context(serve(*args, **env))
            started.append(Replica(f"http://127.0.0.1:{port}/", process))
        for replica in started:
            wait_for(
                lambda replica=replica: http_status(replica.url + "healthz") == 200,  # type: ignore[misc]
                f"replica {replica.url} to be healthy:\n{''.join(replica.process.drain())}",
                deadline=3 * DEADLINE,
            )
        yield started
