"""Publish → viewer latency with viewers spread over service replicas, on Redis or a Cluster.

The harness (``python -m benchmarks.harness``) measures one service against its baselines; this
measures ``--replicas`` services on one Redis, or with ``--cluster`` on a private 3-master
Redis Cluster (replica i given node i's URL, the publisher node 0's). The viewers are spread
round-robin over the replicas, each replica's in its own client processes; the same pieces as
the harness (benchmarks/targets.py, clients.py, phases.py). Reported: latency overall and at
each replica, and the CPU seconds of the services, Redis, the clients and the machine while
publishing and delivering. Example:

    PYTHONPATH=. python -m benchmarks.fanout --viewers 60 --images 200 --size 100000 \\
        --interval 0.05 --replicas 3 --cluster
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import psutil

from elog_stream.embedded import EmbeddedCluster, EmbeddedRedis

from .clients import ClientPool
from .frames import raise_fd_limit
from .phases import DELIVERY_TIMEOUT, Cpu, Ids, Run
from .report import percentiles
from .targets import Target, elog_service


@contextlib.contextmanager
def redis_servers(cluster: bool) -> Iterator[tuple[list[str], list[int]]]:
    """The URLs to give the replicas (one per node) and the server pids."""
    if cluster:
        with EmbeddedCluster(masters=3) as nodes:
            yield nodes.urls, [node.pid for node in nodes.nodes if node.pid is not None]
    else:
        with EmbeddedRedis() as server:
            yield [server.url], [server.pid] if server.pid is not None else []


async def measure(
    args: argparse.Namespace, replicas: list[Target], pools: list[ClientPool], cpu: Cpu
) -> dict[str, Any]:
    for index, (replica, pool) in enumerate(zip(replicas, pools, strict=True)):
        count = args.viewers // len(replicas) + (index < args.viewers % len(replicas))
        failed = await pool.open("elog", replica.url, count)
        if failed:
            raise RuntimeError(f"{len(failed)} viewers did not connect: {failed[0]}")
    ids = Ids()
    publish = replicas[0].publish
    for ident, data in ids.frames(args.size, 1):  # every viewer connected and listening
        await publish(data, ident)
        for pool in pools:
            if not await pool.wait_seen(ident, pool.count, 60):
                raise RuntimeError("the viewers did not receive the first image in 60 s")
            await pool.take()
    frames = ids.frames(args.size, args.images)
    cpu.start()
    sent: dict[int, float] = {}
    started = time.perf_counter()
    for ident, data in frames:
        sent[ident] = time.perf_counter()
        await publish(data, ident)
        await asyncio.sleep(args.interval)
    elapsed = time.perf_counter() - started
    runs = []
    for pool in pools:
        complete = await pool.wait_seen(frames[-1][0], pool.count, DELIVERY_TIMEOUT)
        runs.append(Run(sent, await pool.take(), pool.count, elapsed, complete))
    used = cpu.stop()
    latencies = [x for run in runs for x in run.latencies_ms()]
    last = max(t for run in runs for i, t in run.arrivals if i in sent)
    return {
        "viewers": args.viewers,
        "images": args.images,
        "size_bytes": args.size,
        "replicas": args.replicas,
        "redis": "cluster of 3 masters" if args.cluster else "single",
        "delivered": len(latencies),
        "expected": args.viewers * args.images,
        **percentiles(latencies),
        "fanout_MB_per_s": round(len(latencies) * args.size / (last - started) / 1e6, 1),
        "cpu": used,
        "per_replica": [run.summary() for run in runs] if args.replicas > 1 else None,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with redis_servers(args.cluster) as (urls, redis_pids):
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.TaskGroup() as group:
                started = [
                    group.create_task(
                        stack.enter_async_context(elog_service(urls[index % len(urls)]))
                    )
                    for index in range(args.replicas)
                ]
            replicas = [task.result()[0] for task in started]
            workers = max(1, args.workers // args.replicas)
            pools = [
                await stack.enter_async_context(ClientPool(workers)) for _ in range(args.replicas)
            ]
            cpu = Cpu(
                {
                    "service": [psutil.Process(replica.pid) for replica in replicas],
                    "redis": [psutil.Process(pid) for pid in redis_pids],
                    "clients": [psutil.Process(pid) for pool in pools for pid in pool.pids],
                }
            )
            return await measure(args, replicas, pools, cpu)


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
    parser.add_argument("--workers", type=int, default=3, help="client processes in all")
    args = parser.parse_args()
    if args.replicas < 1 or args.viewers < args.replicas or args.size < 16:
        parser.error("need --replicas ≥ 1, at least one viewer per replica, --size ≥ 16")
    raise_fd_limit()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
