"""Every ``elog-stream`` command, against real servers."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import psutil
import pytest
from support import DEADLINE, cli_args, http_status, jpeg, png, serve, wait_for

from elog_stream import Publisher
from elog_stream.cli import main
from elog_stream.config import Settings
from elog_stream.embedded import free_port


def test_publish_grab_and_topics(
    settings: Settings, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "plot.png"
    source.write_bytes(png("cli"))
    assert (
        main(cli_args(settings, "publish", str(source), "--topic", "cli/a", "--experiment", "x"))
        == 0
    )
    assert capsys.readouterr().out == "published cli/a seq 1\n"
    (tmp_path / "photo.jpg").write_bytes(jpeg())
    argv = ["publish", str(tmp_path / "photo.jpg"), "--topic", "cli/b", "--experiment", "y"]
    assert main(cli_args(settings, *argv, "--description", "a photo")) == 0

    assert main(cli_args(settings, "topics")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:3] for line in lines[1:]] == [
        ["cli/a", "x", "seq 1"],
        ["cli/b", "y", "seq 1"],
    ]
    assert main(cli_args(settings, "topics", "--json")) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(t["topic"], t["description"]) for t in listed] == [("cli/a", ""), ("cli/b", "a photo")]

    out = tmp_path / "grabbed.png"
    assert main(cli_args(settings, "grab", "cli/a", "-o", str(out))) == 0
    assert out.read_bytes() == png("cli")
    assert "cli/a seq 1" in capsys.readouterr().out

    monkeypatch.chdir(tmp_path)  # restored after the test
    assert main(cli_args(settings, "grab", "cli/b")) == 0
    assert (tmp_path / "cli_b.jpg").read_bytes() == jpeg()


def test_errors_exit_1_with_a_clear_message(settings: Settings, tmp_path: Path, capsys) -> None:
    assert main(cli_args(settings, "grab", "missing")) == 1
    assert "error: no live image for topic 'missing'" in capsys.readouterr().err
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    assert main(cli_args(settings, "publish", str(bad), "--topic", "t", "--experiment", "e")) == 1
    assert "not a PNG, JPEG, WebP or GIF" in capsys.readouterr().err
    assert main(cli_args(settings, "publish", str(tmp_path / "nope.png"), "--topic", "t",
                    "--experiment", "e")) == 1  # fmt: skip
    assert "No such file" in capsys.readouterr().err
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert main(["topics", "--redis-url", url]) == 1
    assert f"cannot reach Redis at {url}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["publish", "x.png"])
    assert usage.value.code == 2


def test_demo_publishes_moving_plots(settings: Settings, publisher: Publisher) -> None:
    assert main(cli_args(settings, "demo", "--count", "2", "--interval", "0")) == 0
    topics = publisher.topics()
    assert {t.topic for t in topics} == {"demo/waveform", "demo/detector/sum", "demo/histogram"}
    assert all(t.seq == 2 and t.experiment == "demo" for t in topics)


def test_serve_with_embedded_redis_starts_and_stops_it() -> None:
    port = free_port()
    with serve("--port", str(port)) as server:
        server.wait_for_line(rf"viewer at http://127.0.0.1:{port}/")
        redis_url = server.embedded_url()
        base = f"http://127.0.0.1:{port}/"
        wait_for(lambda: http_status(base + "readyz") == 200, "the served service to be healthy")
        children = psutil.Process(server.process.pid).children(recursive=True)
        embedded = [c for c in children if "server" in c.name()]
        assert len(embedded) == 1, children

        with Publisher(redis_url) as publisher:
            publisher.publish("served", "e", png("served"))
        wait_for(lambda: http_status(base + "api/topics/served") == 200, "the topic to be served")
        assert httpx.get(base + "api/topics/served/image").content == png("served")

        server.process.send_signal(signal.SIGTERM)
        server.process.wait(DEADLINE)
        assert not embedded[0].is_running() or embedded[0].status() == psutil.STATUS_ZOMBIE


def test_serve_with_redis_url_uses_that_server(settings: Settings, publisher: Publisher) -> None:
    port = free_port()
    publisher.publish("external", "e", png("external"))
    args = cli_args(settings, "--port", str(port))
    with serve(*args) as server:
        server.wait_for_line("Application startup complete")
        base = f"http://127.0.0.1:{port}/"
        wait_for(lambda: http_status(base + "api/topics/external") == 200, "the existing topic")
        children = psutil.Process(server.process.pid).children(recursive=True)
        assert not [c for c in children if "server" in c.name()]
        assert not any("embedded Redis" in line for line in server.output)
        server.process.send_signal(signal.SIGINT)  # Ctrl-C: a graceful stop, exit status 130
        server.wait_for_line("Application shutdown complete")
        assert server.process.wait(DEADLINE) == 130
