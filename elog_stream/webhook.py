"""Forwarding each new logbook entry to a facility's own logbook (``ELOG_LOGBOOK_WEBHOOK``).

Each entry is POSTed once it is pinned, as ``multipart/form-data``: a part ``entry`` (the
entry object, JSON) and a part ``image`` (the exact bytes). Exactly one replica delivers
each entry: they all read the experiments' streams through one Redis consumer group
(``elog-webhook``), which gives every entry to one consumer; the entry is acknowledged
(``XACK``) once the receiver answered 2xx. A failed POST is retried with backoff, holding the
entry (its idle time reset, so no other replica takes it); an entry left unacknowledged by a
replica that died is taken over by another after CLAIM_AFTER seconds, so delivery is at least
once (the ``Elog-Entry-Id`` header lets a receiver drop a repeat). Pins never wait for it.
``Webhook.run`` is a task owned by the service's TaskGroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import os
import socket
import time
import uuid

import httpx

from .backoff import Backoff
from .config import redact_url
from .errors import CorruptTopicError, RedisRefusedError, RedisUnavailableError
from .logbook import Entry
from .logbook_store import LogbookStore
from .mailbox import LatestWins
from .protocol import LogbookNotice
from .stats import Stats
from .throttled_log import ThrottledLog, shorten

log = logging.getLogger(__name__)

# Seconds an entry given to a replica may stay unacknowledged; then another replica takes it.
CLAIM_AFTER = 60.0
POST_TIMEOUT = 10.0
_BATCH = 10


class Webhook:
    """POSTs every new entry of every experiment to ``url``, one replica per entry.

    ``notice`` (from the Feed) says which experiment has something new; every
    ``sweep_interval`` seconds all experiments are looked at, for entries whose notification
    was lost and entries abandoned by a replica that stopped.
    """

    def __init__(
        self, url: str, logbook: LogbookStore, stats: Stats, *, sweep_interval: float
    ) -> None:
        self._url = url
        self._shown = redact_url(url)
        self._logbook = logbook
        self._stats = stats
        self._sweep_interval = sweep_interval
        self._consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._waiting: LatestWins[str, None] = LatestWins(self._wake)
        self._log = ThrottledLog(log)
        self._since = 0.0  # entries pinned before the first service with a webhook are not sent

    def notice(self, notice: LogbookNotice) -> None:
        """An entry of ``notice.experiment`` was pinned or retracted. Never blocks."""
        self._waiting.put(notice.experiment, None)

    async def run(self) -> None:
        """Deliver until cancelled; never returns or raises anything else. Redis failures
        (and bugs, logged with their traceback) start it again after a backoff."""
        backoff = Backoff(cap=30.0)
        async with httpx.AsyncClient(timeout=POST_TIMEOUT) as client:
            while True:
                try:
                    await self._deliver_all(client)
                except (RedisUnavailableError, RedisRefusedError) as exc:
                    self._log.warning("redis", "", f"webhook: {exc}")
                except Exception as exc:  # a bug: log it and go on
                    self._log.log(logging.ERROR, "crash", "", "webhook failed", exc)
                await asyncio.sleep(backoff.next_delay())

    async def _deliver_all(self, client: httpx.AsyncClient) -> None:
        """Deliver entries as they are announced, and sweep, until something fails."""
        self._since = await self._logbook.webhook_since(time.time())
        swept = -self._sweep_interval
        while True:
            sweep = time.monotonic() - swept >= self._sweep_interval
            if sweep:
                swept = time.monotonic()
                for experiment in await self._logbook.experiment_names():
                    self._waiting.put(experiment, None)
            while self._waiting:
                experiment, _ = self._waiting.peek()
                await self._deliver(client, experiment, claim=sweep)
                self._waiting.pop(experiment)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sweep_interval - (time.monotonic() - swept)):
                    await self._wake.wait()

    async def _deliver(self, client: httpx.AsyncClient, experiment: str, claim: bool) -> None:
        """Deliver the experiment's entries given to this replica (and, with ``claim``, those
        abandoned by another) until none is left."""
        logbook, consumer = self._logbook, self._consumer
        if claim:
            for entry_id in await logbook.abandoned(experiment, consumer, CLAIM_AFTER, _BATCH):
                await self._deliver_one(client, experiment, entry_id)
        while ids := await logbook.undelivered(experiment, consumer, _BATCH):
            for entry_id in ids:
                await self._deliver_one(client, experiment, entry_id)

    async def _deliver_one(self, client: httpx.AsyncClient, experiment: str, entry_id: str) -> None:
        try:
            entry = await self._logbook.entry(experiment, entry_id)
            data = None if entry is None else await self._logbook.image(entry)
        except CorruptTopicError as exc:  # counted and logged by the store: it cannot be sent
            self._log.warning("unusable", entry_id, f"webhook: not sending {entry_id}: {exc}")
            entry = data = None
        if entry is not None and data is not None and entry.pinned_at >= self._since:
            await self._post(client, entry, data)
        await self._logbook.delivered(experiment, entry_id)

    async def _post(self, client: httpx.AsyncClient, entry: Entry, data: bytes) -> None:
        """POST until the receiver answers 2xx, with backoff; each failure is counted."""
        # Capped so that hold() comes well within CLAIM_AFTER, POST_TIMEOUT included.
        backoff = Backoff(base=0.5, cap=30.0)
        extension = mimetypes.guess_extension(entry.content_type) or ".img"
        files: dict[str, tuple[str | None, bytes, str]] = {
            "entry": (None, json.dumps(entry.as_json()).encode(), "application/json"),
            "image": (f"{entry.digest}{extension}", data, entry.content_type),
        }
        headers = {"Elog-Entry-Id": entry.id, "User-Agent": "elog-stream"}
        while True:
            try:
                # The whole exchange within POST_TIMEOUT (a receiver that sends a byte every
                # few seconds), and the answer's body never read (it could be gigabytes).
                async with (
                    asyncio.timeout(POST_TIMEOUT),
                    client.stream("POST", self._url, files=files, headers=headers) as response,
                ):
                    status = response.status_code
                if 200 <= status < 300:
                    self._stats.webhook_delivered()
                    return
                problem = f"answered {status}"
            except TimeoutError:
                problem = f"no answer within {POST_TIMEOUT:g} s"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            self._stats.webhook_failed()
            # Still ours: reset its idle time, so that no other replica takes it over.
            await self._logbook.hold(entry.experiment, entry.id, self._consumer)
            delay = backoff.next_delay()
            self._log.warning(
                "post",
                "",
                f"webhook {self._shown} {shorten(problem)} for entry {entry.id} of "
                f"{entry.experiment!r}; retrying in {delay:.1f} s",
            )
            await asyncio.sleep(delay)
