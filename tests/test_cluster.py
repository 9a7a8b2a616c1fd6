"""Everything on a real 3-master Redis Cluster, given the URL of any one node."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
import redis.exceptions
from support import Replica, cli_args, png, receive, receive_image, replicas, wait_for
from websockets.asyncio.client import ClientConnection, connect

from elog_stream import AsyncPublisher, Publisher
from elog_stream.cli import main
from elog_stream.config import Settings
from elog_stream.embedded import EmbeddedCluster
from elog_stream.errors import RedisRefusedError, RedisUnavailableError, redis_errors

FAST = {"ELOG_RECONCILE_INTERVAL": "1", "ELOG_KEEPALIVE_INTERVAL": "0.5"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(masters=3) as running:
        yield running


@pytest.fixture
def on_cluster(cluster: EmbeddedCluster, prefix: str) -> Settings:
    return Settings(redis_url=cluster.urls[0], prefix=prefix)


def node_of(cluster: EmbeddedCluster, key: str) -> int:
    """The index of the master that serves ``key``."""
    slot = redis.cluster.key_slot(key.encode())
    with redis.Redis(port=cluster.nodes[0].port) as client:
        for first, last, (_, port, *_), *_ in client.execute_command("CLUSTER SLOTS"):
            if first <= slot <= last:
                return [node.port for node in cluster.nodes].index(int(port))
    raise AssertionError(f"no master serves slot {slot}")


def topics_of(replica: Replica) -> set[str]:
    answer = httpx.get(replica.url + "api/topics", timeout=5)
    return {t["topic"] for t in answer.json()} if answer.status_code == 200 else set()


async def collect(ws: ClientConnection, topics: set[str]) -> set[str]:
    seen: set[str] = set()
    async with asyncio.timeout(30):
        while not topics <= seen:
            header, _ = await receive_image(ws, deadline=30)
            seen.add(header["topic"])
    return seen


async def test_publishes_over_every_slot_reach_viewers_on_two_replicas(
    cluster: EmbeddedCluster, on_cluster: Settings
) -> None:
    topics = {f"many/{i}" for i in range(200)}
    masters = {node_of(cluster, on_cluster.keys.topic(t)) for t in topics}
    assert masters == {0, 1, 2}  # the topics are spread over every master
    urls = cluster.urls
    with replicas([urls[1], urls[2]], on_cluster.prefix, **FAST) as group:
        async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient() as http:
            viewers = [await stack.enter_async_context(connect(r.ws_url)) for r in group]
            for ws in viewers:
                await receive(ws, "sync")
            with Publisher(urls[0], prefix=on_cluster.prefix) as publisher:
                for topic in sorted(topics):
                    assert publisher.publish(topic, "e", png()) == 1
            over_http = {f"http/{i}" for i in range(20)}
            for i, topic in enumerate(sorted(over_http)):
                answer = await http.post(
                    group[i % 2].url + f"api/topics/{topic}?experiment=e", content=png(topic)
                )
                assert answer.status_code == 201, answer.text
            async with AsyncPublisher(urls[2], prefix=on_cluster.prefix) as async_publisher:
                assert await async_publisher.publish("async/one", "e", png("async")) == 1
            everything = topics | over_http | {"async/one"}
            for ws in viewers:
                assert everything <= await collect(ws, everything)
        for replica in group:
            assert topics_of(replica) == everything
            answer = httpx.get(replica.url + "api/topics/http/3/image")
            assert answer.content == png("http/3")


def write_unannounced(client: redis.cluster.RedisCluster, settings: Settings, topic: str) -> None:
    """A topic hash as the publish script would write it, but no notification."""
    data = png(topic)
    client.hset(
        settings.keys.topic(topic),
        mapping={
            "experiment": "e",
            "description": "",
            "pngimage": data,
            "content_type": "image/png",
            "updated_at": f"{time.time():.6f}",
            "digest": hashlib.sha256(data).hexdigest(),
            "seq": 1,
        },
    )
    client.expire(settings.keys.topic(topic), 600)


async def test_reconciliation_finds_unannounced_topics_on_every_master(
    cluster: EmbeddedCluster, on_cluster: Settings
) -> None:
    quiet = {f"quiet/{i}" for i in range(30)}
    assert {node_of(cluster, on_cluster.keys.topic(t)) for t in quiet} == {0, 1, 2}
    with replicas([cluster.urls[1]], on_cluster.prefix, **FAST) as (replica,):
        with Publisher(cluster.urls[0], prefix=on_cluster.prefix) as publisher:
            client = publisher.redis
            assert isinstance(client, redis.cluster.RedisCluster)
            for topic in quiet:
                write_unannounced(client, on_cluster, topic)
            wait_for(lambda: topics_of(replica) == quiet, "the reconciliation to find them all")
            # and a topic deleted without a notification disappears
            client.delete(on_cluster.keys.topic("quiet/7"))
            wait_for(lambda: "quiet/7" not in topics_of(replica), "quiet/7 to be gone")


async def test_the_feed_recovers_when_its_subscription_is_killed(
    cluster: EmbeddedCluster, on_cluster: Settings
) -> None:
    with replicas([cluster.urls[0]], on_cluster.prefix, **FAST) as (replica,):
        stats = httpx.get(replica.url + "api/stats").json()
        reconnects = stats["redis_reconnects"]
        async with connect(replica.ws_url) as ws:
            await receive(ws, "sync")
            for _ in range(2):  # twice: the second subscription is on another node
                killed = 0
                for node in cluster.nodes:
                    with redis.Redis(port=node.port) as client:
                        killed += int(client.execute_command("CLIENT KILL TYPE pubsub"))
                assert killed >= 1
                wait_for(
                    lambda r=reconnects: (
                        httpx.get(replica.url + "api/stats").json()["redis_reconnects"] > r
                    ),
                    "the feed to notice",
                )
                reconnects += 1
                wait_for(
                    lambda: httpx.get(replica.url + "healthz").status_code == 200,
                    "the feed to be healthy again",
                )
            with Publisher(cluster.urls[2], prefix=on_cluster.prefix) as publisher:
                publisher.publish("after/kill", "e", png("after"))
            header, data = await receive_image(ws, "after/kill")
            assert data == png("after")


def test_the_cli_works_on_a_cluster(
    cluster: EmbeddedCluster, on_cluster: Settings, tmp_path, capsys
) -> None:
    source = tmp_path / "plot.png"
    source.write_bytes(png("cli"))
    for i in range(6):
        argv = ["publish", str(source), "--topic", f"cli/{i}", "--experiment", "x"]
        assert main(cli_args(on_cluster, *argv)) == 0
    capsys.readouterr()
    node = on_cluster.replace(redis_url=cluster.urls[2])
    assert main(cli_args(node, "topics", "--json")) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["topic"] for t in listed] == [f"cli/{i}" for i in range(6)]
    output = tmp_path / "out.png"
    assert main(cli_args(node, "grab", "cli/4", "-o", str(output))) == 0
    assert output.read_bytes() == png("cli")


def test_cluster_errors_are_translated() -> None:
    url = "redis://node:7000/0"
    with pytest.raises(RedisUnavailableError), redis_errors(url):
        raise redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down")
    with pytest.raises(RedisUnavailableError), redis_errors(url, write=True):
        raise redis.exceptions.MasterDownError("MASTERDOWN Link with MASTER is down")
    with pytest.raises(RedisUnavailableError), redis_errors(url):
        raise redis.exceptions.SlotNotCoveredError("slot 42 is not covered")
    with pytest.raises(RedisUnavailableError), redis_errors(url):
        raise redis.exceptions.RedisClusterException("Redis Cluster cannot be connected")
    with pytest.raises(RedisRefusedError), redis_errors(url):
        raise redis.exceptions.TryAgainError("TRYAGAIN")
