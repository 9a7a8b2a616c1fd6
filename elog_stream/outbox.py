"""The blocking Publisher's outbox: frames that one worker thread encodes and sends.

Thread model: any number of callers ``put`` frames; the one worker thread, owned here, takes
them from a Throttle (latest wins per topic, bounded, rate-limited) and hands each to
``deliver``. The worker starts with the first ``put`` (a daemon, so it never holds up exit) and
is stopped by ``close``, which an ``atexit`` hook also calls: pending frames are flushed for at
most ``close_timeout`` seconds, so a process whose Redis is down still exits.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Generic, TypeVar

from .backoff import Backoff
from .errors import ElogError, PublishOutcomeUnknownError, RedisUnavailableError
from .throttle import Throttle
from .throttled_log import ThrottledLog, shorten

log = logging.getLogger(__name__)
V = TypeVar("V")

CLOSE_TIMEOUT = 5.0  # seconds close() (and so the exit) waits for pending frames to be sent
REPLACED = "replaced by a newer image"  # normal when publishing faster than sending: not logged


class Outbox(Generic[V]):
    """Frames waiting for the worker thread, by topic; see the module docstring.

    A frame that finds Redis unreachable stays pending (unless a newer one of its topic came
    meanwhile) and is retried with backoff, so a short outage costs only the frames replaced
    in between. Any other failure drops the frame. Every dropped frame is counted in
    ``dropped`` by topic; all but replaced ones are logged (throttled). Thread-safe.
    """

    def __init__(
        self,
        deliver: Callable[[V], object],
        throttle: Throttle[str, V],
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self._deliver = deliver
        self._throttle = throttle
        self._close_timeout = close_timeout
        self._changed = threading.Condition()  # guards everything below
        self._thread: threading.Thread | None = None
        self._busy = False
        self._closed = False  # put refused
        self._stopping = False  # the worker ends
        self._retry_at = 0.0  # monotonic time before which the worker does not send
        self._dropped: Counter[str] = Counter()
        self._log = ThrottledLog(log)

    @property
    def dropped(self) -> Counter[str]:
        with self._changed:
            return self._dropped.copy()

    @property
    def pending(self) -> int:
        """Topics with a frame waiting (at most the throttle's ``max_keys``)."""
        with self._changed:
            return len(self._throttle)

    def send_now(self, topic: str) -> bool:
        """Whether the caller may send a frame of ``topic`` itself now (see Throttle.send_now)."""
        with self._changed:
            self._check_open()
            return self._throttle.send_now(topic, time.monotonic())

    def put(self, topic: str, frame: V) -> None:
        """Queue ``frame``, replacing a pending one of ``topic``; never blocks on the worker.

        Raises RuntimeError once closed.
        """
        with self._changed:
            self._check_open()
            self._drop_all(topic, self._throttle.hold(topic, frame))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="elog-publisher-outbox", daemon=True
                )
                self._thread.start()
                atexit.register(self.close)
            self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is pending now, whatever the rate limit, and wait until every frame was
        sent or dropped; False if ``timeout`` seconds passed first."""
        with self._changed:
            self._throttle.release_all()
            self._changed.notify_all()
            return self._changed.wait_for(lambda: not self._throttle and not self._busy, timeout)

    def close(self) -> None:
        """Flush for at most ``close_timeout`` s, drop (and log) what is left, stop the worker.

        Safe to call twice; ``put`` raises afterwards.
        """
        with self._changed:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + self._close_timeout
        self.flush(self._close_timeout)
        with self._changed:
            self._stopping = True
            for topic, _ in self._throttle.pop_all():
                self._drop(topic, "not sent before the publisher closed")
            self._changed.notify_all()
        if self._thread is not None:
            atexit.unregister(self.close)
            # A send stuck on a silent Redis ends within its socket timeout; the thread is a
            # daemon, so even then nobody waits for it past the deadline.
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the publisher is closed")

    def _drop_all(self, topic: str, dropped: list[tuple[str, V]]) -> None:
        for other, _ in dropped:
            self._drop(other, REPLACED if other == topic else "too many topics waiting")

    def _drop(self, topic: str, reason: str) -> None:
        self._dropped[topic] += 1
        if reason != REPLACED:
            self._log.warning("dropped an unsent image", topic, f"{shorten(topic)!r}: {reason}")

    def _next(self) -> tuple[str, V] | None:
        """The next frame to send, waiting for one; None once closed. Holds the lock."""
        while not self._stopping:
            now = time.monotonic()
            wait: float | None = self._retry_at - now  # backing off after a failure
            if now >= self._retry_at:
                item = self._throttle.take(now)
                if item is not None:
                    return item
                wait = self._throttle.next_due(now)  # None: nothing pending, wait for a put
            self._changed.wait(wait)
        return None

    def _run(self) -> None:
        backoff = Backoff()
        while True:
            with self._changed:
                item = self._next()
                if item is None:
                    return
                self._busy = True
            topic, frame = item
            failure: str | None = None
            retry = False
            try:
                self._deliver(frame)
            except PublishOutcomeUnknownError as exc:  # sent: retrying could store it twice
                failure = str(exc)
            except RedisUnavailableError as exc:
                retry = True
                failure = str(exc)
            except ElogError as exc:
                failure = str(exc)
            except Exception as exc:  # a bug: log it, and keep the worker alive for the rest
                log.exception("unexpected error publishing an image of %r", shorten(topic))
                failure = f"unexpected error: {exc!r}"
            with self._changed:
                self._busy = False
                self._throttle.done(topic)
                if retry and not self._stopping:
                    delay = backoff.next_delay()
                    self._retry_at = time.monotonic() + delay
                    self._log.warning("redis unreachable", "", f"{failure}; retrying")
                    self._drop_all(topic, self._throttle.restore(topic, frame))
                elif failure is not None:
                    self._drop(topic, failure)
                else:
                    backoff.reset()
                self._changed.notify_all()
