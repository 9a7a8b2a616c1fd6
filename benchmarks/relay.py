"""Baseline (a): the bare relay, what plain Python with ``websockets`` does at best.

It follows the same Redis notifications as the service (``{prefix}updates``), reads the
announced topic's image with one ``HGET`` and hands the bytes to every connected client with
``websockets.asyncio.server.broadcast`` (one binary frame; no header, no filter, no
latest-wins mailbox: ``broadcast`` skips a client whose write buffer is full). ``GET /stats``
answers ``{"viewers": N}``. Run by the harness as:

    python -m benchmarks.relay --port 8765 --redis-url redis://... --prefix relay:
"""

from __future__ import annotations

import argparse
import asyncio
import json
from http import HTTPStatus

import redis.asyncio as redis
from websockets.asyncio.server import Request, Response, ServerConnection, broadcast, serve

from elog_stream.protocol import Keys

from .frames import raise_fd_limit

IMAGE_FIELD = "pngimage"


async def relay(port: int, redis_url: str, prefix: str) -> None:
    keys = Keys(prefix)
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    def stats(ws: ServerConnection, request: Request) -> Response | None:
        if request.path != "/stats":
            return None
        return ws.respond(HTTPStatus.OK, json.dumps({"viewers": len(clients)}) + "\n")

    client = redis.Redis.from_url(redis_url)
    async with (
        client,
        client.pubsub() as pubsub,
        serve(handler, "127.0.0.1", port, compression=None, process_request=stats, max_size=65536),
    ):
        await pubsub.subscribe(keys.channel)
        print(f"relay listening on {port}", flush=True)
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            topic = json.loads(message["data"]).get("topic")
            if not isinstance(topic, str):
                continue  # a keepalive
            data = await client.hget(keys.topic(topic), IMAGE_FIELD)
            if data is not None:
                broadcast(clients, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", default="relay:")
    args = parser.parse_args()
    raise_fd_limit()
    asyncio.run(relay(args.port, args.redis_url, args.prefix))


if __name__ == "__main__":
    main()
