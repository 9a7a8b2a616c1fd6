"""Keeps the Hub in step with Redis through one subscription per process, proven alive.

``Feed.run`` is the one long-lived task; the service's TaskGroup owns it and cancels it to
stop. It supervises itself: Redis outages, a subscription that stops delivering and its own
unexpected crashes all end in a reconnect with backoff and a full reconciliation, and
``problem()`` says why (for /healthz) until it is live again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from .backoff import Backoff
from .errors import CorruptTopicError, RedisRefusedError, RedisUnavailableError
from .hub import Hub
from .mailbox import LatestWins
from .protocol import Keepalive, LogbookNotice
from .records import TopicImage
from .stats import Stats
from .store import Subscription, TopicStore, Version
from .throttled_log import ThrottledLog, shorten

log = logging.getLogger(__name__)

_EXPIRY_CHECK_INTERVAL = 1.0
# Backoff starts afresh only after the subscription stayed live this long, so a failure that
# recurs right after each (re)subscription cannot spin.
_STABLE_AFTER = 10.0
# Topics announced but not read yet. Beyond this (a flood of notifications) they are dropped
# for one reconciliation, which reads only what really changed.
MAX_BACKLOG = 10_000


class SubscriptionStaleError(Exception):
    """The service's own keepalives stopped coming back on the update channel."""


class Feed:
    """Subscribes to the update channel, reads each changed topic once, and updates the Hub.

    Every ``keepalive_interval`` seconds it publishes a Keepalive on the channel and expects
    to see it come back: after two intervals without one ``problem()`` reports it, after
    three it reconnects. Every ``reconcile_interval`` seconds (and on every (re)subscription)
    it compares the versions of all topics in Redis with the Hub, so changes nobody announced
    (DEL, FLUSHALL, a lost notification) are seen too. Announced topics are read before those
    the reconciliation suspects; topics Redis holds as unusable are not read again until they
    change.
    """

    def __init__(
        self,
        store: TopicStore,
        hub: Hub,
        stats: Stats,
        *,
        keepalive_interval: float = 5.0,
        reconcile_interval: float = 30.0,
        logbook: Callable[[LogbookNotice], None] | None = None,
    ) -> None:
        self._store = store
        self._logbook = logbook  # told of each logbook notification (must not block)
        self._hub = hub
        self._stats = stats
        self._keepalive_interval = keepalive_interval
        self._unproven_after = 2 * keepalive_interval
        self._stale_after = 3 * keepalive_interval
        self._reconcile_interval = reconcile_interval
        self._ready = asyncio.Event()
        # Announced topics (value: when first announced) go before suspected ones.
        self._announced: LatestWins[str, float] = LatestWins(self._ready)
        self._suspected: LatestWins[str, None] = LatestWins(self._ready)
        self._reconcile_now = asyncio.Event()
        self._reconciled = False
        # Set once the Hub holds what Redis held when the feed first subscribed.
        self.loaded = asyncio.Event()
        # Topics whose data was refused, with their version then (None: not known yet).
        self._refused: dict[str, tuple[Version, CorruptTopicError]] = {}
        # Publishes made through this service, so that a read sent before one of them and
        # answered after it cannot put the older image back (read-your-writes).
        self._publishes = 0
        self._published_at: dict[str, int] = {}
        self._token = uuid.uuid4().hex
        self._live_since: float | None = None
        self._problem = "the update subscription is starting"
        self._subscribed_at = 0.0
        self._proof: float | None = None
        self._log = ThrottledLog(log)

    def problem(self) -> str | None:
        """Why the Hub may be out of step with Redis now; None when it is live and proven."""
        if self._live_since is None:
            return self._problem
        now = time.monotonic()
        if self._proof is None or self._proof < self._subscribed_at:
            return "subscribed; waiting for the first keepalive to come back"
        if now - self._proof > self._unproven_after:
            return f"no proof that the update subscription delivers for {now - self._proof:.1f} s"
        if self._announced:
            waited = now - self._announced.peek()[1]
            if waited > self._stale_after:
                return (
                    f"{len(self._announced)} announced updates not read yet, "
                    f"the oldest for {waited:.1f} s"
                )
        return None

    def proof_age(self) -> float | None:
        """Seconds since the subscription last proved it delivers; None before the first."""
        return None if self._proof is None else time.monotonic() - self._proof

    async def lookup(self, topic: str) -> TopicImage | None:
        """The topic's current image: from the Hub, else read from Redis (not kept).

        Raises CorruptTopicError, without reading again, for a topic whose data was refused
        and has not changed since.
        """
        image = self._hub.get(topic)
        if image is not None:
            return image
        refused = self._refused.get(topic)
        if refused is not None:
            raise refused[1]
        try:
            return await self._store.read(topic)
        except CorruptTopicError as exc:
            self._refused[topic] = (None, exc)
            raise

    async def publish(
        self, topic: str, experiment: str, data: bytes, description: str = ""
    ) -> TopicImage:
        """Publish through the store; the Hub serves the result at once (read-your-writes).

        Raises what ``TopicStore.publish`` raises.
        """
        image = await self._store.publish(topic, experiment, data, description)
        held = self._hub.get(topic)
        self._refused.pop(topic, None)
        if held is not None and held.seq >= image.seq:
            # The topic restarted at 1 unnoticed (deleted, expired), or another publish
            # overtook this one. Redis decides; meanwhile serve this one unless the held
            # image is evidently the newer.
            self._suspected.put(topic, None)
            if held.updated_at > image.updated_at:
                return image
        self._publishes += 1
        self._published_at[topic] = self._publishes
        self._hub.update(image)
        return image

    async def run(self) -> None:
        """Follow Redis until cancelled; never returns or raises anything else."""
        backoff = Backoff()
        while True:
            try:
                await self._follow()
                reason = "the update subscription ended"
            except Exception as error:  # CancelledError is not an Exception: it ends run()
                reason = self._failed(error)
            live_since = self._live_since
            if live_since is not None and time.monotonic() - live_since > _STABLE_AFTER:
                backoff.reset()
            self._live_since = None
            self._stats.redis_reconnected()
            delay = backoff.next_delay()
            self._problem = f"{reason}; retrying in {delay:.1f} s"
            log.warning("feed: %s", self._problem)
            await asyncio.sleep(delay)

    def _failed(self, error: Exception) -> str:
        cause = first_cause(error)
        if isinstance(cause, RedisUnavailableError | RedisRefusedError):
            return f"update subscription lost: {cause}"
        if isinstance(cause, SubscriptionStaleError):
            self._stats.feed_error("subscription_stale")
            return f"update subscription stale: {cause}"
        self._stats.feed_error("crash")
        description = f"{type(cause).__name__}: {shorten(str(cause))}"
        self._log.log(logging.ERROR, "crash", type(cause).__name__, description, error)
        return f"the feed crashed ({description})"

    async def _follow(self) -> None:
        async with self._store.subscription() as subscription:
            self._subscribed_at = time.monotonic()
            await self._reconcile()  # whatever changed while nobody was listening
            self._reconciled = True
            self._ready.set()  # _read_changed tells when the first load is done
            self._live_since = time.monotonic()
            log.info("feed: subscribed; %d topics held", self._hub.topic_count)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read_changed())
                tasks.create_task(self._prove_alive())
                tasks.create_task(self._check_expiry_and_reconcile())
                await self._listen(subscription)

    async def _listen(self, subscription: Subscription) -> None:
        while True:
            message = await subscription.receive()
            if isinstance(message, Keepalive):
                if message.token.startswith(self._token):
                    self._proof = time.monotonic()
            elif isinstance(message, LogbookNotice):
                if self._logbook is not None:
                    self._logbook(message)
            elif message not in self._announced:
                if len(self._announced) >= MAX_BACKLOG:
                    self._overflow()
                self._announced.put(message, time.monotonic())

    def _overflow(self) -> None:
        self._stats.feed_error("backlog_overflow")
        self._log.warning(
            "backlog_overflow",
            "",
            f"over {MAX_BACKLOG} announced topics waiting; reconciling with Redis instead",
        )
        self._announced.clear()
        self._reconcile_now.set()

    async def _prove_alive(self) -> None:
        sent = 0
        while True:
            sent += 1
            try:
                async with asyncio.timeout(self._stale_after):
                    await self._store.keepalive(f"{self._token}:{sent}")
            except TimeoutError:
                raise SubscriptionStaleError(
                    f"Redis did not answer a keepalive within {self._stale_after:g} s"
                ) from None
            await asyncio.sleep(self._keepalive_interval)
            # Only a keepalive received over this subscription counts.
            age = time.monotonic() - max(self._proof or 0.0, self._subscribed_at)
            if age > self._stale_after:
                raise SubscriptionStaleError(f"no keepalive came back for {age:.1f} s")

    async def _check_expiry_and_reconcile(self) -> None:
        reconciled = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(min(_EXPIRY_CHECK_INTERVAL, self._reconcile_interval)):
                    await self._reconcile_now.wait()
            except TimeoutError:
                pass
            for topic in self._hub.expiring(time.time()):
                self._suspected.put(topic, None)
            if self._reconcile_now.is_set() or (
                time.monotonic() - reconciled >= self._reconcile_interval
            ):
                self._reconcile_now.clear()
                await self._reconcile()
                reconciled = time.monotonic()

    async def _reconcile(self) -> None:
        versions = await self._store.versions()
        for topic, version in versions.items():
            refused = self._refused.get(topic)
            if refused is not None:
                if refused[0] is None:  # first seen since refused: remember its version
                    self._refused[topic] = (version, refused[1])
                if refused[0] is None or refused[0] == version:
                    continue  # unchanged since refused: not read again
                del self._refused[topic]
            held = self._hub.get(topic)
            if held is None or version is None or (held.seq, held.digest) != version:
                self._suspected.put(topic, None)
        for topic in [topic for topic in self._refused if topic not in versions]:
            del self._refused[topic]  # gone from Redis
        for image in self._hub.images():
            if image.topic not in versions:
                self._suspected.put(image.topic, None)

    async def _read_changed(self) -> None:
        # One read at a time, so an older read never overwrites a newer one; announced topics
        # first; a topic changing again while queued is read once.
        while True:
            if self._announced:
                topic, _ = self._announced.popleft()
                self._refused.pop(topic, None)  # announced: it changed
            elif self._suspected:
                topic, _ = self._suspected.popleft()
            else:
                if self._reconciled:
                    self.loaded.set()
                self._ready.clear()
                await self._ready.wait()
                continue
            await self._refresh(topic)

    async def _refresh(self, topic: str) -> None:
        publishes = self._publishes
        try:
            image = await self._store.read(topic)
        except CorruptTopicError as exc:  # counted and logged by the store; nothing to serve
            self._refused[topic] = (None, exc)
            image = None
        held = self._hub.get(topic)
        if self._published_at.get(topic, 0) > publishes and (
            image is None or held is None or image.seq < held.seq
        ):
            return  # read before a publish made here; that publish's notification follows
        if image is None:
            self._published_at.pop(topic, None)
            self._hub.remove(topic)
        else:
            self._hub.update(image)


def first_cause(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
