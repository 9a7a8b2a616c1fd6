"""Publish → WebSocket latency and fan-out throughput, on real processes.

Starts a private Redis-compatible server and ``elog-stream serve`` in a subprocess, connects
``--viewers`` WebSocket clients, publishes ``--images`` images of ``--size`` bytes every
``--interval`` seconds, and reports how long each took from the start of ``publish()`` to its
arrival at each viewer. Example:

    python benchmarks/fanout.py --viewers 10 --images 200 --size 100000 --interval 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import httpx
from websockets.asyncio.client import ClientConnection, connect

from elog_stream import AsyncPublisher
from elog_stream.embedded import EmbeddedRedis, free_port

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_png(size: int, index: int) -> bytes:
    # Passes the magic-byte check; the rest is incompressible, like a real PNG.
    return PNG_SIGNATURE + index.to_bytes(8, "big") + os.urandom(max(size - 16, 0))


async def viewer(ws: ClientConnection, arrivals: dict[int, float], expected: int) -> None:
    header: dict | None = None
    while len(arrivals) < expected:
        frame = await ws.recv()
        if isinstance(frame, str):
            message = json.loads(frame)
            header = message if message["type"] == "image" else None
        elif header is not None:
            arrivals[header["seq"]] = time.perf_counter()
            header = None


async def run(args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    with EmbeddedRedis() as redis_server:
        env = {**os.environ, "ELOG_REDIS_URL": redis_server.url}
        service = subprocess.Popen(
            [sys.executable, "-m", "elog_stream", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}/"
            async with httpx.AsyncClient() as http:
                for _ in range(500):
                    try:
                        if (await http.get(base + "readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.02)
            return await measure(args, f"ws://127.0.0.1:{port}/ws", redis_server.url)
        finally:
            service.terminate()
            service.wait(10)


async def measure(args: argparse.Namespace, ws_url: str, redis_url: str) -> dict[str, float]:
    images = [fake_png(args.size, i) for i in range(args.images)]
    sockets = [await connect(ws_url, max_size=None, compression=None) for _ in range(args.viewers)]
    arrivals: list[dict[int, float]] = [{} for _ in sockets]
    sent: dict[int, float] = {}
    readers = [
        asyncio.create_task(viewer(ws, seen, args.images))
        for ws, seen in zip(sockets, arrivals, strict=True)
    ]
    async with AsyncPublisher(redis_url) as publisher:
        await publisher.publish("bench/warmup", "bench", images[0])
        started = time.perf_counter()
        for image in images:
            before = time.perf_counter()
            seq = await publisher.publish("bench/plot", "bench", image)
            sent[seq] = before
            await asyncio.sleep(args.interval)
        done, pending = await asyncio.wait(readers, timeout=30)
        elapsed = time.perf_counter() - started
    for task in pending:
        task.cancel()
    for ws in sockets:
        await ws.close()
    latencies = [
        (arrived - sent[seq]) * 1000
        for seen in arrivals
        for seq, arrived in seen.items()
        if seq in sent
    ]
    delivered = len(latencies)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "viewers": args.viewers,
        "images": args.images,
        "size_bytes": args.size,
        "delivered": delivered,
        "expected": args.viewers * args.images,
        "p50_ms": round(quantiles[49], 2),
        "p95_ms": round(quantiles[94], 2),
        "p99_ms": round(quantiles[98], 2),
        "max_ms": round(max(latencies), 2),
        "fanout_MB_per_s": round(delivered * args.size / elapsed / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=100_000, help="image size in bytes")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between publishes")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
