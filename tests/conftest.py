"""Real servers for the tests: a Redis-compatible server process and uvicorn on a free port.

Use an external server with ``--redis-url URL`` or ``ELOG_TEST_REDIS_URL``; otherwise a private
``valkey-server`` (or ``redis-server``) is started for the session. Every test gets its own key
prefix, so tests never see each other's topics and an external server is never flushed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from support import RunningService, run_service

from elog_stream import Publisher
from elog_stream.config import Settings
from elog_stream.embedded import EmbeddedRedis


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-url",
        default=os.environ.get("ELOG_TEST_REDIS_URL"),
        help="use this Redis server instead of starting a private one",
    )


@pytest.fixture(autouse=True)
def _no_elog_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Publishers read ``ELOG_*`` variables: a test sees only those it sets itself.

    Nor do they look for a running ``serve`` in the user's data directory (local.py).
    """
    for name in list(os.environ):
        if name.startswith("ELOG_") and not name.startswith("ELOG_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    url = request.config.getoption("--redis-url")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def settings(redis_url: str, prefix: str) -> Settings:
    return Settings(redis_url=redis_url, prefix=prefix)


@pytest.fixture
def publisher(settings: Settings) -> Iterator[Publisher]:
    with Publisher(settings.redis_url, prefix=settings.prefix) as publisher:
        yield publisher


@pytest.fixture
def service(settings: Settings, publisher: Publisher) -> Iterator[RunningService]:
    with run_service(settings) as running:
        running.publisher = publisher
        yield running
