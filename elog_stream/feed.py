"""Keeps a Hub in step with Redis through one pub/sub subscription per process."""

from __future__ import annotations

import asyncio
import logging
import random
import time

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import RedisUnavailableError, TopicNotFoundError
from .hub import Hub
from .protocol import decode_notification
from .publisher import AsyncPublisher

log = logging.getLogger(__name__)

_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, RedisUnavailableError, OSError)
_PRUNE_INTERVAL = 1.0


class Feed:
    """Subscribes to the update channel, reads each updated topic once, and updates the Hub.

    ``run`` is the one long-lived task; it survives Redis outages by reconnecting with
    exponential backoff and jitter, and resyncs the whole Hub every time the subscription is
    (re)established, so nothing published during an outage is missed. Cancel it to stop.
    """

    def __init__(self, publisher: AsyncPublisher, hub: Hub) -> None:
        self._publisher = publisher
        self._hub = hub
        self._dirty: dict[str, None] = {}
        self._wake = asyncio.Event()
        # Reads and resyncs take turns, so a slower, older read never overwrites a newer one.
        self._reading = asyncio.Lock()
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        """Run until cancelled."""
        backoff = 0.1
        while True:
            try:
                await self._follow()
            except* _REDIS_DOWN as group:
                if self.subscribed.is_set():  # it had worked: back off afresh
                    backoff = 0.1
                self.subscribed.clear()
                self._hub.stats.redis_reconnects += 1
                delay = backoff * random.uniform(0.5, 1.5)
                log.warning(
                    "redis subscription lost: error=%r retry_in=%.2fs",
                    str(group.exceptions[0]),
                    delay,
                )
                backoff = min(backoff * 2, 5.0)
                await asyncio.sleep(delay)

    async def _follow(self) -> None:
        channel = self._publisher.settings.keys.channel
        async with self._publisher.redis.pubsub() as pubsub:
            await pubsub.subscribe(channel)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read_updates())
                tasks.create_task(self._prune_expired())
                await self._listen(pubsub)

    async def _listen(self, pubsub: redis.asyncio.client.PubSub) -> None:
        async for message in pubsub.listen():
            if message["type"] == "subscribe":
                # Also sent after redis-py silently reconnects: updates may have been missed.
                await self._resync()
                self.subscribed.set()
            elif message["type"] == "message":
                try:
                    topic = decode_notification(message["data"])
                except ValueError as exc:
                    log.warning("ignoring malformed notification: %s", exc)
                    continue
                self._dirty[topic] = None
                self._wake.set()
        raise RedisConnectionError("subscription ended")

    async def _resync(self) -> None:
        async with self._reading:
            self._hub.replace_all(await self._publisher.topics())
        log.info("resynced %d topics from redis", self._hub.topic_count)

    async def _read_updates(self) -> None:
        # Notifications arriving while a read is in flight coalesce into one more read.
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                topic = next(iter(self._dirty))
                del self._dirty[topic]
                await self._refresh(topic)

    async def _refresh(self, topic: str) -> None:
        async with self._reading:
            try:
                self._hub.update(await self._publisher.grab(topic))
            except TopicNotFoundError:
                self._hub.remove(topic)
            except ValueError as exc:  # an invalid topic name in a notification
                log.warning("ignoring update of %r: %s", topic, exc)

    async def _prune_expired(self) -> None:
        while True:
            await asyncio.sleep(_PRUNE_INTERVAL)
            for topic in self._hub.expiring(time.time()):
                await self._refresh(topic)
