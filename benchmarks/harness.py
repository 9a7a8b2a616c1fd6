"""Issue 12's benchmarks in one command: elog-stream and its baselines, in the same run.

    PYTHONPATH=. python -m benchmarks.harness [--quick | --smoke] [--viewers 1,10,100,1000]
        [--sizes 10k,100k,1m] [--idle 1000,10000,50000] [--out DIR]

A private valkey-server, ``elog-stream serve`` and the bare relay (benchmarks/relay.py) run as
subprocesses, visdom too when ``--visdom-python`` names a Python where it is installed; the
clients run in ``--workers`` processes (benchmarks/clients.py). For each image size and viewer
count, each target is measured in turn (benchmarks/phases.py), then the per-topic rate ladder,
the memory per idle viewer and the phases of ``elogshow``. Written into ``--out``:
``results.json``, ``results.md`` (the tables, the ratios and issue 12's targets, met or not),
``latency-cdf.png`` and ``latencies.json`` (every latency, for other plots).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
import redis
import uvicorn
import websockets

from elog_stream.embedded import EmbeddedRedis

from . import phases, render, report
from .clients import ClientPool
from .frames import raise_fd_limit
from .progress import Progress
from .report import size_label
from .show_cost import elogshow_costs
from .targets import Target, TargetUnavailable, elog_service, relay, visdom

DEFAULT_VISDOM_PYTHON = "/tmp/visdom-venv/bin/python"
FD_MARGIN = 512  # descriptors a server needs besides its viewers' sockets
PHASES = ("latency", "rate", "memory", "elogshow")


@dataclass
class Plan:
    viewers: list[int]
    sizes: list[int]
    frames: int = 60  # per latency run
    rate: float = 10.0  # Hz, latency runs
    burst_bytes: int = 2_000_000_000  # image bytes to all viewers in a fan-out burst, at most
    poll_frames: int = 5
    poll_max_viewers: int = 100
    visdom_max_viewers: int = 100
    visdom_max_size: int = 100_000  # 1 MB to 100 visdom viewers took 7 minutes a row here
    rate_viewers: int = 10
    rate_size: int = 100_000
    rates: list[float] = field(default_factory=lambda: [10, 20, 50, 100, 200, 500, 1000])
    rate_seconds: float = 2.0
    idle: list[int] = field(default_factory=lambda: [1_000, 10_000, 50_000])
    show_repeats: int = 30
    workers: int = max(3, (os.cpu_count() or 1) - 2)
    phases: tuple[str, ...] = PHASES


PRESETS = {
    "full": Plan(viewers=[1, 10, 100, 1000], sizes=[10_000, 100_000, 1_000_000]),
    "quick": Plan(
        viewers=[1, 10, 100], sizes=[10_000, 100_000, 1_000_000], frames=30, poll_frames=3,
        rates=[10, 50, 200, 1000], rate_seconds=1.0, show_repeats=10,
    ),
    "smoke": Plan(
        viewers=[1, 10], sizes=[10_000], frames=5, burst_bytes=1_000_000, poll_frames=2,
        poll_max_viewers=1, visdom_max_viewers=0, rates=[10, 50], rate_seconds=0.2,
        idle=[20], show_repeats=2, workers=2,
    ),
}  # fmt: skip


def _sizes(text: str) -> list[int]:
    scale = {"k": 1_000, "m": 1_000_000}
    return [int(float(s[:-1]) * scale[s[-1]]) if s[-1] in scale else int(s) for s in
            text.lower().split(",")]  # fmt: skip


def _phases(text: str) -> tuple[str, ...]:
    chosen = tuple(text.split(","))
    if not set(chosen) <= set(PHASES):
        raise argparse.ArgumentTypeError(f"phases are {', '.join(PHASES)}")
    return chosen


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def parse(argv: list[str] | None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="1-100 viewers, fewer frames")
    preset.add_argument("--smoke", action="store_true", help="seconds; checks the harness runs")
    parser.add_argument("--viewers", type=_ints, help="viewer counts, e.g. 1,10,100,1000")
    parser.add_argument("--sizes", type=_sizes, help="image sizes, e.g. 10k,100k,1m")
    parser.add_argument("--idle", type=_ints, help="idle viewer counts for the memory rows")
    parser.add_argument("--frames", type=int, help="images per latency run")
    parser.add_argument("--rate", type=float, help="publishes per second in latency runs")
    parser.add_argument("--workers", type=int, help="client processes")
    parser.add_argument("--phases", type=_phases, help=f"some of {','.join(PHASES)} (default: all)")
    parser.add_argument("--visdom-python", default=DEFAULT_VISDOM_PYTHON)
    parser.add_argument("--no-visdom", action="store_true")
    parser.add_argument("--out", type=Path, help="output folder (default benchmarks/results/…)")
    args = parser.parse_args(argv)
    plan = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    overrides = {
        name: getattr(args, name)
        for name in ("viewers", "sizes", "idle", "frames", "rate", "workers", "phases")
        if getattr(args, name) is not None
    }
    plan = replace(plan, **overrides)
    if args.no_visdom:
        plan = replace(plan, visdom_max_viewers=0)
    if plan.workers < 1 or plan.frames < 1 or min(plan.viewers + plan.sizes) < 1:
        parser.error("--workers, --frames, --viewers and --sizes must be positive")
    if min(plan.sizes) < 16:
        parser.error("--sizes must be at least 16 bytes (a PNG signature and the frame id)")
    return plan, args


def idle_fits(viewers: int, workers: int, fd_limit: int) -> str:
    """Why ``viewers`` idle viewers cannot be measured here, or "" if they can."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    if viewers + FD_MARGIN > fd_limit:
        return (
            f"the server needs {viewers:,} sockets plus ~{FD_MARGIN} descriptors, over this "
            f"machine's hard RLIMIT_NOFILE of {fd_limit:,} per process (raising the hard limit "
            "needs CAP_SYS_RESOURCE, which this machine does not grant)"
        )
    if viewers > high - low + 1:
        return f"loopback clients to one port get at most {high - low + 1:,} ephemeral ports"
    if viewers // workers + FD_MARGIN > fd_limit:
        return f"{viewers // workers:,} sockets per client process exceed RLIMIT_NOFILE"
    return ""


def _meta(plan: Plan, argv: list[str]) -> dict[str, Any]:
    def git(*args: str) -> str:
        found = subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent
        )
        return found.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " with local changes"
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "benchmarks.harness", *argv]),
        "commit": commit,
        "cores": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "workers": plan.workers,
        "versions": (
            f"Python {platform.python_version()}, uvicorn {uvicorn.__version__}, "
            f"websockets {websockets.__version__}, redis-py {redis.__version__}"
        ),
    }


class Harness:
    """The run: its processes (owned through one AsyncExitStack), plan and results."""

    def __init__(self, plan: Plan, visdom_python: str) -> None:
        self.plan = plan
        self.visdom_python = visdom_python
        self.ids = phases.Ids()
        self.rows: list[dict[str, Any]] = []
        self.samples: dict[str, list[float]] = {}
        self.not_measured: list[str] = []
        self.visdom_status = ""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[dict[str, Target]]:
        """Every process of the run, started together (each takes seconds on a busy machine)."""
        async with contextlib.AsyncExitStack() as stack:
            server = stack.enter_context(EmbeddedRedis())
            self.redis_url = server.url
            self.redis_pid = server.pid
            self.pool = await stack.enter_async_context(ClientPool(self.plan.workers))
            async with asyncio.TaskGroup() as group:  # a failure cancels the other starts
                ours = group.create_task(stack.enter_async_context(elog_service(server.url)))
                bare = group.create_task(stack.enter_async_context(relay(server.url)))
                peer = group.create_task(self._visdom(stack))
            found = {"elog-stream": ours.result()[0], "poller": ours.result()[1]}
            found["relay"] = bare.result()
            if (peer_target := peer.result()) is not None:
                found["visdom"] = peer_target
            yield found

    async def _visdom(self, stack: contextlib.AsyncExitStack) -> Target | None:
        if not self.plan.visdom_max_viewers:
            self.visdom_status = "visdom not run (--smoke or --no-visdom)"
            return None
        try:
            return await stack.enter_async_context(visdom(self.visdom_python))
        except TargetUnavailable as exc:
            self.visdom_status = f"visdom not run: {exc}"
            self.not_measured.append(self.visdom_status)
            return None

    def cpu(self, target: Target) -> phases.Cpu:
        return phases.Cpu(
            {
                "server": [psutil.Process(target.pid)],
                "clients": [psutil.Process(pid) for pid in self.pool.pids],
                "redis": [psutil.Process(self.redis_pid)] if self.redis_pid else [],
            }
        )

    def visdom_row(self, viewers: int, size: int) -> bool:
        return viewers <= self.plan.visdom_max_viewers and size <= self.plan.visdom_max_size

    def steps(self, targets: dict[str, Target]) -> int:
        plan = self.plan
        per_row = sum(
            2
            + ("visdom" in targets and v <= plan.visdom_max_viewers)
            + (v <= plan.poll_max_viewers)
            for v in plan.viewers
        )
        counts = {
            "latency": per_row * len(plan.sizes),
            "rate": 2,
            "memory": 2 * len(plan.idle),
            "elogshow": 1,
        }
        return sum(counts[phase] for phase in plan.phases)

    async def row(self, target: Target, viewers: int, size: int) -> None:
        plan = self.plan
        entry: dict[str, Any] = {"target": target.name, "viewers": viewers, "size_bytes": size}
        try:
            if target.kind == "poll":
                found, latencies = await phases.poll_row(
                    self.pool, target, viewers, size, self.ids, plan.poll_frames
                )
            else:
                found, latencies = await phases.fanout_row(
                    self.pool, target, viewers, size, self.ids, plan.frames, plan.rate,
                    plan.burst_bytes, self.cpu(target),
                )  # fmt: skip
                busy = found["machine_busy_pct"] >= 90
                found["client_starved"] = busy and found["clients_cpu_s"] > found["server_cpu_s"]
            entry.update(found)
            self.samples[f"{target.name}|{viewers}|{size}"] = [round(x, 3) for x in latencies]
        except phases.RowFailed as exc:
            entry["error"] = str(exc)
        self.rows.append(entry)

    async def ladder(self, target: Target) -> dict[str, Any]:
        plan = self.plan
        try:
            return await phases.rate_ladder(
                self.pool, target, plan.rate_viewers, plan.rate_size, self.ids, plan.rates,
                plan.rate_seconds,
            )  # fmt: skip
        except phases.RowFailed as exc:
            return {"target": target.name, "error": str(exc)}

    async def idle(self, name: str, viewers: int, why: str) -> dict[str, Any]:
        """Memory per idle viewer, on a server of its own: one that served the latency rows
        reuses the memory they freed, and would seem to need none."""
        if why:
            return {"target": name, "viewers": viewers, "not_measured": why}
        fresh = elog_service(self.redis_url) if name == "elog-stream" else None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if fresh is not None:
                    target, _ = await stack.enter_async_context(fresh)
                else:
                    target = await stack.enter_async_context(relay(self.redis_url))
                return await phases.idle_memory(self.pool, target, viewers)
        except (phases.RowFailed, TargetUnavailable) as exc:
            return {"target": name, "viewers": viewers, "not_measured": str(exc)}

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        ladders, memory, show = [], [], None
        async with self.running() as targets:
            with Progress(self.steps(targets)) as progress:
                for size in plan.sizes if "latency" in plan.phases else []:
                    for viewers in plan.viewers:
                        order = ["elog-stream", "relay"]
                        if "visdom" in targets and self.visdom_row(viewers, size):
                            order.append("visdom")
                        if viewers <= plan.poll_max_viewers:
                            order.append("poller")
                        for name in order:
                            progress.step(f"{size_label(size)}, {viewers} viewers: {name}")
                            await self.row(targets[name], viewers, size)
                for name in ("elog-stream", "relay") if "rate" in plan.phases else ():
                    progress.step(f"rate ladder: {name}")
                    ladders.append(await self.ladder(targets[name]))
                limit = raise_fd_limit()
                for viewers in plan.idle if "memory" in plan.phases else []:
                    why = idle_fits(viewers, plan.workers, limit)
                    if why:
                        self.not_measured.append(f"{viewers:,} idle viewers: {why}")
                    for name in ("elog-stream", "relay"):
                        progress.step(f"{viewers:,} idle viewers: {name}")
                        memory.append(await self.idle(name, viewers, why))
                if "elogshow" in plan.phases:
                    progress.step("elogshow: draw, encode, Redis")
                    show = await asyncio.to_thread(
                        elogshow_costs, self.redis_url, plan.show_repeats
                    )
        results: dict[str, Any] = {
            "latency": self.rows,
            "rate": ladders,
            "memory": memory,
            "elogshow": show,
            "visdom_status": self.visdom_status,
            "not_measured": self.not_measured,
        }
        results["ratios"] = report.ratios(self.rows)
        results["targets"] = report.targets(results)
        return results


def write(out: Path, results: dict[str, Any], samples: dict[str, list[float]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "latencies.json").write_text(json.dumps(samples) + "\n")
    (out / "results.md").write_text(render.markdown(results))
    if samples:
        render.cdf_plot(samples, out / "latency-cdf.png")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    plan, args = parse(argv)
    raise_fd_limit()  # before any process starts: children inherit it
    meta = _meta(plan, argv)
    harness = Harness(plan, args.visdom_python)
    results = asyncio.run(harness.run())
    meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results = {"meta": meta, **results}
    stamp = meta["date"].replace(":", "")
    out = args.out or Path(__file__).parent / "results" / stamp
    write(out, results, harness.samples)
    print(f"results in {out}/results.md", file=sys.stderr)


if __name__ == "__main__":
    main()
