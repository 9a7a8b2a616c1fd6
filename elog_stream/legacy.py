"""Hashes written by the 2014 tool, published as they change (``serve --legacy-keys``).

The 2014 ``elogshow`` writes a bare key T with three HSETs (experiment, description, pngimage)
and an EXPIRE, and announces nothing. ``LegacyBridge`` finds such writes and publishes each
complete one through ``Feed.publish`` under the same topic name, so it gets a seq, a history
and the normal notification. It finds them

- by keyspace notifications where ``CONFIG SET notify-keyspace-events`` is allowed (flags are
  only ever added, never removed): an ``hset`` on T (re)starts a settle delay (up to
  MAX_WAIT after its first event), the ``expire`` that ends an old write reads T at once;
  and a scan every ``reconcile_interval`` catches what a lost event missed;
- else (CONFIG refused, Redis Cluster) by a bounded scan every ``legacy_scan_interval``.

Each content is claimed in Redis before it is published (``scripts.LEGACY_READ_SCRIPT``), so
of several services exactly one publishes it, once. The service's TaskGroup owns ``run()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import OrderedDict

from .backoff import Backoff
from .errors import (
    CorruptTopicError,
    InvalidImageError,
    InvalidNameError,
    RedisRefusedError,
    RedisUnavailableError,
)
from .feed import Feed, first_cause
from .legacy_keys import KeyEvents
from .protocol import MAX_NOTIFICATION_BYTES, is_elog_key
from .records import LegacyFrame, LegacySkip
from .stats import Stats
from .store import TopicStore
from .throttled_log import ThrottledLog, shorten

log = logging.getLogger(__name__)

# Seconds from the last HSET on a key to its read, when no EXPIRE ends the write: the three
# HSETs of one old write come within milliseconds.
SETTLE = 0.2
# The same for a key whose writer was seen ending its writes with EXPIRE (as the 2014 tool
# does): its EXPIRE triggers the read, this only covers a writer stopped mid-write.
EXPIRE_WAIT = 5.0
# However often a key is written, it is read at most this long (or its own delay, if longer)
# after its first event since its last read: a writer that never pauses is still seen.
MAX_WAIT = 1.0
MAX_SCAN_KEYS = 10_000  # hashes looked at per scan
MAX_PENDING = 10_000  # keys waiting to be read; further events are left to the next scan
_MAX_REMEMBERED = 10_000  # keys remembered as ending with EXPIRE, or as invalid names
_BATCH = 200  # keys read per round trip
_SCAN_REST = 4  # a scan waits at least this many times as long as it took before the next
NOTIFY_SETTING = "notify-keyspace-events"
NEEDED_FLAGS = "Egh"  # keyevent channels, hash commands (hset), generic commands (expire)
_ALL_FLAGS = "g$lshzxetd"  # what the flag 'A' stands for
EVENTS = ("hset", "expire")


def missing_flags(current: str, needed: str = NEEDED_FLAGS) -> str:
    """The flags of ``needed`` that the ``notify-keyspace-events`` value ``current`` lacks."""
    have = set(current) | (set(_ALL_FLAGS) if "A" in current else set())
    return "".join(flag for flag in needed if flag not in have)


class LegacyBridge:
    """Publishes each complete write of the 2014 tool once, whichever service sees it."""

    def __init__(
        self,
        store: TopicStore,
        feed: Feed,
        stats: Stats,
        *,
        scan_interval: float,
        reconcile_interval: float,
    ) -> None:
        self._store = store
        self._legacy = store.legacy
        self._feed = feed
        self._stats = stats
        self._scan_interval = scan_interval
        self._reconcile_interval = reconcile_interval
        # Keys to read: when, and the latest they may be put off to (monotonic); the heap
        # orders them by when, stale entries skipped.
        self._due: dict[bytes, tuple[float, float]] = {}
        self._heap: list[tuple[float, int, bytes]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._expiring: OrderedDict[bytes, None] = OrderedDict()
        self._invalid: OrderedDict[bytes, None] = OrderedDict()  # counted once each
        self._log = ThrottledLog(log)

    async def run(self) -> None:
        """Find and publish old writes until cancelled; never returns or raises anything else.

        Redis failures and crashes are logged and retried with backoff.
        """
        backoff = Backoff()
        while True:
            try:
                await self._bridge(backoff)
                reason = "stopped"
            except Exception as error:  # CancelledError is not an Exception: it ends run()
                cause = first_cause(error)
                if isinstance(cause, RedisUnavailableError | RedisRefusedError):
                    reason = str(cause)
                else:
                    reason = f"crashed ({type(cause).__name__}: {shorten(str(cause))})"
                    self._stats.legacy_refused("crash")
                    self._log.log(logging.ERROR, "crash", type(cause).__name__, reason, error)
            delay = backoff.next_delay()
            log.warning("legacy keys: %s; retrying in %.1f s", reason, delay)
            await asyncio.sleep(delay)

    async def _bridge(self, backoff: Backoff) -> None:
        await self._store.ping()  # also finds out whether Redis is a cluster
        refused = await self._enable_notifications()
        self._due.clear()
        self._heap.clear()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._work())
            if refused is None:
                async with self._legacy.keyevents(*EVENTS) as events:
                    self._stats.legacy_mode("notifications")
                    log.info("legacy keys: following keyspace notifications %s", ", ".join(EVENTS))
                    interval = self._reconcile_interval
                    tasks.create_task(self._scan_every(interval, backoff, recheck=True))
                    await self._listen(events)
            else:
                self._stats.legacy_mode("scan")
                log.warning(
                    "legacy keys: keyspace notifications unavailable (%s); scanning every %g s",
                    refused,
                    self._scan_interval,
                )
                await self._scan_every(self._scan_interval, backoff, recheck=False)

    async def _enable_notifications(self) -> str | None:
        """Add the flags we need to ``notify-keyspace-events``; None, or why it cannot be.

        Flags are never removed, nor restored at exit: other services, and the other
        replicas of this one, may rely on them.
        """
        if self._store.clustered:
            return "Redis Cluster: each node announces only its own keys"
        try:
            current = await self._legacy.config_get(NOTIFY_SETTING)
            added = missing_flags(current)
            if added:
                await self._legacy.config_set(NOTIFY_SETTING, current + added)
                log.info("legacy keys: enabled keyspace notifications %r (was %r)", added, current)
        except RedisRefusedError as exc:
            return f"CONFIG refused: {shorten(exc.reason)}"
        return None

    async def _listen(self, events: KeyEvents) -> None:
        for n in itertools.count():
            if n % 64 == 0:  # a flood of events is read without ever suspending: let others run
                await asyncio.sleep(0)
            event, key = await events.receive()
            if not self._candidate(key):
                continue
            if event == "expire":  # the end of an old write: read it now
                _remember(self._expiring, key)
                self._schedule(key, 0.0)
            else:
                self._schedule(key, EXPIRE_WAIT if key in self._expiring else SETTLE)

    def _candidate(self, key: bytes) -> bool:
        # elog-stream's own keys (any prefix) are never read; nor names already refused.
        if len(key) > MAX_NOTIFICATION_BYTES or key in self._invalid:
            return False
        return not is_elog_key(key.decode(errors="replace"))

    def _schedule(self, key: bytes, delay: float) -> None:
        if key not in self._due and len(self._due) >= MAX_PENDING:
            self._log.warning(
                "legacy_backlog", "", f"over {MAX_PENDING} keys waiting; the next scan reads them"
            )
            return
        now = time.monotonic()
        _, latest = self._due.get(key, (None, now + max(delay, MAX_WAIT)))
        due = min(now + delay, latest)
        self._due[key] = due, latest
        heapq.heappush(self._heap, (due, next(self._order), key))
        if len(self._heap) > 2 * len(self._due) + 64:  # mostly stale entries: rebuild
            self._heap = [(d, next(self._order), k) for k, (d, _) in self._due.items()]
            heapq.heapify(self._heap)
        self._wake.set()

    async def _next_due(self) -> list[bytes]:
        """The keys due now (at most _BATCH), once there are any."""
        while True:
            keys: list[bytes] = []
            wait = None
            while self._heap and len(keys) < _BATCH:
                due, _, key = self._heap[0]
                if self._due.get(key, (None,))[0] != due:
                    heapq.heappop(self._heap)  # rescheduled since
                    continue
                wait = due - time.monotonic()
                if wait > 0:
                    break
                heapq.heappop(self._heap)
                del self._due[key]
                keys.append(key)
            if keys:
                return keys
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _work(self) -> None:
        while True:
            await self._read(await self._next_due())

    async def _scan_every(self, interval: float, backoff: Backoff, recheck: bool) -> None:
        while True:
            started = time.monotonic()
            keys, more = await self._legacy.hash_keys(MAX_SCAN_KEYS)
            if more:
                self._log.warning(
                    "legacy_scan_limit",
                    "",
                    f"over {MAX_SCAN_KEYS} hashes in Redis: legacy keys beyond them are not seen",
                )
            # Keys waiting to settle are left to their own read: they may be mid-write.
            found = [key for key in keys if self._candidate(key) and key not in self._due]
            for start in range(0, len(found), _BATCH):
                await self._read(found[start : start + _BATCH])
            backoff.reset()
            # Hashing every big hash keeps Redis busy: scans take at most 1/(1 + _SCAN_REST).
            await asyncio.sleep(max(interval, _SCAN_REST * (time.monotonic() - started)))
            if recheck:  # someone may have turned them off (or Redis restarted)
                refused = await self._enable_notifications()
                if refused is not None:
                    self._log.warning("legacy_config", "", f"cannot check notifications: {refused}")

    async def _read(self, keys: list[bytes]) -> None:
        found = await self._legacy.reads(keys)
        for key, read in zip(keys, found, strict=True):
            if isinstance(read, CorruptTopicError):
                if read.kind == "invalid_topic":
                    _remember(self._invalid, key)
                self._refuse(read.kind, read.topic, str(read))
            elif read is LegacySkip.BUSY:  # another service is publishing it: look again
                self._schedule(key, SETTLE)
            elif isinstance(read, LegacyFrame):
                await self._publish(read)

    async def _publish(self, frame: LegacyFrame) -> None:
        try:
            await self._feed.publish(frame.topic, frame.experiment, frame.data, frame.description)
        except (CorruptTopicError, InvalidNameError, InvalidImageError) as exc:
            # Refused (our keys of the topic hold what we may not overwrite): settled as done,
            # so this content is not tried again; a new write is.
            await self._legacy.settle(frame, done=True)
            kind = exc.kind if isinstance(exc, CorruptTopicError) else "invalid_field"
            self._refuse(kind, frame.topic, str(exc))
            return
        except Exception:
            with contextlib.suppress(RedisUnavailableError, RedisRefusedError):
                await self._legacy.settle(frame, done=False)  # a later read retries
            raise
        await self._legacy.settle(frame, done=True)
        self._stats.legacy_published()

    def _refuse(self, kind: str, topic: str, reason: str) -> None:
        self._stats.legacy_refused(kind)
        self._log.warning(f"legacy {kind}", topic, reason)


def _remember(keys: OrderedDict[bytes, None], key: bytes) -> None:
    keys[key] = None
    keys.move_to_end(key)
    while len(keys) > _MAX_REMEMBERED:
        keys.popitem(last=False)
