"""The systems under test, each a real process on loopback, and how to publish to them.

- ``elog-stream``: ``elog-stream serve`` in a subprocess on the harness's Redis, published to
  with ``AsyncPublisher`` (prefix ``elog:``); its viewers use ``/ws``.
- ``poller``: the same service, read by baseline (b) with ``GET …/image`` once a second.
- ``relay``: baseline (a), benchmarks/relay.py in a subprocess on the same Redis (prefix
  ``relay:``), published to with the same ``AsyncPublisher``.
- ``visdom``: baseline (c), visdom's tornado server (started with ``run_server.main()``, which
  downloads nothing) from another Python, published to with its own HTTP API (``POST
  /events``, the image as base64, as ``Visdom.image`` sends it).

Each is an async context manager that yields a ``Target`` and stops its process on exit;
``TargetUnavailable`` says why a target could not be started.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from elog_stream import AsyncPublisher
from elog_stream.embedded import free_port

REPO = Path(__file__).resolve().parent.parent
TOPIC = "bench/plot"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class TargetUnavailable(RuntimeError):
    """A target could not be started here; the message says why."""


@dataclass
class Target:
    name: str
    kind: str  # the clients' kind (clients.KINDS)
    url: str  # what the clients open
    idle_url: str  # a WebSocket URL on which no image is sent (memory per idle viewer)
    pid: int  # the server process, whose memory is measured
    publish: Callable[[bytes, int], Awaitable[object]]  # (image bytes, frame id)
    viewers: Callable[[], Awaitable[int]]  # connections the server counts now


@contextlib.contextmanager
def _process(args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, its stderr kept in a file to say why it failed; stopped on exit."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            args, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors
        )
        process.errors = errors  # type: ignore[attr-defined]
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _stderr_tail(process: subprocess.Popen[bytes]) -> str:
    errors = process.errors  # type: ignore[attr-defined]
    errors.seek(0)
    return errors.read().decode(errors="replace")[-1500:].strip()


async def _wait_http(
    process: subprocess.Popen[bytes], url: str, what: str, any_status: bool = False
) -> None:
    """Until ``url`` answers 200 (any status with ``any_status``); TargetUnavailable if the
    process ends or time runs out."""
    end = time.monotonic() + READY_TIMEOUT
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            if process.poll() is not None:
                raise TargetUnavailable(
                    f"{what} exited with status {process.returncode}: {_stderr_tail(process)}"
                )
            with contextlib.suppress(httpx.TransportError):
                response = await http.get(url)
                if any_status or response.status_code == 200:
                    return
            if time.monotonic() > end:
                raise TargetUnavailable(f"{what} did not answer {url} in {READY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.05)


async def _json_count(url: str, field: str) -> int:
    async with httpx.AsyncClient(timeout=30) as http:
        return int((await http.get(url)).json()[field])


@contextlib.asynccontextmanager
async def elog_service(redis_url: str) -> AsyncIterator[tuple[Target, Target]]:
    """``elog-stream serve`` on ``redis_url``: its viewers' target and the poller's."""
    port = free_port()
    args = [sys.executable, "-m", "elog_stream", "serve", "--port", str(port)]
    args += ["--redis-url", redis_url, "--prefix", "elog:"]
    with _process(args) as process:
        base = f"http://127.0.0.1:{port}/"
        await _wait_http(process, base + "readyz", "elog-stream serve")
        async with AsyncPublisher(redis_url, prefix="elog:") as publisher:

            async def publish(data: bytes, ident: int) -> object:
                return await publisher.publish(TOPIC, "bench", data)

            async def viewers() -> int:
                return await _json_count(base + "api/stats", "viewers")

            ws = f"ws://127.0.0.1:{port}/ws"
            idle = ws + "?topic=bench/nothing"  # a filter no topic matches: nothing is sent
            yield (
                Target("elog-stream", "elog", ws, idle, process.pid, publish, viewers),
                Target(
                    "poller", "poll", f"{base}api/topics/{TOPIC}/image", idle, process.pid,
                    publish, viewers,
                ),
            )  # fmt: skip


@contextlib.asynccontextmanager
async def relay(redis_url: str) -> AsyncIterator[Target]:
    """Baseline (a): benchmarks/relay.py on ``redis_url``."""
    port = free_port()
    args = [sys.executable, "-m", "benchmarks.relay", "--port", str(port)]
    args += ["--redis-url", redis_url, "--prefix", "relay:"]
    with _process(args) as process:
        stats = f"http://127.0.0.1:{port}/stats"
        await _wait_http(process, stats, "the relay")
        async with AsyncPublisher(redis_url, prefix="relay:") as publisher:

            async def publish(data: bytes, ident: int) -> object:
                return await publisher.publish(TOPIC, "bench", data)

            async def viewers() -> int:
                return await _json_count(stats, "viewers")

            ws = f"ws://127.0.0.1:{port}/"
            yield Target("relay", "relay", ws, ws, process.pid, publish, viewers)


VISDOM_MAIN = (
    "import sys; from visdom.server.run_server import main; "
    "sys.argv = ['visdom', '-port', sys.argv[1], '-env_path', sys.argv[2], '-bind_local', "
    "'-logging_level', 'WARNING']; main()"
)


@contextlib.asynccontextmanager
async def visdom(python: str) -> AsyncIterator[Target]:
    """Baseline (c): a visdom server run by ``python`` (a venv where visdom is installed)."""
    if not os.access(python, os.X_OK):
        raise TargetUnavailable(
            f"no Python at {python}: install visdom into a venv there "
            "(see docs/benchmarks.md) or pass --visdom-python"
        )
    found = subprocess.run(
        [python, "-c", "import visdom.server.run_server"], capture_output=True, text=True
    )
    if found.returncode:
        raise TargetUnavailable(f"visdom does not import in {python}: {found.stderr[-500:]}")
    port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="bench-visdom-") as env_path,
        _process([python, "-c", VISDOM_MAIN, str(port), env_path]) as process,
    ):
        base = f"http://127.0.0.1:{port}"
        # its page needs scripts that only download_scripts() fetches; its socket does not
        await _wait_http(process, base + "/", "visdom", any_status=True)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:

            async def publish(data: bytes, ident: int) -> object:
                source = "data:image/png;base64," + base64.b64encode(data).decode()
                body = {
                    "data": [{"content": {"src": source, "caption": ""}, "type": "image"}],
                    "win": "bench", "eid": "main", "opts": {"title": f"frame-{ident}"},
                }  # fmt: skip
                response = await http.post("/events", json=body)
                response.raise_for_status()
                return None

            async def viewers() -> int:
                raise TargetUnavailable("visdom does not count its viewers")

            ws = f"ws://127.0.0.1:{port}/socket"
            yield Target("visdom", "visdom", ws, ws, process.pid, publish, viewers)
