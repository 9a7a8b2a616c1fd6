"""A bounded, latest-wins buffer of publishes that wait for Redis to come back."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from .backoff import Backoff
from .errors import ElogError, PublishOutcomeUnknownError, RedisUnavailableError
from .mailbox import LatestWins
from .scripts import PublishCall
from .throttled_log import shorten

log = logging.getLogger(__name__)


class RetryBuffer:
    """Keeps the newest unsent publish of each topic and retries them until Redis answers.

    At most ``size`` topics wait; a newer image of a waiting topic replaces the older one,
    and a new topic beyond ``size`` evicts the longest-waiting one. A publish that fails for
    any reason but "Redis unreachable" (the topic's data is corrupt, Redis refuses it, a bug)
    is dropped at once. Every image dropped is logged with the reason and counted in
    ``dropped`` (by topic). The retry task is owned here: started on the first ``add``, ended
    when nothing waits, stopped by ``aclose``.
    """

    def __init__(self, send: Callable[[PublishCall], Awaitable[int]], size: int) -> None:
        if size <= 0:
            raise ValueError(f"retry buffer size must be positive, not {size}")
        self._send = send
        self._size = size
        self._pending: LatestWins[str, PublishCall] = LatestWins()
        self._task: asyncio.Task[None] | None = None
        self._empty = asyncio.Event()
        self._empty.set()
        self.dropped: Counter[str] = Counter()

    @property
    def pending(self) -> list[str]:
        """Topics waiting to be sent, longest-waiting first."""
        return list(self._pending)

    def add(self, topic: str, call: PublishCall) -> None:
        if topic not in self._pending and len(self._pending) >= self._size:
            oldest, _ = self._pending.popleft()
            self._drop(oldest, f"evicted: more than {self._size} topics waiting for Redis")
        if self._pending.put(topic, call) is not None:
            self._drop(topic, "replaced by a newer image while Redis was unreachable")
        self._empty.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._retry(), name="elog-publish-retry")

    async def wait_empty(self) -> None:
        """Wait until nothing waits: every publish was sent or dropped. Cancelling is safe."""
        await self._empty.wait()

    async def aclose(self) -> None:
        """Stop retrying; what is still waiting is dropped (and logged)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        while self._pending:
            topic, _ = self._pending.popleft()
            self._drop(topic, "publisher closed before Redis came back")
        self._empty.set()

    def _drop(self, topic: str, reason: str) -> None:
        self.dropped[topic] += 1
        log.warning("dropped an unsent image of %r: %s", shorten(topic), reason)

    async def _retry(self) -> None:
        backoff = Backoff()
        try:
            while self._pending:
                topic, call = self._pending.peek()
                try:
                    await self._send(call)
                except PublishOutcomeUnknownError as exc:
                    # Sent but unanswered: trying again could store it twice, so it ends here.
                    self._pending.pop_if(topic, call)
                    self._drop(topic, str(exc))
                except RedisUnavailableError as exc:
                    delay = backoff.next_delay()
                    log.info("redis still unreachable (%s); retrying in %.2f s", exc.reason, delay)
                    await asyncio.sleep(delay)
                    continue
                except ElogError as exc:
                    self._pending.pop_if(topic, call)
                    self._drop(topic, str(exc))
                except Exception as exc:  # a bug: never leave flush() waiting on a dead task
                    log.exception("unexpected error retrying a publish of %r", shorten(topic))
                    self._pending.pop_if(topic, call)
                    self._drop(topic, f"unexpected error: {exc!r}")
                else:
                    self._pending.pop_if(topic, call)  # unless replaced while being sent
                    backoff.reset()
        finally:
            if not self._pending:
                self._empty.set()
