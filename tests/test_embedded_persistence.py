"""``serve`` with no Redis URL keeps its data and port in its data directory across restarts,
refuses a second ``serve`` there, and this user's publishers find it with no set-up."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import stat
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import redis
from support import DEADLINE, ServeProcess, http_status, png, serve, wait_for

from elog_stream import Publisher
from elog_stream.embedded import free_port
from elog_stream.local import LOCK_FILE, RUNTIME_FILE, STATE_FILE, find_running


def healthy(server: ServeProcess, port: int) -> str:
    """Wait until ``server`` serves on ``port``; the URL of its embedded server."""
    url = server.embedded_url()
    wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, "the service")
    return url


def stop(server: ServeProcess) -> None:
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(DEADLINE) == 0, "".join(server.drain())


def topics(port: int) -> list[str]:
    return [t["topic"] for t in httpx.get(f"http://127.0.0.1:{port}/api/topics").json()]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_restart_keeps_the_topics_the_port_and_the_publishers_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("ELOG_DATA_DIR", str(data_dir))  # where Publisher() looks
    port = free_port()
    with serve("--port", str(port), ELOG_DATA_DIR=str(data_dir)) as first:
        url = healthy(first, port)
        publisher = Publisher()  # no URL: found through the runtime file
        assert urlsplit(publisher.url).port == urlsplit(url).port
        assert publisher.publish("kept", "e", png("one")) == 1
        wait_for(lambda: "kept" in topics(port), "the topic to be served")
        assert mode(data_dir) == 0o700
        private = [data_dir / RUNTIME_FILE, data_dir / STATE_FILE, *data_dir.glob("append*/*")]
        assert {mode(path) for path in private} == {0o600}, private
        with pytest.raises(redis.AuthenticationError):  # other local users are kept out
            redis.Redis(port=urlsplit(url).port).ping()
        stop(first)
    assert not (data_dir / RUNTIME_FILE).exists()
    assert find_running(data_dir) is None

    with serve("--port", str(port), ELOG_DATA_DIR=str(data_dir)) as second, publisher:
        assert healthy(second, port) == url  # same port, same password
        assert topics(port) == ["kept"]
        assert publisher.publish("kept", "e", png("two")) == 2  # the same Publisher
        image = f"http://127.0.0.1:{port}/api/topics/kept/image"
        wait_for(lambda: httpx.get(image).content == png("two"), "the new image")
        stop(second)


def test_a_taken_port_is_replaced_and_the_new_one_remembered(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    with serve("--port", str(port), ELOG_DATA_DIR=str(data_dir)) as first:
        old = urlsplit(healthy(first, port)).port
        stop(first)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", old))
        squatter.listen()
        with serve("--port", str(port), ELOG_DATA_DIR=str(data_dir)) as second:
            new = urlsplit(healthy(second, port)).port
            assert new != old
            assert json.loads((data_dir / STATE_FILE).read_text())["port"] == new
            stop(second)


def test_a_second_serve_on_the_same_data_dir_fails_clearly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    with serve("--port", str(port), "--data-dir", str(data_dir)) as first:
        url = healthy(first, port)
        with serve("--port", str(free_port()), ELOG_DATA_DIR=str(data_dir)) as second:
            assert second.process.wait(DEADLINE) == 1
            second.pump.join(DEADLINE)
            output = "".join(second.drain())
        port_of_redis = urlsplit(url).port
        expected = f"already running at redis://:***@127.0.0.1:{port_of_redis}/0 (pid "
        assert expected in output, output
        assert str(data_dir) in output and "Traceback" not in output
        assert http_status(f"http://127.0.0.1:{port}/healthz") == 200  # the first one goes on
        stop(first)


def test_the_lock_decides_even_without_a_runtime_file(tmp_path: Path) -> None:
    # Another serve that has taken the lock but not yet written its runtime file (or a server
    # left running by a killed service, off Linux): no second server on the same files.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with open(data_dir / LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with serve("--port", str(free_port()), ELOG_DATA_DIR=str(data_dir)) as server:
            assert server.process.wait(DEADLINE) == 3  # uvicorn's "startup failed"
            server.pump.join(DEADLINE)
            output = "".join(server.drain())
    assert "AlreadyRunningError: elog-stream serve is already running with data directory" in (
        output
    )
    assert not list(data_dir.glob("append*"))  # no server was started


def test_a_killed_service_leaves_a_stale_runtime_file_that_publishers_ignore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("ELOG_DATA_DIR", str(data_dir))
    port = free_port()
    with serve("--port", str(port), ELOG_DATA_DIR=str(data_dir)) as first:
        url = healthy(first, port)
        (embedded,) = [
            child
            for child in psutil.Process(first.process.pid).children(recursive=True)
            if "server" in child.name()
        ]
        with Publisher() as publisher:
            publisher.publish("survives", "e", png("kill"))
        first.process.kill()
        first.process.wait(DEADLINE)
        wait_for(lambda: not embedded.is_running(), "the embedded server to exit")
    runtime = json.loads((data_dir / RUNTIME_FILE).read_text())
    assert runtime["pid"] == first.process.pid  # left behind, and stale
    assert find_running(data_dir) is None
    with Publisher() as publisher:
        assert urlsplit(publisher.url).port == 6379  # the fallback

    # Its data was flushed on the way out (the server got SIGTERM); a new serve replaces the file.
    with serve("--port", str(port), ELOG_DATA_DIR=str(data_dir)) as second:
        assert healthy(second, port) == url
        assert topics(port) == ["survives"]
        stop(second)


def test_a_runtime_file_whose_pid_was_reused_does_not_stop_serve(tmp_path: Path) -> None:
    # As after a power cut and a reboot: the file's pid is alive, but it is another process.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    url = f"redis://:pw@127.0.0.1:{free_port()}/0"  # nothing listens there
    runtime = {"url": url, "pid": os.getpid(), "port": 1, "started_at": 0.0, "redis_pid": 1,
               "host": socket.gethostname()}  # fmt: skip
    (data_dir / RUNTIME_FILE).write_text(json.dumps(runtime))
    port = free_port()
    with serve("--port", str(port), ELOG_DATA_DIR=str(data_dir)) as server:
        assert healthy(server, port) != url  # the file was replaced
        stop(server)


def test_publishers_trust_a_runtime_file_only_while_its_pid_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELOG_DATA_DIR", str(tmp_path))
    runtime = {"url": "redis://:pw@127.0.0.1:7/0", "port": 7, "started_at": 0.0, "redis_pid": 1,
               "host": socket.gethostname()}  # fmt: skip
    (tmp_path / RUNTIME_FILE).write_text(json.dumps({**runtime, "pid": os.getpid()}))
    with Publisher() as publisher:
        assert urlsplit(publisher.url).port == 7
    with Publisher("redis://127.0.0.1:9/0") as publisher:  # an explicit URL wins
        assert urlsplit(publisher.url).port == 9
    other_host = {**runtime, "pid": os.getpid(), "host": "elsewhere"}  # a shared home directory
    for stale in ({**runtime, "pid": 2**22 + 1}, other_host, {"url": 3}, "not json"):
        (tmp_path / RUNTIME_FILE).write_text(json.dumps(stale) if stale != "not json" else stale)
        with Publisher() as publisher:
            assert urlsplit(publisher.url).port == 6379
