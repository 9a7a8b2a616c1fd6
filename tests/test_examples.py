"""The examples in examples/ run as users run them, against a running service and a viewer."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from support import DEADLINE, RunningService, receive, receive_image
from websockets.asyncio.client import ClientConnection, connect

from elog_stream import Publisher

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def environment(service: RunningService, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ELOG_REDIS_URL": str(service.settings.redis_url),
        "ELOG_PREFIX": service.settings.prefix,
        **extra,
    }


async def run_example(service: RunningService, *args: str, **env: str) -> str:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, *args],
        env=environment(service, **env),
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=8 * DEADLINE,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def images_until(ws: ClientConnection, done: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The newest header per topic, received until each topic of ``done`` reached its seq."""
    newest: dict[str, dict[str, Any]] = {}
    while any(newest.get(topic, {}).get("seq", 0) < seq for topic, seq in done.items()):
        header, _ = await receive_image(ws, deadline=8 * DEADLINE)
        newest[header["topic"]] = header
    return newest


async def test_the_analysis_script_publishes_through_the_backend(
    service: RunningService, publisher: Publisher
) -> None:
    async with connect(service.ws_url, max_size=None) as ws:
        await receive(ws, "sync")
        run = asyncio.create_task(
            run_example(
                service,
                "analysis_script.py",
                "5",
                MPLBACKEND="module://elog_stream.backend",
                ELOG_EXPERIMENT="scan42",
            )
        )
        newest = await images_until(ws, {"scan/intensity": 5, "scan/summary": 1})
        await run
    assert {header["experiment"] for header in newest.values()} == {"scan42"}
    assert publisher.grab("scan/intensity").seq == 5  # one per pause; show() sends no repeat


async def test_the_asyncio_pipeline_rate_limits_and_ends_with_its_newest_frame(
    service: RunningService, publisher: Publisher
) -> None:
    async with connect(service.ws_url, max_size=None) as ws:
        await receive(ws, "sync")
        run = asyncio.create_task(
            run_example(service, "pipeline.py", "--frames", "60", "--experiment", "ring")
        )
        header, _ = await receive_image(ws, "ring/detector/ring", deadline=8 * DEADLINE)
        output = await run
    assert header["experiment"] == "ring"
    final = publisher.grab("ring/detector/ring")
    assert final.description == "frame 59"  # the newest frame is never the one dropped
    found = re.search(r"published 60 frames; (\d+) replaced by newer ones", output)
    assert found, output
    assert final.seq == 60 - int(found[1])  # each frame was sent or replaced, none lost


async def test_the_notebook_runs_headless_and_publishes(
    service: RunningService, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment(service).items():
        if name.startswith("ELOG_"):
            monkeypatch.setenv(name, value)  # the kernel inherits this environment
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(EXAMPLES / "live_notebook.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=int(8 * DEADLINE),
        resources={"metadata": {"path": str(EXAMPLES)}},
    )
    async with connect(service.ws_url, max_size=None) as ws:
        await receive(ws, "sync")
        execution = asyncio.create_task(client.async_execute())
        newest = await images_until(ws, {"notebook/spectrum": 1, "notebook/detector": 1})
        await execution
    assert newest["notebook/detector"]["description"] == "one shot"
    assert {header["experiment"] for header in newest.values()} == {"demo"}
    assert publisher.grab("notebook/spectrum").content_type == "image/png"
