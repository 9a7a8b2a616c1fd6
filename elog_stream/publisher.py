"""Publish images to Redis and read them back, synchronously or with asyncio.

``Publisher`` and ``AsyncPublisher`` are thin I/O layers over ``_Core``, which validates the input
and builds the commands of docs/protocol.md. A publish becomes a ``Frame`` in the caller's
thread (names checked, pixels copied), which is encoded and sent there or later: by the
Publisher's outbox thread (background mode, rate limit; outbox.py) or the AsyncPublisher's
task (rate limit), both holding frames in a Throttle (throttle.py). ``elogshow`` and ``grab``
are the module-level drop-ins for the 2014 tool, on shared Publishers created on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from redis.commands.core import Script
from redis.exceptions import AskError, NoScriptError

from .config import DEFAULT_REDIS_URL, Settings, redact_url
from .connections import MAX_REDIRECTS, Redirect, SyncClient, checkout_sync, open_sync, plain_sync
from .errors import (
    CorruptTopicError,
    ElogError,
    PublishOutcomeUnknownError,
    RedisRefusedError,
    RedisUnavailableError,
    TopicNotFoundError,
    redis_errors,
)
from .images import Captured, Encoding, Format, capture, encode
from .local import find_running
from .logbook import Entry, check_version
from .logbook_store import LogbookStore
from .outbox import CLOSE_TIMEOUT, REPLACED, Outbox
from .pinning import author_of, pin_blocking
from .protocol import (
    PUBLISH_SCRIPT,
    READ_SCRIPT,
    PublishCall,
    ScriptCall,
    seq_reply,
    topic_read_call,
    validate_description,
    validate_experiment,
    validate_topic,
)
from .protocol import publish_call as _publish_call
from .records import TopicImage, parse_topic
from .retry import RetryBuffer
from .store import TopicStore
from .throttle import Throttle
from .throttled_log import ThrottledLog, shorten

log = logging.getLogger(__name__)

_SCAN_BATCH = 100
MAX_PENDING_TOPICS = 100  # default bound on topics whose frame waits to be sent


@dataclass(frozen=True, slots=True)
class Frame:
    """One publish, checked and captured in the caller's thread, still to encode and send."""

    topic: str
    experiment: str
    description: str
    captured: Captured
    encoding: Encoding
    published_at: float  # wall-clock time of the publish() call: the image's updated_at


class _Core:
    """Validation, calls and error translation shared by both publishers. No I/O."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = redis_url_for(self.settings)
        self.shown_url = redact_url(self.url)

    def frame(
        self, topic: str, experiment: str, image: Any, description: str, encoding: Encoding
    ) -> Frame:
        """Check the names and copy the image (see images.capture): all that may raise for bad
        input, so the caller learns at once, even when the frame is sent later."""
        validate_topic(topic)
        validate_experiment(experiment)
        validate_description(description)
        captured = capture(image, encoding)
        return Frame(topic, experiment, description, captured, encoding, time.time())

    def publish_call(self, frame: Frame, data: bytes) -> PublishCall:
        settings = self.settings
        return _publish_call(
            settings.keys, settings.limits, frame.topic, frame.experiment, frame.description,
            data, settings.max_image_bytes, frame.published_at,
        )  # fmt: skip

    def read_call(self, topic: str) -> ScriptCall:
        settings = self.settings
        return topic_read_call(settings.keys, validate_topic(topic), settings.max_image_bytes)

    def read(self, topic: str, reply: Any) -> TopicImage:
        image = parse_topic(topic, reply, time.time(), self.settings.max_image_bytes)
        if image is None:
            raise TopicNotFoundError(topic)
        return image

    def errors(
        self, topic: str = "", write: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        return redis_errors(self.shown_url, topic=topic, write=write)


def redis_url_for(settings: Settings) -> str:
    """``settings.redis_url``, else that of a running local ``elog-stream serve`` (its runtime
    file, found as Jupyter finds its servers), else DEFAULT_REDIS_URL."""
    running = None if settings.redis_url else find_running(settings.data_dir)
    return settings.redis_url or (running.url if running else DEFAULT_REDIS_URL)


class Publisher:
    """Publishes images to Redis and reads them back (blocking).

    ``redis_url`` defaults to ``$ELOG_REDIS_URL``, then to the embedded server of a running
    ``elog-stream serve`` of this user (found through its runtime file in ``$ELOG_DATA_DIR``,
    else the default data directory; see local.py), then to ``redis://localhost:6379/0``,
    decided once, here. The other options left None come from ``ELOG_*`` variables, else the
    defaults (see config.Settings): ``prefix``, ``ttl`` (seconds), ``history_length``,
    ``history_bytes``, ``history_seconds``, ``max_image_bytes``, ``redis_timeout`` (seconds).
    Invalid ones raise SettingsError (a ValueError). Nothing connects until the first call.
    Methods raise RedisUnavailableError when Redis cannot be reached, RedisRefusedError when it
    answers with an error, CorruptTopicError when the topic's keys hold data elog-stream did
    not write. ``redis_url`` may name one server or any node of a Redis Cluster: the first call
    finds out which. Safe to share between threads.

    ``background=True``: ``publish`` only checks the names and copies the image (a figure is
    drawn, see images.capture), queues the frame and returns None; a worker thread owned by
    the publisher encodes and sends it. Per topic only the newest queued frame is kept; at most
    ``max_pending_topics`` topics wait, a new one beyond evicts the longest-waiting frame.
    While Redis is unreachable the worker keeps the newest frame of each topic and retries
    with backoff. ``flush()`` waits until everything queued was sent or dropped; ``close()``,
    also called at exit, flushes for at most 5 s, then drops what is left.

    ``max_rate`` (default ``$ELOG_MAX_RATE``, else none): at most that many frames per second
    per topic. A publish that comes sooner is held (replacing an older held one) and sent by
    the worker thread when the topic's interval has passed, even if nothing more is published;
    it returns None. Frames replaced, evicted or not sendable are counted in ``dropped``
    (failures are logged); frames stored are counted in ``sent``, both by topic.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        background: bool = False,
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
        self._core = _Core(settings)
        self._plain = plain_sync(self._core.url, settings.redis_timeout)
        self._client: SyncClient | None = None
        self._read_script: Script | None = None
        self._opening = threading.Lock()
        self._background = background
        self._outbox: Outbox[Frame] | None = None
        if background or settings.max_rate is not None:
            throttle: Throttle[str, Frame] = Throttle(settings.max_rate, max_pending_topics)
            self._outbox = Outbox(self._deliver, throttle)
        self._counting = threading.Lock()
        self._sent: Counter[str] = Counter()

    @property
    def settings(self) -> Settings:
        return self._core.settings

    @property
    def url(self) -> str:
        """The Redis URL this publisher uses (password shown as ``***``), chosen on creation."""
        return self._core.shown_url

    @property
    def redis(self) -> SyncClient:
        """The underlying redis-py client (a RedisCluster on a cluster), owned by this publisher.

        Connects on first use; raises RedisUnavailableError when Redis cannot be reached.
        """
        if self._client is None:
            with self._opening:
                if self._client is None:
                    with self._core.errors():
                        client = open_sync(self._plain, self._core.url, self.settings.redis_timeout)
                    self._read_script = client.register_script(READ_SCRIPT)
                    self._client = client
        return self._client

    def publish(
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
        """Store ``image`` as the topic's current image and notify viewers; return its seq.

        ``image`` is a matplotlib Figure, a numpy array (2-D data drawn with ``cmap``,
        ``vmin``, ``vmax`` as ``imshow`` does, or H×W×3/4 RGB(A)), a PIL image, PNG/JPEG/WebP/GIF
        bytes, or a path to such a file. Pixels are encoded as ``format`` (png, jpeg, webp) with
        ``compress_level`` (PNG, 0-9) or ``quality`` (JPEG/WebP, 1-100); bytes and files are
        sent as they are. Raises InvalidNameError, ValueError (options) or InvalidImageError
        for bad input, also in background mode (checked before queuing), and
        PublishOutcomeUnknownError when Redis got the publish but did not answer in time.

        Returns None instead of a seq when the frame was queued (background mode, or held by
        ``max_rate``): it is sent later by the worker thread, whose errors are logged and
        counted in ``dropped``. Raises RuntimeError after ``close()`` in those modes.
        """
        encoding = Encoding(format, compress_level, quality, cmap, vmin, vmax)
        frame = self._core.frame(topic, experiment, image, description, encoding)
        outbox = self._outbox
        if outbox is None or (not self._background and outbox.send_now(topic)):
            return self._deliver(frame)
        outbox.put(topic, frame)
        return None

    def _deliver(self, frame: Frame) -> int:
        """Encode and send ``frame`` (in the caller's or the outbox's thread); count it sent."""
        call = self._core.publish_call(frame, encode(frame.captured, frame.encoding))
        seq = self._send(call)
        with self._counting:
            self._sent[frame.topic] += 1
        return seq

    def _send(self, call: PublishCall) -> int:
        topic = call.topic
        client = self.redis
        redirect: Redirect | None = None
        for _ in range(MAX_REDIRECTS):
            with contextlib.ExitStack() as stack:
                with self._core.errors(topic):  # connected: nothing is sent yet
                    connection = stack.enter_context(
                        checkout_sync(client, call.topic_key, redirect)
                    )
                with self._core.errors(topic, write=True):
                    try:
                        try:
                            connection.send_command(*call.command(PUBLISH_SCRIPT))
                            return seq_reply(connection.read_response())
                        except NoScriptError:  # the first publish to this server
                            connection.send_command(*call.command(PUBLISH_SCRIPT, by_sha=False))
                            return seq_reply(connection.read_response())
                    except AskError as exc:  # MOVED or ASK: not run; send it where it belongs
                        redirect = Redirect(exc)
        raise RedisRefusedError(self._core.shown_url, f"{MAX_REDIRECTS} redirections in a row")

    def grab(self, topic: str) -> TopicImage:
        """The current image of ``topic``; raises TopicNotFoundError if there is none."""
        call = self._core.read_call(topic)
        self.redis  # noqa: B018 (connects, and registers the script)
        script = self._read_script
        if script is None:
            raise RuntimeError("unreachable: the read script is registered on connecting")
        with self._core.errors(topic):
            return self._core.read(topic, script(keys=call.keys, args=call.args))

    def pin(
        self,
        topic: str,
        comment: str,
        seq: int | None = None,
        *,
        author: str | None = None,
        digest: str | None = None,
    ) -> Entry:
        """Pin the topic's image ``seq`` (None: its current image) to its experiment's logbook
        for good, with ``comment`` (plain text), signed ``author`` (default ``$ELOG_AUTHOR``,
        else the OS user name); return the entry.

        The entry keeps the exact bytes. Raises TopicNotFoundError when the topic has no live
        image, VersionNotKeptError (a TopicNotFoundError) when ``seq`` is no longer kept or,
        given ``digest`` (SHA-256 hex), when that version is now another image; InvalidNameError
        for bad text. Never sent twice: PublishOutcomeUnknownError when unanswered.
        """
        return pin_blocking(self, topic, comment, seq, author, digest)

    def topics(self) -> list[TopicImage]:
        """The current image of every live topic, sorted by topic name (unusable ones skipped)."""
        keys = self.settings.keys
        with self._core.errors():
            # On a cluster redis-py scans every master in turn.
            names = list(
                self.redis.scan_iter(match=keys.topic_pattern, count=_SCAN_BATCH, _type="hash")
            )
        found = []
        for key in names:
            with contextlib.suppress(ElogError, ValueError):  # gone since, or not usable
                found.append(self.grab(keys.topic_of(key)))
        return sorted(found, key=lambda image: image.topic)

    @property
    def sent(self) -> Counter[str]:
        """Frames stored in Redis, by topic."""
        with self._counting:
            return self._sent.copy()

    @property
    def dropped(self) -> Counter[str]:
        """Frames never stored, by topic: replaced by a newer one of their topic, evicted, or
        refused (see the class docstring). Always empty in plain blocking mode."""
        return self._outbox.dropped if self._outbox else Counter()

    @property
    def pending(self) -> int:
        """Topics whose frame waits for the worker thread (at most ``max_pending_topics``)."""
        return self._outbox.pending if self._outbox else 0

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued or held now (whatever ``max_rate``) and wait until every frame
        was sent or dropped; False if ``timeout`` seconds passed first. True at once when
        nothing is queued."""
        return self._outbox.flush(timeout) if self._outbox else True

    def close(self) -> None:
        """Flush (for at most 5 s; what is left is dropped and logged), stop the worker thread,
        close the connections. Safe to call twice."""
        if self._outbox is not None:
            self._outbox.close()
        if self._client is not None and self._client is not self._plain:
            self._client.close()
        self._plain.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
        self._core = _Core(settings)
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


_shared: dict[tuple[str | None, bool], Publisher] = {}
_shared_lock = threading.Lock()


def _shared_publisher(redis_url: str | None, background: bool = False) -> Publisher:
    with _shared_lock:
        key = (redis_url, background)
        if key not in _shared:
            _shared[key] = Publisher(redis_url, background=background)
        return _shared[key]


def elogshow(
    topic: str,
    experiment: str,
    description: str = "",
    figure: Any = None,
    *,
    redis_url: str | None = None,
    block: bool = True,
    pin: str | None = None,
) -> int | None:
    """Publish ``figure`` (the current pyplot figure when None) live; use instead of plt.show().

    Drop-in for the 2014 ``elog.elogshow``; returns the topic's new sequence number. With
    ``block=False`` the figure is drawn now and sent by a shared background Publisher (see
    Publisher's ``background``), and None is returned; what is queued is sent at exit.
    ``pin="comment"`` also pins the frame just published to the experiment's logbook (see
    Publisher.pin); it needs ``block=True`` (ValueError otherwise).
    """
    if pin is not None and not block:
        raise ValueError("pin needs block=True: the frame must be stored before it is pinned")
    if figure is None:
        from matplotlib import pyplot

        figure = pyplot.gcf()
    publisher = _shared_publisher(redis_url, background=not block)
    seq = publisher.publish(topic, experiment, figure, description)
    if pin is not None:
        if seq is None:
            raise RuntimeError(f"the frame of {topic!r} was held by max_rate: nothing to pin")
        publisher.pin(topic, pin, seq)
    return seq


def grab(topic: str, *, redis_url: str | None = None) -> TopicImage:
    """The current image and metadata of ``topic``; raises TopicNotFoundError if none."""
    return _shared_publisher(redis_url).grab(topic)
