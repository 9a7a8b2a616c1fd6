"""``AsyncPublisher``: the asyncio twin of ``Publisher`` (publisher.py), over a TopicStore.

Both share ``publisher.PublisherCore`` (validation, calls, no I/O). A publish that ``max_rate``
holds waits in a Throttle (throttle.py) and is sent by a task owned by the publisher; with a
retry buffer (retry.py) publishes that find Redis unreachable are retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any

from .config import Settings
from .errors import (
    CorruptTopicError,
    ElogError,
    PublishOutcomeUnknownError,
    RedisUnavailableError,
    TopicNotFoundError,
)
from .images import Encoding, Format, encode
from .logbook import Entry, check_version
from .logbook_store import LogbookStore
from .outbox import CLOSE_TIMEOUT, REPLACED
from .pinning import author_of
from .protocol import validate_topic
from .publisher import MAX_PENDING_TOPICS, Frame, PublisherCore
from .records import TopicImage
from .retry import RetryBuffer
from .scripts import PublishCall
from .store import TopicStore
from .throttle import Throttle
from .throttled_log import ThrottledLog, shorten

log = logging.getLogger(__name__)


class AsyncPublisher:
    """The asyncio twin of Publisher; same arguments, methods are coroutines.

    A thin layer over a TopicStore (the same Redis gateway the service uses). Figures and files
    are rendered/read in a worker thread so the event loop keeps running. Cancelling a call is
    safe: a publish either happened whole or not at all.

    ``retry_buffer=N`` (default 0: raise at once) rides out Redis outages: the newest image of
    up to N topics is kept and retried with backoff until Redis answers; images dropped on the
    way (replaced, evicted, or refused for good) are logged and counted in ``dropped``.

    ``max_rate`` and ``max_pending_topics`` as for Publisher: a publish that comes too soon is
    held and sent by a task owned by this publisher when its topic's interval has passed (with
    the retry buffer's help, if any); ``aclose`` sends what is held, for at most 5 s.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        retry_buffer: int = 0,
        max_rate: float | None = None,
        max_pending_topics: int = MAX_PENDING_TOPICS,
        prefix: str | None = None,
        ttl: int | None = None,
        history_length: int | None = None,
        history_bytes: int | None = None,
        history_seconds: float | None = None,
        max_image_bytes: int | None = None,
        redis_timeout: float | None = None,
    ) -> None:
        settings = Settings.from_env(
            redis_url=redis_url, prefix=prefix, ttl=ttl, history_length=history_length,
            history_bytes=history_bytes, history_seconds=history_seconds,
            max_image_bytes=max_image_bytes,
            redis_timeout=redis_timeout, max_rate=max_rate,
        )  # fmt: skip
        self._core = PublisherCore(settings)
        self._store = TopicStore(self._core.url, self._core.settings)
        self._logbook = LogbookStore(self._store, self._core.settings)
        self._retry = RetryBuffer(self._send, retry_buffer) if retry_buffer else None
        self._throttle: Throttle[str, Frame] | None = None
        if settings.max_rate is not None:
            self._throttle = Throttle(settings.max_rate, max_pending_topics)
        self._held_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # something was held, or flushed
        self._sent: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._log = ThrottledLog(log)

    @property
    def settings(self) -> Settings:
        return self._core.settings

    async def publish(
        self,
        topic: str,
        experiment: str,
        image: Any,
        description: str = "",
        *,
        format: Format = "png",
        compress_level: int | None = None,
        quality: int | None = None,
        cmap: str | None = None,
        vmin: float | None = None,
        vmax: float | None = None,
    ) -> int | None:
        """See Publisher.publish. The pixels are copied in the caller's thread (a figure is
        drawn there: matplotlib is not thread-safe) and encoded in a worker thread.

        Returns None instead of a seq when the publish was held by ``max_rate``, or, with a
        ``retry_buffer``, when it found Redis unreachable (or others still waiting) and was
        kept for retrying instead of raising.
        """
        encoding = Encoding(format, compress_level, quality, cmap, vmin, vmax)
        frame = self._core.frame(topic, experiment, image, description, encoding)
        throttle = self._throttle
        if throttle is None or throttle.send_now(topic, time.monotonic()):
            return await self._publish(frame)
        for dropped, _ in throttle.hold(topic, frame):
            self._drop(dropped, REPLACED if dropped == topic else "too many topics waiting")
        self._wake.set()
        if self._held_task is None or self._held_task.done():
            self._held_task = asyncio.create_task(self._send_held(), name="elog-publish-held")
        return None

    async def _publish(self, frame: Frame) -> int | None:
        data = frame.captured.data
        if data is None:
            data = await asyncio.to_thread(encode, frame.captured, frame.encoding)
        call = self._core.publish_call(frame, data)
        if self._retry is None:
            return await self._send(call)
        if not self._retry.pending:  # else this one must not overtake the waiting ones
            try:
                return await self._send(call)
            except PublishOutcomeUnknownError:
                raise  # sent: retrying could store it twice
            except RedisUnavailableError:
                pass
        self._retry.add(frame.topic, call)
        return None

    async def _send(self, call: PublishCall) -> int:
        seq = await self._store.send(call)
        self._sent[call.topic] += 1
        return seq

    async def _send_held(self) -> None:
        """Send each held frame when due; ends when none is held. Owned by this publisher."""
        throttle = self._throttle
        if throttle is None:
            raise RuntimeError("unreachable: frames are held only with a max_rate")
        while (delay := throttle.next_due(time.monotonic())) is not None:
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            item = throttle.take(time.monotonic())
            if item is None:
                continue
            topic, frame = item
            try:
                await self._publish(frame)
            except asyncio.CancelledError:
                self._drop(topic, "not sent before the publisher closed")
                raise
            except ElogError as exc:
                self._drop(topic, str(exc))
            except Exception as exc:  # a bug: log it, and keep sending the others
                log.exception("unexpected error publishing an image of %r", shorten(topic))
                self._drop(topic, f"unexpected error: {exc!r}")
            finally:
                throttle.done(topic)

    def _drop(self, topic: str, reason: str) -> None:
        """Count a held frame dropped; log why unless it was replaced by a newer one."""
        self._dropped[topic] += 1
        if reason != REPLACED:
            self._log.warning("dropped an unsent image", topic, f"{shorten(topic)!r}: {reason}")

    @property
    def sent(self) -> Counter[str]:
        """Frames stored in Redis, by topic."""
        return self._sent.copy()

    @property
    def dropped(self) -> Counter[str]:
        """Frames never stored, by topic: replaced, evicted or refused while held by
        ``max_rate`` or kept by the retry buffer."""
        retried = self._retry.dropped if self._retry else Counter()
        return self._dropped + retried

    async def flush(self) -> None:
        """Send what ``max_rate`` holds now, then wait until every held or retried publish was
        sent or dropped. Cancelling is safe (the frames stay queued)."""
        task = self._held_task
        if self._throttle is not None and task is not None:
            self._throttle.release_all()
            self._wake.set()
            await asyncio.wait([task])
        if self._retry is not None:
            await self._retry.wait_empty()

    async def grab(self, topic: str) -> TopicImage:
        """See Publisher.grab."""
        image = await self._store.read(validate_topic(topic))
        if image is None:
            raise TopicNotFoundError(topic)
        return image

    async def pin(
        self,
        topic: str,
        comment: str,
        seq: int | None = None,
        *,
        author: str | None = None,
        digest: str | None = None,
    ) -> Entry:
        """See Publisher.pin."""
        current = await self.grab(topic)
        kept: TopicImage | None = current
        if seq is not None and seq != current.seq:
            kept = await self._store.history_image(topic, seq)
        image = check_version(topic, seq, digest, kept)
        return await self._logbook.pin(image, author_of(self.settings, author), comment)

    async def topics(self) -> list[TopicImage]:
        """See Publisher.topics."""
        found = []
        for topic in await self._store.versions():
            with contextlib.suppress(CorruptTopicError):  # not usable: skipped
                image = await self._store.read(topic)
                if image is not None:
                    found.append(image)
        return sorted(found, key=lambda image: image.topic)

    async def ping(self) -> None:
        """Raise RedisUnavailableError unless Redis answers."""
        await self._store.ping()

    async def aclose(self) -> None:
        """Send what ``max_rate`` holds (for at most 5 s), then close the connection; frames
        still held, or kept for retrying, are dropped and logged. Safe to call twice."""
        task, self._held_task = self._held_task, None
        if task is not None and self._throttle is not None:
            self._throttle.release_all()
            self._wake.set()
            try:
                await asyncio.wait([task], timeout=CLOSE_TIMEOUT)
            finally:
                task.cancel()
                await asyncio.wait([task])
            for topic, _ in self._throttle.pop_all():
                self._drop(topic, "not sent before the publisher closed")
        if self._retry is not None:
            await self._retry.aclose()
        await self._store.aclose()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
