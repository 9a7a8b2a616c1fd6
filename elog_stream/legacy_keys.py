"""The Redis operations of ``LegacyBridge`` (legacy.py) on the client a TopicStore lends.

Keyspace events, ``CONFIG GET``/``SET``, the scan of hash keys, the claimed reads of hashes
written by the 2014 tool (``scripts.LEGACY_READ_SCRIPT``) and the settling of their claims.
``TopicStore`` stays the one owner of the client: it creates the one ``LegacyKeys``
(``TopicStore.legacy``) and lends it its client, its confirmed subscriptions and its
translation of errors, so the same domain errors are raised here as there.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

import redis.asyncio
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from .config import Settings
from .connections import AsyncClient
from .errors import (
    CorruptTopicError,
    InvalidNameError,
    RedisRefusedError,
    RedisUnavailableError,
    redis_errors,
)
from .protocol import validate_topic
from .records import LegacyFrame, LegacySkip, parse_legacy, pending_claim
from .scripts import (
    FIELDS_BYTES,
    LEGACY_READ_SCRIPT,
    LEGACY_SETTLE_SCRIPT,
    ScriptCall,
    legacy_read_call,
    legacy_settle_call,
)

_SCAN_COUNT = 1000  # the COUNT hint of the scan of hash keys

# What a legacy read found at one bare key (LegacyKeys.reads).
LegacyRead = LegacyFrame | LegacySkip | CorruptTopicError | None
PubSub = redis.asyncio.client.PubSub


class LegacyKeys:
    """What ``LegacyBridge`` asks of Redis, on a TopicStore's client (see the module docstring).

    Every method raises RedisUnavailableError when Redis cannot be reached and
    RedisRefusedError when it answers with an error.
    """

    def __init__(
        self,
        url: str,
        settings: Settings,
        *,
        client: Callable[[], Awaitable[AsyncClient]],
        subscribed: Callable[..., AbstractAsyncContextManager[PubSub]],
        refused: Callable[[str], AbstractContextManager[None]],
    ) -> None:
        """``url`` (redacted) names Redis in errors; ``client`` connects on first use and
        returns the store's client; ``subscribed(pubsub, *channels)`` subscribes and waits for
        the confirmation; ``refused(topic)`` translates what a parser refuses."""
        self._url = url
        self._keys = settings.keys
        self._ttl = settings.limits.ttl
        self._max_image_bytes = settings.max_image_bytes
        self._hold_ms = int(2000 * settings.redis_timeout) + 1000  # over any publish's time
        self._client = client
        self._subscribed = subscribed
        self._refused = refused
        self._settle: AsyncScript | None = None

    @contextlib.asynccontextmanager
    async def keyevents(self, *events: str) -> AsyncIterator[KeyEvents]:
        """Subscribe to the keyspace events ``events`` (``hset``...) of the URL's database.

        One server only: raises RedisRefusedError on a cluster, whose nodes each announce
        their own keys. Yields once Redis has confirmed; the connection is closed on exit.
        """
        client = await self._client()
        if not isinstance(client, redis.asyncio.Redis):
            raise RedisRefusedError(self._url, "keyspace events are per node on a cluster")
        db = client.connection_pool.connection_kwargs.get("db", 0)
        channels = [f"__keyevent@{db}__:{event}" for event in events]
        async with self._subscribed(client.pubsub(), *channels) as pubsub:
            yield KeyEvents(pubsub, self._url)

    async def config_get(self, name: str) -> str:
        """A server setting (``CONFIG GET``); RedisRefusedError when CONFIG is refused."""
        client = await self._client()
        with redis_errors(self._url):
            reply = await client.config_get(name)
        value = reply.get(name) if isinstance(reply, dict) else None
        if not isinstance(value, str):
            raise RedisRefusedError(self._url, f"CONFIG GET {name} answered {reply!r:.80}")
        return value

    async def config_set(self, name: str, value: str) -> None:
        """Change a server setting (``CONFIG SET``); RedisRefusedError when refused."""
        client = await self._client()
        with redis_errors(self._url):
            await client.config_set(name, value)

    async def hash_keys(self, limit: int) -> tuple[list[bytes], bool]:
        """Names of the hashes in Redis (every master of a cluster), at most ``limit`` of
        them, and whether there were more."""
        client = await self._client()
        found: dict[bytes, None] = {}  # SCAN may return a key twice
        with redis_errors(self._url):
            scan = client.scan_iter(count=_SCAN_COUNT, _type="hash")
            async with contextlib.aclosing(scan) as keys:  # type: ignore[type-var]
                async for key in keys:
                    if key not in found and len(found) >= limit:
                        return list(found), True
                    found[key] = None
        return list(found), False

    async def reads(self, keys: Sequence[bytes]) -> list[LegacyRead]:
        """Read each bare key that holds a hash of the 2014 tool and claim its content.

        One round trip for all. Per key: None (no such hash), a LegacySkip, a LegacyFrame
        claimed for this caller (who must ``settle`` it), or the CorruptTopicError it is
        refused for (``invalid_topic`` for a name that is no topic name; nothing here counts
        these: the caller does). Refused content stays claimed, so each content is refused
        once.
        """
        client = await self._client()
        limit = self._max_image_bytes + FIELDS_BYTES
        names = [_legacy_topic(key) for key in keys]
        calls = [
            legacy_read_call(self._keys, key, topic, limit, self._ttl, self._hold_ms)
            for key, (topic, _) in zip(keys, names, strict=True)
        ]
        with redis_errors(self._url):
            replies = await _pipelined(client, calls)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:  # not run, so nothing was claimed: load the script and run those again
                await client.script_load(LEGACY_READ_SCRIPT)
                again = await _pipelined(client, [calls[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        found: list[LegacyRead] = []
        for key, (topic, problem), reply in zip(keys, names, replies, strict=True):
            name = key.decode(errors="replace")
            try:
                if isinstance(reply, Exception):
                    with redis_errors(self._url, topic=name):
                        raise reply
                if topic is None:
                    if reply is not None:
                        raise CorruptTopicError(name, "invalid_topic", problem)
                    found.append(None)
                    continue
                found.append(await self._parse(topic, reply))
            except CorruptTopicError as exc:
                found.append(exc)
        return found

    async def _parse(self, topic: str, reply: Any) -> LegacyFrame | LegacySkip | None:
        try:
            with self._refused(topic):
                return parse_legacy(topic, reply, self._max_image_bytes)
        except CorruptTopicError:
            claim = pending_claim(reply)
            if claim is not None:  # refused: settled as done, so it is refused once
                await self._send_settle(topic, claim, done=True)
            raise

    async def settle(self, frame: LegacyFrame, done: bool) -> None:
        """End the claim of ``frame``: ``done`` (published, or refused) keeps it, so the same
        content is not published again; else it is dropped so that a later read retries."""
        await self._send_settle(frame.topic, frame.claim, done)

    async def _send_settle(self, topic: str, claim: str, done: bool) -> None:
        call = legacy_settle_call(self._keys, topic, claim, self._ttl, done)
        client = await self._client()
        if self._settle is None:  # no I/O: redis-py loads it on its first NOSCRIPT
            self._settle = client.register_script(LEGACY_SETTLE_SCRIPT)
        with redis_errors(self._url, topic=topic):
            await self._settle(keys=call.keys, args=call.args)


async def _pipelined(client: AsyncClient, calls: Sequence[ScriptCall]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for call in calls:
            pipe.execute_command(*call.command(LEGACY_READ_SCRIPT))
        return list(await pipe.execute(raise_on_error=False))


def _legacy_topic(key: bytes) -> tuple[str | None, str]:
    """The topic a bare key names, else None and why it names none."""
    try:
        return validate_topic(key.decode()), ""
    except UnicodeDecodeError:
        return None, f"key {key[:200]!r} is not UTF-8"
    except InvalidNameError as exc:
        return None, str(exc)


class KeyEvents:
    """The keyspace events of a confirmed ``LegacyKeys.keyevents`` subscription."""

    def __init__(self, pubsub: PubSub, url: str) -> None:
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
