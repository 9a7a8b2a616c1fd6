"""Publish → WebSocket latency and fan-out throughput, on real processes.

Starts a private Redis-compatible server and ``elog-stream serve`` in a subprocess, connects
``--viewers`` WebSocket clients, publishes ``--images`` images of ``--size`` bytes every
``--interval`` seconds, and reports how long each took from the start of ``publish()`` to its
arrival at each viewer. Example:

    python benchmarks/fanout.py --viewers 10 --images 200 --size 100000 --interval 0.02

``--replicas N`` starts N services on the same Redis and spreads the viewers over them
round-robin; ``--cluster`` runs on a private 3-master Redis Cluster instead, replica i given
node i's URL. The report adds the CPU seconds each process used while publishing and
delivering (the service replicas, the Redis server(s), this process with its viewers, and the
whole machine), and with several replicas the latency at each:

    python benchmarks/fanout.py --viewers 60 --interval 0.05 --replicas 3 --cluster
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import httpx
import psutil
from websockets.asyncio.client import ClientConnection, connect

from elog_stream import AsyncPublisher
from elog_stream.embedded import EmbeddedCluster, EmbeddedRedis, free_port

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOPIC = "bench/plot"
READY_TIMEOUT = 30.0
DELIVERY_TIMEOUT = 10.0  # after the last publish; a frame replaced before it was sent never comes


def fake_png(size: int, index: int) -> bytes:
    # Passes the magic-byte check; the rest is incompressible, like a real PNG.
    return PNG_SIGNATURE + index.to_bytes(8, "big") + os.urandom(max(size - 16, 0))


async def viewer(ws: ClientConnection, arrivals: dict[int, float], expected: int) -> None:
    header: dict | None = None
    while len(arrivals) < expected:
        frame = await ws.recv()
        if isinstance(frame, str):
            message = json.loads(frame)
            # seq counts per topic: the warm-up image's must not pass for the first image's
            header = message if message["type"] == "image" and message["topic"] == TOPIC else None
        elif header is not None:
            arrivals[header["seq"]] = time.perf_counter()
            header = None


@contextlib.contextmanager
def redis_servers(cluster: bool) -> Iterator[tuple[list[str], list[int]]]:
    """The URLs to give the replicas (one per node) and the server pids."""
    if cluster:
        with EmbeddedCluster(masters=3) as nodes:
            yield nodes.urls, [node.pid for node in nodes.nodes if node.pid is not None]
    else:
        with EmbeddedRedis() as server:
            assert server.pid is not None
            yield [server.url], [server.pid]


@contextlib.contextmanager
def services(redis_urls: Sequence[str], count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(count):
            port = free_port()
            env = {**os.environ, "ELOG_REDIS_URL": redis_urls[index % len(redis_urls)]}
            process = subprocess.Popen(
                [sys.executable, "-m", "elog_stream", "serve", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            process.port = port  # type: ignore[attr-defined]
            started.append(process)
        yield started
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(10)


async def wait_ready(ports: Sequence[int]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    async with httpx.AsyncClient() as http:
        for port in ports:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service on port {port} was not ready in time")
                await asyncio.sleep(0.02)


async def run(args: argparse.Namespace) -> dict[str, object]:
    with (
        redis_servers(args.cluster) as (redis_urls, redis_pids),
        services(redis_urls, args.replicas) as replicas,
    ):
        ports = [process.port for process in replicas]  # type: ignore[attr-defined]
        await wait_ready(ports)
        processes = {
            "service": [psutil.Process(process.pid) for process in replicas],
            "redis": [psutil.Process(pid) for pid in redis_pids],
            "bench": [psutil.Process()],
        }
        ws_urls = [f"ws://127.0.0.1:{port}/ws" for port in ports]
        return await measure(args, ws_urls, redis_urls[0], processes)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def percentiles(latencies: list[float]) -> dict[str, float]:
    quantiles = statistics.quantiles(latencies, n=100)
    return {f"p{p}_ms": round(quantiles[p - 1], 2) for p in (50, 90, 95, 99)}


async def measure(
    args: argparse.Namespace,
    ws_urls: Sequence[str],
    redis_url: str,
    processes: dict[str, list[psutil.Process]],
) -> dict[str, object]:
    images = [fake_png(args.size, i) for i in range(args.images)]
    sockets = [
        await connect(ws_urls[i % len(ws_urls)], max_size=None, compression=None)
        for i in range(args.viewers)
    ]
    arrivals: list[dict[int, float]] = [{} for _ in sockets]
    sent: dict[int, float] = {}
    readers = [
        asyncio.create_task(viewer(ws, seen, args.images))
        for ws, seen in zip(sockets, arrivals, strict=True)
    ]
    async with AsyncPublisher(redis_url) as publisher:
        await publisher.publish("bench/warmup", "bench", images[0])
        cpu_before = {name: [cpu_seconds(p) for p in group] for name, group in processes.items()}
        machine_before = machine_busy_seconds()
        started = time.perf_counter()  # the CPU window starts here too
        for image in images:
            before = time.perf_counter()
            seq = await publisher.publish(TOPIC, "bench", image)
            sent[seq] = before
            await asyncio.sleep(args.interval)
        done, pending = await asyncio.wait(readers, timeout=DELIVERY_TIMEOUT)
        machine = machine_busy_seconds() - machine_before
        window = time.perf_counter() - started
        cpu = {
            name: [
                round(cpu_seconds(p) - b, 2) for p, b in zip(group, cpu_before[name], strict=True)
            ]
            for name, group in processes.items()
        }
    for task in pending:
        task.cancel()
    for ws in sockets:
        await ws.close()
    per_viewer = [
        [(arrived - sent[seq]) * 1000 for seq, arrived in seen.items() if seq in sent]
        for seen in arrivals
    ]
    latencies = [latency for viewer_latencies in per_viewer for latency in viewer_latencies]
    # Until the last arrival, not the end of the wait for frames that were superseded.
    elapsed = max(max(seen.values(), default=started) for seen in arrivals) - started
    delivered = len(latencies)
    overall = percentiles(latencies)
    result: dict[str, object] = {
        "viewers": args.viewers,
        "images": args.images,
        "size_bytes": args.size,
        "delivered": delivered,
        "expected": args.viewers * args.images,
        "p50_ms": overall["p50_ms"],
        "p95_ms": overall["p95_ms"],
        "p99_ms": overall["p99_ms"],
        "max_ms": round(max(latencies), 2),
        "fanout_MB_per_s": round(delivered * args.size / elapsed / 1e6, 1),
        "p90_ms": overall["p90_ms"],
        "replicas": args.replicas,
        "redis": "cluster of 3 masters" if args.cluster else "single",
        "elapsed_s": round(elapsed, 2),
        "cpu_window_s": round(window, 2),
        "cpu_s": {
            "service": cpu["service"],
            "redis": cpu["redis"],
            "bench": cpu["bench"][0],
            "machine": round(machine, 2),
        },
    }
    if args.replicas > 1:
        result["per_replica"] = [
            {
                "delivered": len(mine),
                **percentiles(mine),
                "cpu_s": cpu["service"][index],
            }
            for index in range(args.replicas)
            for mine in [[x for v in per_viewer[index :: args.replicas] for x in v]]
        ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=100_000, help="image size in bytes")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between publishes")
    parser.add_argument(
        "--replicas", type=int, default=1, help="service processes; viewers spread round-robin"
    )
    parser.add_argument(
        "--cluster", action="store_true", help="a private 3-master Redis Cluster, not one server"
    )
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
