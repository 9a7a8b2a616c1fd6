"""The service's one owner of Redis: every read, write and subscription goes through here.

``TopicStore`` holds the redis.asyncio client, knows the key names, validates everything it
reads (``records``), and translates every redis-py error into the domain errors of
``errors.py``: RedisUnavailableError (503), RedisRefusedError (503), CorruptTopicError (409),
PublishOutcomeUnknownError (504). Data it refuses is counted by kind (``Stats.feed_error``)
and logged at most once per topic per minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, cast

import redis.asyncio
from redis.commands.core import AsyncScript
from redis.exceptions import AskError, NoScriptError

from .config import Settings, redact_url
from .connections import (
    MAX_REDIRECTS,
    AsyncClient,
    Redirect,
    checkout,
    open_async,
    plain_async,
    subscription_nodes,
)
from .errors import (
    CorruptTopicError,
    InvalidNameError,
    RedisRefusedError,
    RedisUnavailableError,
    redis_errors,
)
from .protocol import (
    FIELDS_BYTES,
    LEGACY_READ_SCRIPT,
    LEGACY_SETTLE_SCRIPT,
    PUBLISH_SCRIPT,
    READ_SCRIPT,
    Keepalive,
    LogbookNotice,
    MalformedNotificationError,
    PublishCall,
    ScriptCall,
    decode_notification,
    encode_keepalive,
    history_image_call,
    legacy_read_call,
    legacy_settle_call,
    publish_call,
    read_call,
    seq_reply,
    topic_read_call,
    validate_topic,
)
from .records import (
    HistoryLimits,
    LegacyFrame,
    LegacySkip,
    TopicImage,
    UnexpectedReplyError,
    parse_fields,
    parse_history_entry,
    parse_history_image,
    parse_history_limits,
    parse_legacy,
    parse_seq,
    parse_topic,
    pending_claim,
    published_image,
)
from .stats import Stats
from .throttled_log import ThrottledLog

log = logging.getLogger(__name__)

MAX_HISTORY_ENTRIES = 1000
_SCAN_BATCH = 200
_VERSION_BYTES = 256  # a seq and a digest
_HISTORY_BYTES = 16 * 2**20  # the metadata of up to MAX_HISTORY_ENTRIES kept images

# A topic's version as the reconciliation sees it: (seq, digest); None when unknown.
Version = tuple[int, str] | None
# What a legacy read found at one bare key (TopicStore.legacy_reads).
LegacyRead = LegacyFrame | LegacySkip | CorruptTopicError | None


class TopicStore:
    """Reads, writes and subscribes to the topics of docs/protocol.md in one Redis.

    ``url`` may name one server or any node of a Redis Cluster: the first call finds out
    which (connections.py). Nothing connects until the first call. Every method raises
    RedisUnavailableError when Redis cannot be reached and RedisRefusedError when it answers
    with an error.
    """

    def __init__(self, url: str, settings: Settings, stats: Stats | None = None) -> None:
        self.url = redact_url(url)
        self._keys = settings.keys
        self._limits = settings.limits
        self._max_image_bytes = settings.max_image_bytes
        self._timeout = settings.redis_timeout
        self._stats = stats or Stats()
        self._problems = ThrottledLog(log)
        self._full_url = url
        self._plain = plain_async(url, settings.redis_timeout)  # until a cluster is detected
        self._client: AsyncClient | None = None
        self._read: AsyncScript | None = None
        self._legacy_settle: AsyncScript | None = None
        self._opening = asyncio.Lock()
        self._subscriptions = 0  # which cluster node the next subscription tries first

    @property
    def clustered(self) -> bool | None:
        """Whether Redis is a cluster; None until the first call has found out."""
        if self._client is None:
            return None
        return isinstance(self._client, redis.asyncio.cluster.RedisCluster)

    async def _redis(self) -> AsyncClient:
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    with self._errors():
                        client = await open_async(self._plain, self._full_url, self._timeout)
                    self._read = client.register_script(READ_SCRIPT)
                    self._legacy_settle = client.register_script(LEGACY_SETTLE_SCRIPT)
                    self._client = client
        return self._client

    async def publish(
        self, topic: str, experiment: str, data: bytes, description: str = ""
    ) -> TopicImage:
        """Publish ``data`` as the topic's current image; return what was stored.

        Raises InvalidNameError / InvalidImageError for bad input, CorruptTopicError when the
        topic's keys hold data the script refuses to overwrite, PublishOutcomeUnknownError when
        the publish was sent but not answered.
        """
        now = time.time()
        call = publish_call(
            self._keys, self._limits, topic, experiment, description, data,
            self._max_image_bytes, now,
        )  # fmt: skip
        seq = await self.send(call)
        return published_image(call, seq, expires_at=now + self._limits.ttl)

    async def send(self, call: PublishCall) -> int:
        """Run a prepared publish once (never retried: it is not idempotent); return its seq.

        Raises RedisUnavailableError when no connection could be made (nothing was sent), and
        PublishOutcomeUnknownError when the connection failed after sending.
        """
        client = await self._redis()
        redirect: Redirect | None = None
        for _ in range(MAX_REDIRECTS):
            async with contextlib.AsyncExitStack() as stack:
                with self._errors(call.topic):  # connected: nothing is sent yet
                    connection = await stack.enter_async_context(
                        checkout(client, call.topic_key, redirect)
                    )
                with self._errors(call.topic, write=True):
                    try:
                        try:
                            await connection.send_command(*call.command(PUBLISH_SCRIPT))
                            return seq_reply(await connection.read_response())
                        except NoScriptError:  # the first publish to this server
                            await connection.send_command(
                                *call.command(PUBLISH_SCRIPT, by_sha=False)
                            )
                            return seq_reply(await connection.read_response())
                    except AskError as exc:  # MOVED or ASK: not run; send it where it belongs
                        redirect = Redirect(exc)
        raise RedisRefusedError(self.url, f"{MAX_REDIRECTS} cluster redirections in a row")

    async def read(self, topic: str) -> TopicImage | None:
        """The current image of a valid topic name; None when it has none.

        Raises CorruptTopicError (counted and logged) when its hash is unusable.
        """
        call = topic_read_call(self._keys, topic, self._max_image_bytes)
        with self._refused(topic):
            reply = await self._script(call, topic)
            return parse_topic(topic, reply, time.time(), self._max_image_bytes)

    async def versions(self) -> dict[str, Version]:
        """Every topic hash in Redis and its version, without reading any image.

        Bounded: at most a few hundred bytes per key. Keys that are not valid topic names are
        skipped (counted as ``invalid_key``); a version that cannot be read is None.
        """
        found: dict[str, Version] = {}
        batch: list[str] = []
        client = await self._redis()
        with self._errors():
            await client.script_load(READ_SCRIPT)  # the batches below use EVALSHA (every master)
            # On a cluster redis-py scans every master in turn.
            async for key in client.scan_iter(
                match=self._keys.topic_pattern, count=_SCAN_BATCH, _type="hash"
            ):
                try:
                    batch.append(self._keys.topic_of(key))
                except ValueError as exc:
                    name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
                    self._report(CorruptTopicError(name, "invalid_key", str(exc)))
                if len(batch) >= _SCAN_BATCH:
                    found.update(await self._versions(batch))
                    batch = []
            found.update(await self._versions(batch))
        return found

    async def _versions(self, topics: list[str]) -> dict[str, Version]:
        client = await self._redis()
        async with client.pipeline(transaction=False) as pipe:
            for topic in topics:
                call = read_call(self._keys.topic(topic), ("seq", "digest"), _VERSION_BYTES)
                pipe.execute_command(*call.command(READ_SCRIPT))
            replies = await pipe.execute(raise_on_error=False)
        versions: dict[str, Version] = {}
        for topic, reply in zip(topics, replies, strict=True):
            version: Version = None
            with contextlib.suppress(CorruptTopicError, ValueError, TypeError, IndexError):
                values = parse_fields(topic, reply)  # the full read reports what is wrong
                if values is not None and isinstance(values[1], bytes):
                    seq = parse_seq(topic, values[0])
                    version = None if seq is None else (seq, values[1].decode(errors="replace"))
            versions[topic] = version
        return versions

    async def history(self, topic: str) -> tuple[list[dict[str, Any]], HistoryLimits | None]:
        """Metadata of the topic's kept images, newest first (unusable entries are skipped),
        and the limits the latest publish kept them by (None: unknown, or unusable).

        Raises CorruptTopicError when the history as a whole cannot be read.
        """
        history_key = self._keys.history(topic)
        with self._refused(topic):
            head_call = read_call(history_key, ("first", "limits"), 512)
            head = parse_fields(topic, await self._script(head_call, topic)) or [None, None]
            seq_reply = await self._script(read_call(self._keys.topic(topic), ("seq",), 64), topic)
            first = parse_seq(topic, head[0])
            last = parse_seq(topic, (parse_fields(topic, seq_reply) or [None])[0])
            if first is None or last is None or first > last:
                return [], None
        try:
            limits = parse_history_limits(topic, head[1])
        except CorruptTopicError as exc:
            self._report(exc)
            limits = None
        with self._refused(topic):
            seqs = range(last, max(first, last - MAX_HISTORY_ENTRIES + 1) - 1, -1)
            fields = [f"meta:{seq}" for seq in seqs]
            call = read_call(history_key, fields, _HISTORY_BYTES)
            raw = parse_fields(topic, await self._script(call, topic)) or [None] * len(seqs)
        entries = []
        for seq, entry in zip(seqs, raw, strict=True):
            try:
                parsed = parse_history_entry(topic, seq, cast(bytes | None, entry))
            except CorruptTopicError as exc:
                self._report(exc)
                continue
            if parsed is not None:
                entries.append(parsed)
        return entries, limits

    async def history_image(self, topic: str, seq: int) -> TopicImage | None:
        """The kept image ``seq`` of the topic; None when it is no longer kept."""
        call = history_image_call(self._keys, topic, seq, self._max_image_bytes)
        with self._refused(topic):
            reply = await self._script(call, topic)
            return parse_history_image(topic, seq, reply, self._max_image_bytes)

    async def lend(self) -> AsyncClient:
        """The client, lent to the logbook's operations (logbook_store.py), which translate
        its errors with ``errors.redis_errors``; the store keeps owning (and closes) it."""
        return await self._redis()

    async def ping(self) -> None:
        client = await self._redis()
        with self._errors():
            await client.ping()

    async def keepalive(self, token: str) -> None:
        """Publish a Keepalive on the update channel; subscribers ignore other services' ones."""
        client = await self._redis()
        with self._errors():
            await client.publish(self._keys.channel, encode_keepalive(token))

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[Subscription]:
        """Subscribe to the update channel; yields once Redis has confirmed it.

        On a cluster the subscription is a classic one on one node (PUBLISH reaches every
        node); each call starts with another node and takes the first that confirms, so a
        dead node is skipped. The connection is closed on exit, also on error or cancellation.
        """
        client = await self._redis()
        nodes = subscription_nodes(client, self._subscriptions)
        self._subscriptions += 1
        channel = self._keys.channel
        if not nodes:
            async with self._subscribed(client.pubsub(), channel) as pubsub:
                yield Subscription(pubsub, self.url, self._report)
            return
        with self._errors():
            await client.nodes_manager.initialize()  # type: ignore[union-attr]
        for index, node in enumerate(nodes):
            stack = contextlib.AsyncExitStack()
            try:
                pubsub = await stack.enter_async_context(
                    self._subscribed(client.pubsub(node=node), channel)
                )
            except RedisUnavailableError as exc:
                await stack.aclose()
                if index == len(nodes) - 1:
                    raise
                log.warning("cannot subscribe on cluster node %s: %s", node.name, exc.reason)
                continue
            async with stack:
                yield Subscription(pubsub, self.url, self._report)
            return

    @contextlib.asynccontextmanager
    async def keyevents(self, *events: str) -> AsyncIterator[KeyEvents]:
        """Subscribe to the keyspace events ``events`` (``hset``...) of the URL's database.

        One server only: raises RedisRefusedError on a cluster, whose nodes each announce
        their own keys. Yields once Redis has confirmed; the connection is closed on exit.
        """
        client = await self._redis()
        if not isinstance(client, redis.asyncio.Redis):
            raise RedisRefusedError(self.url, "keyspace events are per node on a cluster")
        db = client.connection_pool.connection_kwargs.get("db", 0)
        channels = [f"__keyevent@{db}__:{event}" for event in events]
        async with self._subscribed(client.pubsub(), *channels) as pubsub:
            yield KeyEvents(pubsub, self.url)

    @contextlib.asynccontextmanager
    async def _subscribed(
        self, pubsub: redis.asyncio.client.PubSub, *channels: str
    ) -> AsyncIterator[redis.asyncio.client.PubSub]:
        try:
            with self._errors():
                await pubsub.subscribe(*channels)
                confirmed = 0
                while confirmed < len(channels):
                    message = await pubsub.get_message(timeout=self._timeout)
                    if message is None:
                        raise RedisUnavailableError(self.url, "SUBSCRIBE was not confirmed")
                    if message["type"] == "subscribe":
                        confirmed += 1
            yield pubsub
        finally:
            await pubsub.aclose()

    async def config_get(self, name: str) -> str:
        """A server setting (``CONFIG GET``); RedisRefusedError when CONFIG is refused."""
        client = await self._redis()
        with self._errors():
            reply = await client.config_get(name)
        value = reply.get(name) if isinstance(reply, dict) else None
        if not isinstance(value, str):
            raise RedisRefusedError(self.url, f"CONFIG GET {name} answered {reply!r:.80}")
        return value

    async def config_set(self, name: str, value: str) -> None:
        """Change a server setting (``CONFIG SET``); RedisRefusedError when refused."""
        client = await self._redis()
        with self._errors():
            await client.config_set(name, value)

    async def hash_keys(self, limit: int) -> tuple[list[bytes], bool]:
        """Names of the hashes in Redis (every master of a cluster), at most ``limit`` of
        them, and whether there were more."""
        client = await self._redis()
        found: dict[bytes, None] = {}  # SCAN may return a key twice
        with self._errors():
            scan = client.scan_iter(count=5 * _SCAN_BATCH, _type="hash")
            async with contextlib.aclosing(scan) as keys:  # type: ignore[type-var]
                async for key in keys:
                    if key not in found and len(found) >= limit:
                        return list(found), True
                    found[key] = None
        return list(found), False

    async def legacy_reads(self, keys: Sequence[bytes]) -> list[LegacyRead]:
        """Read each bare key that holds a hash of the 2014 tool and claim its content.

        One round trip for all. Per key: None (no such hash), a LegacySkip, a LegacyFrame
        claimed for this caller (who must ``legacy_settle`` it), or the CorruptTopicError it
        is refused for (``invalid_topic`` for a name that is no topic name; the store does
        not count these: the caller does). Refused content stays claimed, so each content is
        refused once. Raises RedisUnavailableError / RedisRefusedError for Redis failures.
        """
        client = await self._redis()
        limit = self._max_image_bytes + FIELDS_BYTES
        hold_ms = int(2000 * self._timeout) + 1000  # longer than any publish may take
        names = [_legacy_topic(key) for key in keys]
        calls = [
            legacy_read_call(self._keys, key, topic, limit, self._limits.ttl, hold_ms)
            for key, (topic, _) in zip(keys, names, strict=True)
        ]
        with self._errors():
            replies = await self._pipelined(client, calls)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:  # not run, so nothing was claimed: load the script and run those again
                await client.script_load(LEGACY_READ_SCRIPT)
                again = await self._pipelined(client, [calls[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        found: list[LegacyRead] = []
        for key, (topic, problem), reply in zip(keys, names, replies, strict=True):
            name = key.decode(errors="replace")
            try:
                if isinstance(reply, Exception):
                    with self._errors(name):
                        raise reply
                if topic is None:
                    if reply is not None:
                        raise CorruptTopicError(name, "invalid_topic", problem)
                    found.append(None)
                    continue
                found.append(await self._legacy_parse(topic, reply))
            except CorruptTopicError as exc:
                found.append(exc)
        return found

    async def _legacy_parse(self, topic: str, reply: Any) -> LegacyFrame | LegacySkip | None:
        try:
            with self._refused(topic, report=False):
                return parse_legacy(topic, reply, self._max_image_bytes)
        except CorruptTopicError:
            claim = pending_claim(reply)
            if claim is not None:  # refused: settled as done, so it is refused once
                await self._send_settle(topic, claim, done=True)
            raise

    async def legacy_settle(self, frame: LegacyFrame, done: bool) -> None:
        """End the claim of ``frame``: ``done`` (published, or refused) keeps it, so the same
        content is not published again; else it is dropped so that a later read retries."""
        await self._send_settle(frame.topic, frame.claim, done)

    async def _send_settle(self, topic: str, claim: str, done: bool) -> None:
        call = legacy_settle_call(self._keys, topic, claim, self._limits.ttl, done)
        await self._redis()
        assert self._legacy_settle is not None
        with self._errors(topic):
            await self._legacy_settle(keys=call.keys, args=call.args)

    async def _pipelined(self, client: AsyncClient, calls: Sequence[ScriptCall]) -> list[Any]:
        async with client.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.execute_command(*call.command(LEGACY_READ_SCRIPT))
            return list(await pipe.execute(raise_on_error=False))

    async def aclose(self) -> None:
        if self._client is not None and self._client is not self._plain:
            await self._client.aclose()
        await self._plain.aclose()

    async def _script(self, call: ScriptCall, topic: str) -> Any:
        await self._redis()
        assert self._read is not None
        with self._errors(topic):
            return await self._read(keys=call.keys, args=call.args)

    def _report(self, error: CorruptTopicError | MalformedNotificationError) -> None:
        kind = error.kind
        self._stats.feed_error(kind)
        key = error.topic if isinstance(error, CorruptTopicError) else ""
        self._problems.warning(kind, key, str(error))

    @contextlib.contextmanager
    def _refused(self, topic: str, report: bool = True) -> Iterator[None]:
        # Counts and logs data refused while parsing (unless ``report`` is off: the caller
        # does); a shape the parsers did not foresee (ValueError, TypeError...) is bad data
        # too, never a crash of the caller.
        try:
            yield
        except CorruptTopicError as exc:
            if report:
                self._report(exc)
            raise
        except UnexpectedReplyError as exc:
            raise RedisUnavailableError(self.url, str(exc)) from exc
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            error = CorruptTopicError(topic, "invalid_field", f"unreadable: {exc!r:.200}")
            if report:
                self._report(error)
            raise error from exc

    def _errors(
        self, topic: str = "", write: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        return redis_errors(self.url, topic=topic, write=write)


def _legacy_topic(key: bytes) -> tuple[str | None, str]:
    """The topic a bare key names, else None and why it names none."""
    try:
        return validate_topic(key.decode()), ""
    except UnicodeDecodeError:
        return None, f"key {key[:200]!r} is not UTF-8"
    except InvalidNameError as exc:
        return None, str(exc)


class KeyEvents:
    """The keyspace events of a confirmed ``TopicStore.keyevents`` subscription."""

    def __init__(self, pubsub: redis.asyncio.client.PubSub, url: str) -> None:
        self._pubsub = pubsub
        self._url = url

    async def receive(self) -> tuple[str, bytes]:
        """The next event's name (``hset``...) and key. Raises RedisUnavailableError when
        the connection is lost. Cancelling is safe."""
        while True:
            with redis_errors(self._url):
                message = await self._pubsub.get_message(timeout=None)
            if message is None:
                continue
            if message["type"] == "unsubscribe":
                raise RedisUnavailableError(self._url, "the server ended the subscription")
            channel, key = message["channel"], message["data"]
            if message["type"] == "message" and isinstance(key, bytes):
                return channel.rpartition(b":")[2].decode(errors="replace"), key


class Subscription:
    """The messages of a confirmed subscription to the update channel."""

    def __init__(
        self,
        pubsub: redis.asyncio.client.PubSub,
        url: str,
        report: Callable[[MalformedNotificationError], None],
    ) -> None:
        self._pubsub = pubsub
        self._url = url
        self._report = report

    async def receive(self) -> str | Keepalive | LogbookNotice:
        """The next valid topic name, Keepalive or LogbookNotice; anything else is counted
        and skipped.

        Raises RedisUnavailableError when the connection is lost. Cancelling is safe.
        """
        while True:
            with redis_errors(self._url):
                message = await self._pubsub.get_message(timeout=None)
            if message is None:
                continue
            if message["type"] in ("unsubscribe", "sunsubscribe"):
                raise RedisUnavailableError(self._url, "the server ended the subscription")
            if message["type"] != "message":
                continue
            try:
                return decode_notification(message["data"])
            except MalformedNotificationError as exc:
                self._report(exc)
