"""The public surface, the embedded server, and lint/type checks.

The deployment files (Dockerfile, compose, nginx, systemd) are tested in test_deployment.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis

import elog_stream
from elog_stream.embedded import EmbeddedRedis, find_server_binary

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(elog_stream).items()
        if not name.startswith("_") and not isinstance(value, type(elog_stream))
    }
    assert elog_stream.__all__ == sorted(elog_stream.__all__)
    assert set(elog_stream.__all__) == public


def test_embedded_server_starts_answers_and_stops() -> None:
    server = EmbeddedRedis()
    with server:
        client = redis.Redis.from_url(server.url)
        assert client.ping() is True
        assert server.url.startswith("redis://127.0.0.1:")
        process = psutil.Process(server.pid)
        client.close()
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    server.stop()  # a second stop is harmless


def test_embedded_server_reports_a_failed_start() -> None:
    with EmbeddedRedis() as first:
        with pytest.raises(RuntimeError, match="exited at start-up"):
            EmbeddedRedis(port=first.port).start()  # the port is taken


def test_a_server_binary_is_found() -> None:
    assert Path(find_server_binary()).name in ("valkey-server", "redis-server")


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "elog_stream", "tests", "benchmarks"],
        ["ruff", "format", "--check", "elog_stream", "tests", "benchmarks"],
        ["mypy"],
    ],
    ids=["ruff", "ruff-format", "mypy"],
)
def test_code_is_clean(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
