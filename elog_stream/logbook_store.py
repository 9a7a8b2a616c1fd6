"""The logbook's Redis operations, on the client that the TopicStore owns and lends.

``LogbookStore`` pins, retracts and reads entries and their images (logbook.py has the layout
and checks what comes back), lists the experiments that have a logbook, serves the webhook's
consumer group, and checks whether Redis keeps its data on disk. Every redis-py error is
translated by ``errors.redis_errors``; entries Redis holds but that cannot be used are
counted (``Stats.feed_error``) and logged at most once a minute, and skipped in lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .backoff import Backoff
from .config import Settings
from .errors import (
    CorruptEntryError,
    CorruptTopicError,
    InvalidNameError,
    RedisRefusedError,
    RedisUnavailableError,
    redis_errors,
)
from .logbook import (
    MAX_PAGE,
    WEBHOOK_GROUP,
    Entry,
    LogbookKeys,
    entry_id_reply,
    image_call,
    logbook_experiment,
    pin_call,
    read_call,
    retract_call,
)
from .logbook_records import UnexpectedLogbookReplyError, parse_entries, parse_image
from .logbook_scripts import IMAGE_SCRIPT, PIN_SCRIPT, READ_SCRIPT, RETRACT_SCRIPT
from .records import TopicImage
from .scripts import ScriptCall
from .stats import Stats
from .store import TopicStore
from .throttled_log import ThrottledLog

log = logging.getLogger(__name__)

MAX_EXPERIMENTS = 10_000  # listed at most by GET /api/logbook
SEARCH_BUDGET = 5_000  # entries one search request looks at, at most; then it says where it stopped


@dataclass(frozen=True, slots=True)
class Page:
    """Entries newest first, and the id to continue before (None: no more)."""

    entries: list[Entry]
    next_before: str | None


class LogbookStore:
    """Reads and writes the logbook of docs/protocol.md through ``store``'s client.

    Methods raise RedisUnavailableError / RedisRefusedError like the TopicStore's;
    CorruptEntryError (a CorruptTopicError: 409) for a single entry that cannot be used.
    """

    def __init__(self, store: TopicStore, settings: Settings, stats: Stats | None = None) -> None:
        self._store = store
        self.url = store.url
        self.keys = LogbookKeys(settings.prefix)
        self._max_image_bytes = settings.max_image_bytes
        self._stats = stats or Stats()
        self._problems = ThrottledLog(log)

    async def pin(self, image: TopicImage, author: str, comment: str) -> Entry:
        """Append an entry pinning ``image`` (a validated image read from Redis).

        Raises InvalidNameError for bad text; PublishOutcomeUnknownError when the pin was
        sent but not answered (it may have been stored: never resent).
        """
        call = pin_call(self.keys, image, author, comment, time.time())
        client = await self._store.lend()
        with self._errors():
            await client.sadd(
                self.keys.index, image.experiment
            )  # first: the index never misses one
        with self._errors(image.experiment, write=True):
            reply = await self._run(PIN_SCRIPT, call)
        try:
            return call.entry(entry_id_reply(reply))
        except ValueError as exc:
            raise RedisUnavailableError(self.url, str(exc)) from None

    async def retract(
        self, experiment: str, entry_id: str, by: str, reason: str
    ) -> Literal["ok", "already", "missing"]:
        """Mark entry ``entry_id`` retracted by ``by`` for ``reason``; say whether it was
        retracted now, had been before (nothing changed) or does not exist."""
        call = retract_call(
            self.keys, logbook_experiment(experiment), entry_id, by, reason, time.time()
        )
        with self._errors(experiment, write=True):
            reply = await self._run(RETRACT_SCRIPT, call)
        status = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
        if status not in ("ok", "already", "missing"):
            raise RedisUnavailableError(self.url, f"the retract script answered {reply!r:.60}")
        return status  # type: ignore[return-value]

    async def entry(self, experiment: str, entry_id: str) -> Entry | None:
        """The entry ``entry_id``; None if there is none. CorruptEntryError if unusable,
        InvalidNameError for an experiment that cannot have a logbook."""
        logbook_experiment(experiment)
        with self._reported():
            items = await self._read(
                experiment, read_call(self.keys, experiment, entry_id, entry_id)
            )
            if not items:
                return None
            if isinstance(items[0], CorruptEntryError):
                raise items[0]
            return items[0]

    async def page(self, experiment: str, before: str | None, limit: int, words: list[str]) -> Page:
        """Up to ``limit`` entries older than ``before`` (None: the newest), newest first,
        having every one of ``words`` (lower case). Unusable entries are skipped (counted).

        A search looks at SEARCH_BUDGET entries at most; ``next_before`` then says where to
        go on, even if fewer than ``limit`` were found. InvalidNameError for an experiment
        that cannot have a logbook.
        """
        logbook_experiment(experiment)
        found: list[Entry] = []
        if before is not None and not any(int(part) for part in before.split("-")):
            return Page(found, None)  # nothing is older than 0-0 (and Redis refuses "(0-0")
        newest = "+" if before is None else f"({before}"
        scanned = 0
        while True:
            want = MAX_PAGE if words else limit + 1 - len(found)
            with self._reported():
                items = await self._read(
                    experiment, read_call(self.keys, experiment, newest, "-", want)
                )
            last = ""
            for item in items:
                scanned += 1
                if isinstance(item, CorruptEntryError):
                    self._report(item)
                    last = item.entry_id
                    continue
                last = item.id
                if item.matches(words):
                    if len(found) == limit:
                        return Page(found, found[-1].id)
                    found.append(item)
            if len(items) < want:
                return Page(found, None)
            if scanned >= SEARCH_BUDGET:
                return Page(found, last)
            newest = f"({last}"

    async def image(self, entry: Entry) -> bytes:
        """The exact bytes ``entry`` pinned (SHA-256 checked). CorruptEntryError if not."""
        with self._reported():
            reply = await self._script(
                IMAGE_SCRIPT, image_call(self.keys, entry, self._max_image_bytes)
            )
            return parse_image(entry, reply)

    async def experiments(self) -> list[dict[str, Any]]:
        """``{"experiment", "entries", "latest_pinned_at"}`` of every experiment that has
        entries (at most MAX_EXPERIMENTS), the latest pinned first."""
        client = await self._store.lend()
        names = await self.experiment_names()
        found = []
        for experiment in names:
            try:
                with self._reported():
                    latest = await self._read(experiment, read_call(self.keys, experiment))
                    with self._errors(experiment):
                        count = await client.xlen(self.keys.stream(experiment))
            except CorruptTopicError:
                continue  # counted and logged
            if not latest:
                continue
            newest = latest[0]
            pinned_at = newest.pinned_at if isinstance(newest, Entry) else None
            found.append(
                {"experiment": experiment, "entries": int(count), "latest_pinned_at": pinned_at}
            )
        return sorted(found, key=lambda item: item["latest_pinned_at"] or 0.0, reverse=True)

    async def persistence(self) -> str | None:
        """None when Redis keeps its data on disk (AOF or RDB snapshots), else why it does
        not. RedisRefusedError when it does not let us look (CONFIG refused)."""
        client = await self._store.lend()
        with self._errors():
            reply = await client.config_get("appendonly")
            save = await client.config_get("save")
        appendonly = reply.get("appendonly") if isinstance(reply, dict) else None
        schedule = save.get("save") if isinstance(save, dict) else None
        if not isinstance(appendonly, str) or not isinstance(schedule, str):
            raise RedisRefusedError(self.url, f"CONFIG GET answered {reply!r:.60} {save!r:.60}")
        if appendonly == "yes" or schedule.strip():
            return None
        return 'appendonly is "no" and save is "" (no AOF, no RDB snapshots)'

    # ---- the webhook's consumer group (webhook.py) -----------------------------------

    async def experiment_names(self) -> list[str]:
        """Every experiment in the index (at most MAX_EXPERIMENTS)."""
        client = await self._store.lend()
        names: list[str] = []
        with self._errors():
            async for member in client.sscan_iter(self.keys.index, count=500):
                with contextlib.suppress(UnicodeDecodeError, InvalidNameError):
                    names.append(logbook_experiment(member.decode()))
                if len(names) >= MAX_EXPERIMENTS:
                    break
        return names

    async def undelivered(self, experiment: str, consumer: str, count: int) -> list[str]:
        """Ids of entries no webhook consumer was given yet, now given to ``consumer``
        (``XREADGROUP``); [] when the experiment has no such group."""
        client = await self._store.lend()
        stream = self.keys.stream(experiment)
        try:
            with self._errors(experiment):
                reply = await client.xreadgroup(WEBHOOK_GROUP, consumer, {stream: ">"}, count=count)
        except RedisRefusedError as exc:
            if "NOGROUP" in exc.reason:
                return []
            raise
        return _ids(reply)

    async def abandoned(self, experiment: str, consumer: str, idle: float, count: int) -> list[str]:
        """Ids of entries given to a consumer that has not acknowledged them for ``idle``
        seconds (a replica that died while delivering), now given to ``consumer``."""
        client = await self._store.lend()
        stream = self.keys.stream(experiment)
        try:
            with self._errors(experiment):
                reply = await client.xautoclaim(
                    stream,
                    WEBHOOK_GROUP,
                    consumer,
                    int(idle * 1000),
                    "0-0",
                    count=count,
                    justid=True,
                )
        except RedisRefusedError as exc:
            if "NOGROUP" in exc.reason:
                return []
            raise
        claimed = reply[1] if isinstance(reply, list) and len(reply) >= 2 else []
        return [item.decode() for item in claimed if isinstance(item, bytes)]

    async def hold(self, experiment: str, entry_id: str, consumer: str) -> None:
        """Keep ``entry_id`` given to ``consumer``, its idle time reset (``XCLAIM``), while
        its delivery is retried, so no other consumer takes it over."""
        client = await self._store.lend()
        with self._errors(experiment):
            await client.xclaim(
                self.keys.stream(experiment), WEBHOOK_GROUP, consumer, 0, [entry_id], justid=True
            )

    async def webhook_since(self, now: float) -> float:
        """When a service first forwarded the logbook to a webhook (``now`` if this is the
        first): entries pinned before are not forwarded."""
        client = await self._store.lend()
        key = self.keys.webhook_since
        with self._errors():
            await client.set(key, repr(now), nx=True)
            value = await client.get(key)
        try:
            return float(value)  # type: ignore[arg-type]  # None and junk raise
        except (TypeError, ValueError):
            raise RedisRefusedError(self.url, f"{key} holds {value!r:.40}, not a time") from None

    async def delivered(self, experiment: str, entry_id: str) -> None:
        """Acknowledge ``entry_id`` for the webhook (``XACK``): nobody delivers it again."""
        client = await self._store.lend()
        with self._errors(experiment):
            await client.xack(self.keys.stream(experiment), WEBHOOK_GROUP, entry_id)

    # ---- helpers ------------------------------------------------------------------------

    async def _read(self, experiment: str, call: ScriptCall) -> list[Entry | CorruptEntryError]:
        return parse_entries(experiment, await self._script(READ_SCRIPT, call))

    async def _script(self, script: str, call: ScriptCall) -> Any:
        with self._errors():
            return await self._run(script, call)

    async def _run(self, script: str, call: ScriptCall) -> Any:
        # A Script sends EVALSHA, and EVAL's text only after NOSCRIPT (which ran nothing).
        client = await self._store.lend()
        return await client.register_script(script)(keys=call.keys, args=call.args)

    def _report(self, error: CorruptEntryError) -> None:
        self._stats.feed_error(error.kind)
        self._problems.warning(error.kind, error.topic, str(error))

    @contextlib.contextmanager
    def _reported(self) -> Iterator[None]:
        try:
            yield
        except CorruptEntryError as exc:
            self._report(exc)
            raise
        except UnexpectedLogbookReplyError as exc:
            raise RedisUnavailableError(self.url, str(exc)) from exc

    def _errors(
        self, topic: str = "", write: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        return redis_errors(self.url, topic=topic, write=write)


def _ids(reply: Any) -> list[str]:
    """The entry ids in an ``XREADGROUP`` reply (RESP2 list or RESP3 dict)."""
    streams = reply.values() if isinstance(reply, dict) else [item[1] for item in reply or []]
    ids = []
    for entries in streams:
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, list | tuple) and entry and isinstance(entry[0], bytes):
                ids.append(entry[0].decode())
    return ids


async def check_persistence(logbook: LogbookStore) -> None:
    """Log a warning when Redis keeps no data on disk (the logbook would be lost when it
    restarts), or when it does not say; once Redis answers (retried with backoff)."""
    backoff = Backoff(cap=30.0)
    while True:
        try:
            problem = await logbook.persistence()
        except RedisUnavailableError:
            await asyncio.sleep(backoff.next_delay())
            continue
        except Exception as exc:  # refused (CONFIG renamed, ACL...), or anything unexpected
            reason = exc.reason if isinstance(exc, RedisRefusedError) else repr(exc)
            log.warning(
                "could not check whether Redis at %s keeps its data on disk (%s): the logbook "
                "needs persistence (AOF or RDB snapshots), or it is lost when Redis restarts",
                logbook.url,
                reason,
            )
            return
        if problem is None:
            log.info("Redis at %s keeps its data on disk: the logbook persists", logbook.url)
        else:
            log.warning(
                "Redis at %s keeps no data on disk: %s. The logbook's entries are permanent only "
                "if Redis persists them: enable AOF (appendonly yes) or RDB snapshots (save)",
                logbook.url,
                problem,
            )
        return
