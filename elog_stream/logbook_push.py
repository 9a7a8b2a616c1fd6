"""Live logbook pages: each pinned or retracted entry, read once, pushed to matching viewers.

Every replica's Feed hands over the logbook notifications of the update channel (whoever
pinned: any replica, a Python publisher, another tool), so viewers on every replica hear of
every entry. ``LogbookPush.run`` is a task owned by the service's TaskGroup.
"""

from __future__ import annotations

import asyncio
import logging

from .backoff import Backoff
from .errors import CorruptTopicError, RedisRefusedError, RedisUnavailableError
from .hub import Hub
from .logbook_store import LogbookStore
from .mailbox import LatestWins
from .protocol import LogbookNotice
from .throttled_log import ThrottledLog

log = logging.getLogger(__name__)

MAX_WAITING = 10_000  # entries announced and not read yet; beyond, the oldest are dropped


class LogbookPush:
    """Reads each announced entry once and hands ``{"type": "logbook", "entry": ...}`` to the
    Hub, for the viewers whose filter takes its experiment."""

    def __init__(self, logbook: LogbookStore, hub: Hub) -> None:
        self._logbook = logbook
        self._hub = hub
        # Each announcement gets a token of its own, so one that comes while the entry is
        # being read (a retraction right after the pin) is read again.
        self._waiting: LatestWins[LogbookNotice, object] = LatestWins()
        self._log = ThrottledLog(log)

    def notice(self, notice: LogbookNotice) -> None:
        """Announce an entry (from the Feed). Never blocks."""
        self._waiting.put(notice, object())
        if len(self._waiting) > MAX_WAITING:
            self._waiting.popleft()

    async def run(self) -> None:
        """Read and push announced entries until cancelled; Redis failures are retried with
        backoff (the entry stays waiting)."""
        backoff = Backoff()
        while True:
            await self._waiting.wait()
            notice, token = self._waiting.peek()
            try:
                entry = await self._logbook.entry(notice.experiment, notice.id)
            except CorruptTopicError:  # counted and logged by the store
                entry = None
            except (RedisUnavailableError, RedisRefusedError) as exc:
                delay = backoff.next_delay()
                log.warning(
                    "cannot read logbook entry %s: %s; retrying in %.1f s", notice.id, exc, delay
                )
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            self._waiting.pop_if(notice, token)
            if entry is not None:
                message: dict[str, object] = {"type": "logbook", "entry": entry.as_json()}
                self._hub.note(entry.experiment, f"{entry.experiment}\0{entry.id}", message)
