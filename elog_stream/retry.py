"""A bounded, latest-wins buffer of publishes that wait for Redis to come back."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable

from .errors import RedisUnavailableError
from .protocol import ScriptCall

log = logging.getLogger(__name__)

_MAX_BACKOFF = 5.0


class RetryBuffer:
    """Keeps the newest unsent publish of each topic and retries them until Redis answers.

    At most ``size`` topics wait; a newer image of a waiting topic replaces the older one,
    and a new topic beyond ``size`` evicts the longest-waiting one. Every image dropped so is
    logged and counted in ``dropped`` (by topic). The retry task is owned here: started on the
    first ``add``, stopped by ``aclose``.
    """

    def __init__(self, send: Callable[[ScriptCall], Awaitable[int]], size: int) -> None:
        if size <= 0:
            raise ValueError(f"retry buffer size must be positive, not {size}")
        self._send = send
        self._size = size
        self._pending: dict[str, ScriptCall] = {}
        self._task: asyncio.Task[None] | None = None
        self._empty = asyncio.Event()
        self._empty.set()
        self.dropped: Counter[str] = Counter()

    @property
    def pending(self) -> list[str]:
        """Topics waiting to be sent, longest-waiting first."""
        return list(self._pending)

    def add(self, topic: str, call: ScriptCall) -> None:
        if topic in self._pending:
            self._drop(topic, "replaced by a newer image while Redis was unreachable")
            del self._pending[topic]
        elif len(self._pending) >= self._size:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            self._drop(oldest, f"evicted: more than {self._size} topics waiting for Redis")
        self._pending[topic] = call
        self._empty.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._retry(), name="elog-publish-retry")

    async def wait_empty(self) -> None:
        """Wait until every waiting publish has been sent. Cancelling is safe."""
        await self._empty.wait()

    async def aclose(self) -> None:
        """Stop retrying; what is still waiting is dropped (and logged)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        for topic in list(self._pending):
            self._drop(topic, "publisher closed before Redis came back")
        self._pending.clear()
        self._empty.set()

    def _drop(self, topic: str, reason: str) -> None:
        self.dropped[topic] += 1
        log.warning("dropped an unsent image of %r: %s", topic, reason)

    async def _retry(self) -> None:
        backoff = 0.1
        while self._pending:
            topic, call = next(iter(self._pending.items()))
            try:
                await self._send(call)
            except RedisUnavailableError as exc:
                delay = backoff * random.uniform(0.5, 1.5)
                log.info("redis still unreachable (%s); retrying in %.2f s", exc.reason, delay)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            if self._pending.get(topic) is call:  # not replaced while it was being sent
                del self._pending[topic]
            backoff = 0.1
        self._empty.set()
