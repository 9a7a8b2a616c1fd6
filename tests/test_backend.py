"""The matplotlib backend: real scripts run with MPLBACKEND=module://elog_stream.backend against
a running service, watched by a WebSocket viewer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from support import DEADLINE, RunningService, receive, receive_image
from websockets.asyncio.client import ClientConnection, connect

from elog_stream.config import Settings
from elog_stream.embedded import free_port

BACKEND = "module://elog_stream.backend"
PNG = b"\x89PNG\r\n\x1a\n"


async def run_script(
    tmp_path: Path, source: str, settings: Settings, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as ``analysis.py`` with the backend, pointed at ``settings``' Redis."""
    script = tmp_path / "analysis.py"
    script.write_text(textwrap.dedent(source), encoding="utf-8")
    environment = {
        **os.environ,
        "MPLBACKEND": BACKEND,
        "ELOG_REDIS_URL": str(settings.redis_url),
        "ELOG_PREFIX": settings.prefix,
        **env,
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=4 * DEADLINE,
    )


async def frames_of(ws: ClientConnection, topic: str, last_seq: int) -> list[dict[str, Any]]:
    """Headers of ``topic``'s images as the viewer gets them, until seq ``last_seq``."""
    headers: list[dict[str, Any]] = []
    while not headers or headers[-1]["seq"] < last_seq:
        header, data = await receive_image(ws, topic)
        assert data.startswith(PNG)
        headers.append(header)
    return headers


async def test_show_publishes_each_figure_under_its_label_suptitle_or_script_name(
    service: RunningService, tmp_path: Path
) -> None:
    source = """
        import matplotlib.pyplot as plt
        plt.figure("cxif7214/detector/sum")
        plt.plot([1, 2, 3])
        plt.figure()
        plt.suptitle("jet position")
        plt.figure()
        plt.plot([3, 2, 1])
        plt.show()
        print("shown")
    """
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        script = asyncio.create_task(
            run_script(tmp_path, source, service.settings, ELOG_EXPERIMENT="cxif7214")
        )
        images = [await receive_image(ws) for _ in range(3)]
        result = await script
    assert result.returncode == 0, result.stderr
    assert result.stdout == "shown\n"
    assert "ELOG_EXPERIMENT" not in result.stderr
    assert sorted(header["topic"] for header, _ in images) == [
        "analysis/figure-3",
        "cxif7214/detector/sum",
        "jet position",
    ]
    assert {header["experiment"] for header, _ in images} == {"cxif7214"}
    assert all(data.startswith(PNG) for _, data in images)


async def test_without_elog_experiment_the_default_is_used_with_a_warning(
    service: RunningService, tmp_path: Path
) -> None:
    source = """
        import matplotlib.pyplot as plt
        plt.plot([1, 2, 3])
        plt.show()
    """
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        script = asyncio.create_task(run_script(tmp_path, source, service.settings))
        header, _ = await receive_image(ws, "analysis/figure-1")
        result = await script
    assert result.returncode == 0, result.stderr
    assert header["experiment"] == "default"
    assert result.stderr.count("ELOG_EXPERIMENT is not set") == 1
    assert "analysis.py:4" in result.stderr  # the warning points at the script's plt.show()


async def test_a_pause_loop_updates_one_topic_and_show_does_not_resend_it(
    service: RunningService, tmp_path: Path
) -> None:
    source = """
        import matplotlib.pyplot as plt
        fig = plt.figure("loop")
        line, = plt.plot([0, 1], [0, 0])
        for i in range(5):
            line.set_ydata([0, i])
            plt.title(f"frame {i}")
            plt.pause(0.01)
        plt.show()  # nothing changed since the last pause
    """
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        script = asyncio.create_task(
            run_script(tmp_path, source, service.settings, ELOG_EXPERIMENT="e")
        )
        headers = await frames_of(ws, "loop", 5)
        result = await script
    assert result.returncode == 0, result.stderr
    seqs = [header["seq"] for header in headers]
    assert seqs == sorted(set(seqs)) and seqs[-1] == 5
    assert service.publisher is not None
    assert service.publisher.grab("loop").seq == 5


async def test_show_runs_an_animation_to_its_end_then_returns(
    service: RunningService, tmp_path: Path
) -> None:
    source = """
        import matplotlib.pyplot as plt
        from matplotlib.animation import FuncAnimation
        fig, ax = plt.subplots(num="anim")
        line, = ax.plot([0, 1], [0, 0])
        ax.set_ylim(0, 5)
        def update(i):
            line.set_ydata([0, i])
            ax.set_title(f"frame {i}")
            print("frame", i)
            return (line,)
        animation = FuncAnimation(fig, update, frames=5, interval=10, repeat=False)
        plt.show()
        print("done", plt.get_fignums())
    """
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        script = asyncio.create_task(
            run_script(tmp_path, source, service.settings, ELOG_EXPERIMENT="e")
        )
        headers = await frames_of(ws, "anim", 6)  # the first show, then one per frame
        result = await script
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "done []"  # show closed the figure
    assert [line for line in result.stdout.splitlines() if line.startswith("frame")][-1] == (
        "frame 4"
    )
    seqs = [header["seq"] for header in headers]
    assert seqs == sorted(set(seqs))
    assert service.publisher is not None
    assert service.publisher.grab("anim").seq == 6


async def test_show_runs_an_endless_animation_until_its_figure_is_closed(
    service: RunningService, tmp_path: Path
) -> None:
    source = """
        import matplotlib.pyplot as plt
        from matplotlib.animation import FuncAnimation
        fig, ax = plt.subplots(num="endless")
        timers = []
        def update(i):
            ax.set_title(f"frame {i}")
            if i == 5:  # a timer closes the figure, as a viewer closing a window would
                closer = fig.canvas.new_timer(interval=1)
                closer.single_shot = True
                closer.add_callback(plt.close, fig)
                closer.start()
                timers.append(closer)
        animation = FuncAnimation(fig, update, interval=10)
        plt.show()
        print("done")
    """
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        script = asyncio.create_task(
            run_script(tmp_path, source, service.settings, ELOG_EXPERIMENT="e")
        )
        headers = await frames_of(ws, "endless", 7)  # the first show, then frames 0 to 5
        result = await script
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    seqs = [header["seq"] for header in headers]
    assert seqs == sorted(set(seqs))


async def test_an_unreachable_redis_fails_at_show_with_a_clear_message(
    settings: Settings, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    source = """
        import matplotlib.pyplot as plt
        plt.plot([1, 2, 3])
        print("plotted", flush=True)
        plt.show()
    """
    result = await run_script(tmp_path, source, settings, ELOG_REDIS_URL=url, ELOG_EXPERIMENT="e")
    assert result.returncode == 1
    assert result.stdout == "plotted\n"  # importing and plotting did not need Redis
    assert f"RedisUnavailableError: cannot reach Redis at {url}" in result.stderr
    assert "set ELOG_REDIS_URL, or start `elog-stream serve`" in result.stderr


async def test_an_unusable_figure_name_fails_naming_the_figure_and_the_fix(
    settings: Settings, tmp_path: Path
) -> None:
    source = """
        import matplotlib.pyplot as plt
        plt.figure("run {7}")
        plt.show()
    """
    result = await run_script(tmp_path, source, settings, ELOG_EXPERIMENT="e")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "elog_stream.errors.InvalidNameError: figure 1 cannot be published: its label: "
        "topic 'run {7}' contains '{' or '}'; "
        "name the figure with plt.figure('name') or fig.set_label('name')"
    )
