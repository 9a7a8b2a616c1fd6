"""One Redis server or a Redis Cluster, detected from the URL of any node; no setting says which.

``open_async``/``open_sync`` ask the node at the URL ``INFO cluster``: ``cluster_enabled:1``
gives a redis-py cluster client (commands routed by slot, MOVED/ASK followed), anything else
(also a server whose ACL refuses ``INFO``) a plain client. Retries stay off either way: the
cluster client's retry object makes one attempt, so a connection error surfaces at once.
``checkout``/``checkout_sync`` give the connection to the node that serves a key, connected
but with nothing sent, which is how a publish tells "not sent" from "sent, no answer".
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.retry
from redis.backoff import NoBackoff
from redis.exceptions import AskError, MovedError, ResponseError

from .config import redis_client_options

AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncConnection = redis.asyncio.connection.AbstractConnection
SyncConnection = redis.connection.AbstractConnection

# Redirections a publish follows (MOVED, ASK) before giving up: none of them ran the script.
MAX_REDIRECTS = 5
# Cluster clients that could not connect to a node: the next publish re-reads the slot layout
# first (after a failover the slot has a new master), as redis-py does for its own commands.
_stale: weakref.WeakSet[Any] = weakref.WeakSet()


def plain_async(url: str, timeout: float) -> redis.asyncio.Redis:
    """A client for one server; connects on first use."""
    return redis.asyncio.Redis.from_url(url, **redis_client_options(timeout))


async def open_async(plain: redis.asyncio.Redis, url: str, timeout: float) -> AsyncClient:
    """``plain`` (a client for ``url``) or, when ``url`` is a cluster node, a cluster client.

    ``plain`` stays the caller's to close unless it is replaced. Raises redis-py errors when
    the node cannot be reached.
    """
    try:
        clustered = _cluster_enabled(await plain.info("cluster"))
    except ResponseError:  # INFO refused (ACL) or unknown: a plain server as far as we can tell
        clustered = False
    if not clustered:
        return plain
    options = {**redis_client_options(timeout), "retry": redis.asyncio.retry.Retry(NoBackoff(), 0)}
    client = redis.asyncio.cluster.RedisCluster.from_url(url, **options)
    try:
        await client.initialize()
    except BaseException:
        await client.aclose()
        raise
    await plain.aclose()
    return client


def plain_sync(url: str, timeout: float) -> redis.Redis:
    """The blocking twin of ``plain_async``."""
    return redis.Redis.from_url(url, **redis_client_options(timeout))


def open_sync(plain: redis.Redis, url: str, timeout: float) -> SyncClient:
    """The blocking twin of ``open_async``."""
    try:
        clustered = _cluster_enabled(plain.info("cluster"))
    except ResponseError:
        clustered = False
    if not clustered:
        return plain
    options = {**redis_client_options(timeout), "retry": redis.retry.Retry(NoBackoff(), 0)}
    client = redis.cluster.RedisCluster.from_url(url, **options)
    plain.close()
    return client


def _cluster_enabled(info: Any) -> bool:
    return isinstance(info, dict) and str(info.get("cluster_enabled", "0")) == "1"


class Redirect:
    """Where a MOVED or ASK reply sends a command that was therefore not run."""

    def __init__(self, error: AskError) -> None:
        self.host = str(error.host)
        self.port = int(error.port)
        self.asking = not isinstance(error, MovedError)


@contextlib.asynccontextmanager
async def checkout(
    client: AsyncClient, key: str, redirect: Redirect | None = None
) -> AsyncIterator[AsyncConnection]:
    """A connected connection to the node serving ``key`` (or ``redirect``'s node), released
    on exit. Raises redis-py errors, before anything is sent, when it cannot connect."""
    if isinstance(client, redis.asyncio.Redis):
        pool = client.connection_pool
        connection = await pool.get_connection()
        try:
            yield connection
        finally:
            await pool.release(connection)  # redis-py has disconnected it on any error
        return
    if client in _stale or (redirect is not None and not redirect.asking):
        _stale.discard(client)
        await client.nodes_manager.initialize()  # a node failed, or the slot moved
    node = _cluster_node(client, key, redirect)
    connection = node.acquire_connection()
    try:
        try:
            await connection.connect()
        except redis.exceptions.RedisError:
            _stale.add(client)
            raise
        if redirect is not None and redirect.asking:
            await connection.send_command("ASKING")
            await connection.read_response()
        yield connection
    finally:
        node.release(connection)


@contextlib.contextmanager
def checkout_sync(
    client: SyncClient, key: str, redirect: Redirect | None = None
) -> Iterator[SyncConnection]:
    """The blocking twin of ``checkout``."""
    if isinstance(client, redis.cluster.RedisCluster):
        if client in _stale or (redirect is not None and not redirect.asking):
            _stale.discard(client)
            client.nodes_manager.initialize()
        node_client = client.get_redis_connection(_cluster_node(client, key, redirect))
    else:
        node_client = client
    pool = node_client.connection_pool
    try:
        connection = pool.get_connection()
    except redis.exceptions.RedisError:
        if isinstance(client, redis.cluster.RedisCluster):
            _stale.add(client)
        raise
    try:
        if redirect is not None and redirect.asking:
            connection.send_command("ASKING")
            connection.read_response()
        yield connection
    finally:
        pool.release(connection)


def _cluster_node(
    client: redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster,
    key: str,
    redirect: Redirect | None,
) -> Any:
    """The node of a cluster client (either kind) that serves ``key``, or ``redirect``'s node
    if it knows it. No I/O; raises ClusterDownError when no node serves the slot."""
    node = None if redirect is None else client.get_node(host=redirect.host, port=redirect.port)
    node = node or client.get_node_from_key(key)
    if node is None:
        raise redis.exceptions.ClusterDownError(f"no node serves the slot of {key}")
    return node


def subscription_nodes(client: AsyncClient, turn: int) -> list[Any]:
    """The cluster nodes a classic subscription may use, starting at the ``turn``-th, so that
    each resubscription tries another node first (a dead one is not tried first again)."""
    if not isinstance(client, redis.asyncio.cluster.RedisCluster):
        return []
    nodes = sorted(client.get_nodes(), key=lambda node: node.name)
    if not nodes:
        return []
    start = turn % len(nodes)
    return nodes[start:] + nodes[:start]
