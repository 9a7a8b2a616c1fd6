"""The measurements, each on one target with the clients of a ``ClientPool``.

- ``fanout_row``: N viewers connect and warm up; ``frames`` images published at ``rate``
  (latency of every delivery, and to the last of the N for each image); then a burst published
  back to back (fan-out MB/s: image bytes delivered / time from the first publish to the last
  arrival).
- ``poll_row``: pollers that GET the image once a second; latency until each sees a new image.
- ``rate_ladder``: the rate stepped up until the median latency exceeds twice the lowest rate's.
- ``idle_memory``: the server's RSS growth per idle viewer.

Latency is from the start of the publish call to the arrival of the image's last byte at a
client. Images replaced before a client could receive them (latest wins, or ``broadcast``
skipping a full buffer) are not deliveries: ``delivered`` counts what arrived.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psutil

from .clients import ClientPool
from .frames import ID_AT, frame_bytes
from .report import percentiles
from .targets import Target

WARM_UP_TIMEOUT = 60.0
DELIVERY_TIMEOUT = 30.0  # for the last image of a run to reach every client
POLL_SPACING = 1.37  # seconds between publishes read by 1 Hz pollers: no phase lock
IDLE_TIMEOUT = 300.0
FLAT_DELIVERED = 0.9  # of the images published, for a rate to count as flat
PUBLISHER_KEEPS_UP = 0.9  # of the rate asked for


class RowFailed(RuntimeError):
    """A measurement could not be made (clients could not connect, nothing arrived)."""


@dataclass
class Ids:
    """Frame ids, unique for the whole run, so a late frame never passes for a new one."""

    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def frames(self, size: int, count: int) -> list[tuple[int, bytes]]:
        """``count`` new images of ``size`` bytes with their ids, made before any timing."""
        body = bytearray(frame_bytes(size, 0))
        made = []
        for _ in range(count):
            ident = next(self.counter)
            body[ID_AT] = ident.to_bytes(8, "big")
            made.append((ident, bytes(body)))
        return made


@dataclass
class Run:
    """What one publishing run sent and what its clients received."""

    sent: dict[int, float]  # frame id -> perf_counter() before its publish call
    arrivals: list[tuple[int, float]]
    clients: int
    publish_elapsed: float
    complete: bool  # the last image reached every client

    def latencies_ms(self) -> list[float]:
        sent = self.sent
        return [(t - sent[i]) * 1000 for i, t in self.arrivals if i in sent]

    def last_of_n_ms(self) -> list[float]:
        """For each image that reached every client, the latency to the last of them."""
        by_frame: dict[int, list[float]] = defaultdict(list)
        for ident, arrived in self.arrivals:
            if ident in self.sent:
                by_frame[ident].append(arrived)
        return [
            (max(times) - self.sent[ident]) * 1000
            for ident, times in by_frame.items()
            if len(times) >= self.clients
        ]

    def summary(self) -> dict[str, Any]:
        latencies = self.latencies_ms()
        if not latencies:
            raise RowFailed("no image arrived at any client")
        last = self.last_of_n_ms()
        return {
            "frames": len(self.sent),
            "delivered": len(latencies),
            "expected": len(self.sent) * self.clients,
            **percentiles(latencies),
            "last_of_n_p50_ms": percentiles(last)["p50_ms"] if last else None,
            "last_of_n_p99_ms": percentiles(last)["p99_ms"] if last else None,
            "complete": self.complete,
        }


async def publish_run(
    pool: ClientPool, target: Target, frames: list[tuple[int, bytes]], rate: float | None
) -> Run:
    """Publish ``frames`` at ``rate`` per second (None: back to back) and collect arrivals."""
    sent: dict[int, float] = {}
    started = time.perf_counter()
    for index, (ident, data) in enumerate(frames):
        if rate:
            await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
        before = time.perf_counter()
        await target.publish(data, ident)
        sent[ident] = before
    publish_elapsed = time.perf_counter() - started
    complete = await pool.wait_seen(frames[-1][0], pool.count, DELIVERY_TIMEOUT)
    return Run(sent, await pool.take(), pool.count, publish_elapsed, complete)


async def warm_up(pool: ClientPool, target: Target, size: int, ids: Ids) -> None:
    """Publish until every client has received an image: all are connected and listening."""
    end = time.monotonic() + WARM_UP_TIMEOUT
    while True:
        ((ident, data),) = ids.frames(size, 1)
        await target.publish(data, ident)
        if await pool.wait_seen(ident, pool.count, 2.0):
            await pool.take()
            return
        if time.monotonic() > end:
            raise RowFailed(f"not every client received an image within {WARM_UP_TIMEOUT} s")


async def _open(pool: ClientPool, kind: str, url: str, count: int) -> None:
    failures = await pool.open(kind, url, count)
    if failures:
        await pool.close()
        raise RowFailed(f"{len(failures)} of {count} clients did not connect: {failures[0]}")


@dataclass
class Cpu:
    """CPU seconds of the server, the clients and the whole machine over a window."""

    processes: dict[str, list[psutil.Process]]
    began: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0

    @staticmethod
    def _used(group: list[psutil.Process]) -> float:
        total = 0.0
        for process in group:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        return total

    @staticmethod
    def _machine() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def start(self) -> None:
        self.began = {name: self._used(group) for name, group in self.processes.items()}
        self.began["machine"] = self._machine()
        self.wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        used = {name: self._used(g) - self.began[name] for name, g in self.processes.items()}
        machine = self._machine() - self.began["machine"]
        cores = os.cpu_count() or 1
        return {
            **{f"{name}_cpu_s": round(seconds, 2) for name, seconds in used.items()},
            "machine_busy_pct": round(100 * machine / (wall * cores), 1),
        }


async def fanout_row(
    pool: ClientPool,
    target: Target,
    viewers: int,
    size: int,
    ids: Ids,
    frames: int,
    rate: float,
    burst_bytes: int,
    cpu: Cpu,
) -> tuple[dict[str, Any], list[float]]:
    """Latency at ``rate`` and fan-out in a burst, with ``viewers`` clients of ``target``.

    Returns the row and its raw latencies (ms).
    """
    await _open(pool, target.kind, target.url, viewers)
    try:
        await warm_up(pool, target, size, ids)
        cpu.start()
        paced = await publish_run(pool, target, ids.frames(size, frames), rate)
        row = {"rate_hz": rate, **paced.summary(), **cpu.stop()}
        burst = max(3, min(frames, burst_bytes // (size * viewers)))
        fast = await publish_run(pool, target, ids.frames(size, burst), None)
        arrived = [t for i, t in fast.arrivals if i in fast.sent]
        if arrived:
            elapsed = max(arrived) - min(fast.sent.values())
            row["fanout_MB_per_s"] = round(len(arrived) * size / elapsed / 1e6, 1)
            row["burst_delivered_pct"] = round(100 * len(arrived) / (burst * viewers), 1)
        return row, paced.latencies_ms()
    finally:
        await pool.close()


async def poll_row(
    pool: ClientPool, target: Target, pollers: int, size: int, ids: Ids, frames: int
) -> tuple[dict[str, Any], list[float]]:
    """Baseline (b): ``pollers`` clients GET the image once a second."""
    await _open(pool, "poll", target.url, pollers)
    try:
        run = await publish_run(pool, target, ids.frames(size, frames), 1 / POLL_SPACING)
        return {"rate_hz": round(1 / POLL_SPACING, 2), **run.summary()}, run.latencies_ms()
    finally:
        await pool.close()


async def rate_ladder(
    pool: ClientPool,
    target: Target,
    viewers: int,
    size: int,
    ids: Ids,
    rates: list[float],
    seconds: float,
) -> dict[str, Any]:
    """Step the per-topic rate up while latency stays flat.

    Flat: the median latency at most twice the first rate's, and at least ``FLAT_DELIVERED``
    of the images delivered (latest wins would otherwise hide the queueing by dropping them).
    The ladder also stops when the publisher cannot keep up with the rate asked for.
    """
    await _open(pool, target.kind, target.url, viewers)
    steps: list[dict[str, Any]] = []
    stopped_by = ""
    try:
        await warm_up(pool, target, size, ids)
        for rate in rates:
            count = max(10, int(rate * seconds))
            run = await publish_run(pool, target, ids.frames(size, count), rate)
            summary = run.summary()
            step = {
                "rate_hz": rate,
                "published_hz": round(count / run.publish_elapsed, 1),
                "p50_ms": summary["p50_ms"],
                "p99_ms": summary["p99_ms"],
                "delivered_pct": round(100 * summary["delivered"] / summary["expected"], 1),
            }
            steps.append(step)
            if step["p50_ms"] > 2 * steps[0]["p50_ms"]:
                stopped_by = "latency"
            elif step["delivered_pct"] < 100 * FLAT_DELIVERED:
                stopped_by = "images dropped"
            elif step["published_hz"] < PUBLISHER_KEEPS_UP * rate:
                stopped_by = "publisher"
                step["flat"] = True  # flat as far as it got: the publisher is the limit
            step.setdefault("flat", not stopped_by)
            if stopped_by:
                break
    finally:
        await pool.close()
    flat = [s["rate_hz"] for s in steps if s["flat"]]
    return {
        "target": target.name,
        "viewers": viewers,
        "size_bytes": size,
        "steps": steps,
        "highest_flat_rate_hz": max(flat) if flat else None,
        "stopped_by": stopped_by or "the highest rate tried",
    }


async def _wait_viewers(target: Target, count: int) -> int:
    end = time.monotonic() + IDLE_TIMEOUT
    while (seen := await target.viewers()) != count and time.monotonic() < end:
        await asyncio.sleep(0.1)
    return seen


async def idle_memory(pool: ClientPool, target: Target, viewers: int) -> dict[str, Any]:
    """The server's RSS growth per idle viewer, with ``viewers`` connected."""
    server = psutil.Process(target.pid)
    await _wait_viewers(target, 0)
    before = server.memory_info().rss
    await _open(pool, "idle", target.idle_url, viewers)
    try:
        counted = await _wait_viewers(target, viewers)
        after = server.memory_info().rss
    finally:
        await pool.close()
    return {
        "target": target.name,
        "viewers": viewers,
        "counted_by_server": counted,
        "rss_before_MB": round(before / 1e6, 1),
        "rss_after_MB": round(after / 1e6, 1),
        "per_viewer_KB": round((after - before) / viewers / 1024, 1),
    }
