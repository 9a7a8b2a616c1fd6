"""Notifications on a Redis Cluster: classic PUBLISH (broadcast) against sharded SPUBLISH.

Starts a private 3-master cluster. Each publish is a one-key script on the topic's master that
ends with the notification, as the real publish script does: classic ``PUBLISH elog:updates``
(the cluster bus copies it to every node; one subscription on any node sees all), or
``SPUBLISH`` on a per-slot channel in the topic's slot (it stays in the shard; a subscriber
needs one ``SSUBSCRIBE`` of all its slots' channels per shard). Reports the time to subscribe,
and the latency from the start of each publish to its arrival at the subscriber. Example:

    python benchmarks/cluster_pubsub.py --messages 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.cluster import key_slot

from elog_stream.embedded import EmbeddedCluster

SLOTS = 16384
SCRIPT = "redis.call(ARGV[3], ARGV[1], ARGV[2]) return 1"


def slot_tags() -> list[str]:
    """For every slot, a hash tag that maps to it."""
    tags: list[str | None] = [None] * SLOTS
    missing, i = SLOTS, 0
    while missing:
        slot = key_slot(f"{{{i}}}".encode())
        if tags[slot] is None:
            tags[slot] = str(i)
            missing -= 1
        i += 1
    return [tag for tag in tags if tag is not None]


def report(name: str, subscribe_s: float, latencies: list[float], elapsed: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[int(len(ms) * 0.99) - 1]
    print(
        f"{name:8} subscribe {subscribe_s * 1000:7.1f} ms | {len(ms)} notifications: "
        f"median {statistics.median(ms):.3f} ms, p99 {p99:.3f} ms, "
        f"{len(ms) / elapsed:,.0f}/s one at a time"
    )


async def measure(
    client: RedisCluster,
    messages: int,
    channel_of: Callable[[str], str],
    command: str,
    receive: Callable[[], Awaitable[bytes | None]],
) -> tuple[list[float], float]:
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def listen() -> None:
        while len(latencies) < messages:
            data = await receive()
            if data is not None:
                topic = json.loads(data)["topic"]
                latencies.append(time.perf_counter() - sent[topic])

    listener = asyncio.create_task(listen())
    start = time.perf_counter()
    for i in range(messages):
        topic = f"bench/{i}"
        key = f"elog:topic:{{{topic}}}"
        sent[topic] = time.perf_counter()
        note = json.dumps({"topic": topic})
        await client.eval(SCRIPT, 1, key, channel_of(topic), note, command)
    await asyncio.wait_for(listener, 30)
    return latencies, time.perf_counter() - start


async def main(messages: int) -> None:
    with EmbeddedCluster(masters=3) as cluster:
        client = RedisCluster.from_url(
            cluster.urls[0], retry=redis.asyncio.retry.Retry(NoBackoff(), 0)
        )
        await client.initialize()

        # Classic: one subscription on one node (not the first: the bus must carry it).
        begin = time.perf_counter()
        plain = redis.asyncio.Redis.from_url(cluster.urls[1])
        pubsub = plain.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe("elog:updates")
        subscribed = time.perf_counter() - begin

        async def classic() -> bytes | None:
            message = await pubsub.get_message(timeout=1.0)
            return None if message is None else message["data"]

        latencies, elapsed = await measure(
            client, messages, lambda _: "elog:updates", "PUBLISH", classic
        )
        report("classic", subscribed, latencies, elapsed)
        await pubsub.aclose()
        await plain.aclose()

        # Sharded: a channel per slot, SSUBSCRIBEd on the shard that serves it.
        tags = slot_tags()
        begin = time.perf_counter()
        sharded = client.pubsub(ignore_subscribe_messages=True)
        await sharded.ssubscribe(*(f"elog:updates:{{{tag}}}" for tag in tags))
        subscribed = time.perf_counter() - begin

        def channel(topic: str) -> str:
            return f"elog:updates:{{{tags[key_slot(topic.encode())]}}}"

        async def shard() -> bytes | None:
            message = await sharded.get_sharded_message(timeout=1.0)
            return None if message is None else message["data"]

        latencies, elapsed = await measure(client, messages, channel, "SPUBLISH", shard)
        report("sharded", subscribed, latencies, elapsed)
        await sharded.aclose()
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    asyncio.run(main(parser.parse_args().messages))
