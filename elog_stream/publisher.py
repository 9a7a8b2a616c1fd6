"""Publish images to Redis and read them back, synchronously or with asyncio.

``Publisher`` and ``AsyncPublisher`` are thin I/O layers over ``_Core``, which validates the input
and builds the commands of docs/protocol.md. ``elogshow`` and ``grab`` are the module-level
drop-ins for the 2014 tool, on a shared ``Publisher`` created on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
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
from .images import Encoding, Format, capture, encode, image_bytes
from .local import find_running
from .protocol import (
    PUBLISH_SCRIPT,
    READ_SCRIPT,
    PublishCall,
    ScriptCall,
    seq_reply,
    topic_read_call,
    validate_topic,
)
from .protocol import publish_call as _publish_call
from .records import TopicImage, parse_topic
from .retry import RetryBuffer
from .store import TopicStore

_SCAN_BATCH = 100


class _Core:
    """Validation, calls and error translation shared by both publishers. No I/O."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = self.settings.redis_url or _local_url(self.settings) or DEFAULT_REDIS_URL
        self.shown_url = redact_url(self.url)

    def publish_call(
        self, topic: str, experiment: str, data: bytes, description: str
    ) -> PublishCall:
        settings = self.settings
        return _publish_call(
            settings.keys, settings.limits, topic, experiment, description, data,
            settings.max_image_bytes, time.time(),
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


def _local_url(settings: Settings) -> str | None:
    """The URL of a running local ``elog-stream serve`` (its runtime file), like Jupyter's."""
    running = find_running(settings.data_dir)
    return running.url if running else None


class Publisher:
    """Publishes images to Redis and reads them back (blocking).

    ``redis_url`` defaults to ``$ELOG_REDIS_URL``, then to the embedded server of a running
    ``elog-stream serve`` of this user (found through its runtime file in ``$ELOG_DATA_DIR``,
    else the default data directory; see local.py), then to ``redis://localhost:6379/0``,
    decided once, here. The other options left None come from ``ELOG_*`` variables, else the
    defaults (see config.Settings): ``prefix``, ``ttl`` (seconds), ``history_length``,
    ``history_bytes``, ``max_image_bytes``, ``redis_timeout`` (seconds). Invalid ones raise
    SettingsError (a ValueError). Nothing connects until the first call. Methods raise
    RedisUnavailableError when Redis cannot be reached, RedisRefusedError when it answers with
    an error, CorruptTopicError when the topic's keys hold data elog-stream did not write.
    ``redis_url`` may name one server or any node of a Redis Cluster: the first call finds out
    which. Safe to share between threads.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        prefix: str | None = None,
        ttl: int | None = None,
        history_length: int | None = None,
        history_bytes: int | None = None,
        max_image_bytes: int | None = None,
        redis_timeout: float | None = None,
    ) -> None:
        settings = Settings.from_env(
            redis_url=redis_url, prefix=prefix, ttl=ttl, history_length=history_length,
            history_bytes=history_bytes, max_image_bytes=max_image_bytes,
            redis_timeout=redis_timeout,
        )  # fmt: skip
        self._core = _Core(settings)
        self._plain = plain_sync(self._core.url, settings.redis_timeout)
        self._client: SyncClient | None = None
        self._read_script: Script | None = None
        self._opening = threading.Lock()

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
    ) -> int:
        """Store ``image`` as the topic's current image and notify viewers; return its seq.

        ``image`` is a matplotlib Figure, a numpy array (2-D data drawn with ``cmap``,
        ``vmin``, ``vmax`` as ``imshow`` does, or H×W×3/4 RGB(A)), a PIL image, PNG/JPEG/WebP/GIF
        bytes, or a path to such a file. Pixels are encoded as ``format`` (png, jpeg, webp) with
        ``compress_level`` (PNG, 0-9) or ``quality`` (JPEG/WebP, 1-100); bytes and files are
        sent as they are. Raises InvalidNameError or InvalidImageError (both ValueError) for bad
        input, and PublishOutcomeUnknownError when Redis got the publish but did not answer in
        time.
        """
        encoding = Encoding(format, compress_level, quality, cmap, vmin, vmax)
        data = image_bytes(image, encoding)
        call = self._core.publish_call(topic, experiment, data, description)
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

    def close(self) -> None:
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
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        retry_buffer: int = 0,
        prefix: str | None = None,
        ttl: int | None = None,
        history_length: int | None = None,
        history_bytes: int | None = None,
        max_image_bytes: int | None = None,
        redis_timeout: float | None = None,
    ) -> None:
        settings = Settings.from_env(
            redis_url=redis_url, prefix=prefix, ttl=ttl, history_length=history_length,
            history_bytes=history_bytes, max_image_bytes=max_image_bytes,
            redis_timeout=redis_timeout,
        )  # fmt: skip
        self._core = _Core(settings)
        self._store = TopicStore(self._core.url, self._core.settings)
        self._retry = RetryBuffer(self._store.send, retry_buffer) if retry_buffer else None

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

        With a ``retry_buffer``, a publish that finds Redis unreachable (or finds others still
        waiting) is kept for retrying and None is returned instead of raising.
        """
        encoding = Encoding(format, compress_level, quality, cmap, vmin, vmax)
        captured = capture(image, encoding)
        data = captured.data
        if data is None:
            data = await asyncio.to_thread(encode, captured, encoding)
        call = self._core.publish_call(topic, experiment, data, description)
        if self._retry is None:
            return await self._store.send(call)
        if not self._retry.pending:  # else this one must not overtake the waiting ones
            try:
                return await self._store.send(call)
            except PublishOutcomeUnknownError:
                raise  # sent: retrying could store it twice
            except RedisUnavailableError:
                pass
        self._retry.add(topic, call)
        return None

    @property
    def dropped(self) -> Counter[str]:
        """Images dropped by the retry buffer, counted by topic (empty without one)."""
        return self._retry.dropped if self._retry else Counter()

    async def flush(self) -> None:
        """Wait until every publish kept for retrying was sent or dropped. Cancelling is safe."""
        if self._retry is not None:
            await self._retry.wait_empty()

    async def grab(self, topic: str) -> TopicImage:
        """See Publisher.grab."""
        image = await self._store.read(validate_topic(topic))
        if image is None:
            raise TopicNotFoundError(topic)
        return image

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
        """Close the connection; publishes still kept for retrying are dropped and logged."""
        if self._retry is not None:
            await self._retry.aclose()
        await self._store.aclose()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_shared: dict[str | None, Publisher] = {}
_shared_lock = threading.Lock()


def _shared_publisher(redis_url: str | None) -> Publisher:
    with _shared_lock:
        if redis_url not in _shared:
            _shared[redis_url] = Publisher(redis_url)
        return _shared[redis_url]


def elogshow(
    topic: str,
    experiment: str,
    description: str = "",
    figure: Any = None,
    *,
    redis_url: str | None = None,
) -> int:
    """Publish ``figure`` (the current pyplot figure when None) live; use instead of plt.show().

    Drop-in for the 2014 ``elog.elogshow``; returns the topic's new sequence number.
    """
    if figure is None:
        from matplotlib import pyplot

        figure = pyplot.gcf()
    return _shared_publisher(redis_url).publish(topic, experiment, figure, description)


def grab(topic: str, *, redis_url: str | None = None) -> TopicImage:
    """The current image and metadata of ``topic``; raises TopicNotFoundError if none."""
    return _shared_publisher(redis_url).grab(topic)
