"""Exceptions raised by elog-stream, and the one translation of redis-py's errors into them.

ElogError
 ├── SettingsError         (also ValueError)   an invalid setting (argument or ELOG_* variable)
 ├── InvalidNameError      (also ValueError)   bad topic, experiment or description
 ├── InvalidImageError     (also ValueError)   not a PNG/JPEG/WebP/GIF, empty, or too large
 │    └── ImageTooLargeError
 ├── RequestTooLargeError                      an HTTP request body over its limit (413)
 ├── RequestTimeoutError                       an HTTP request body not sent in time (408)
 ├── ServiceBusyError                          too many request bodies in flight (503)
 ├── TopicNotFoundError    (also LookupError)  no live image for a topic
 │    └── VersionNotKeptError                  that version of the topic is no longer kept
 ├── CorruptTopicError                         Redis holds data for a topic that is unusable
 │    └── CorruptEntryError                    ... or a logbook entry or its image
 ├── AlreadyRunningError                       another ``serve`` uses the same data directory
 ├── RedisRefusedError                         Redis answered a command with an error
 └── RedisUnavailableError                     the Redis server cannot be reached
      └── PublishOutcomeUnknownError           a publish was sent but got no answer
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis.exceptions

# Prefix of the errors the scripts of docs/protocol.md raise for data they cannot use.
DATA_ERROR_PREFIX = "ELOGDATA "


class ElogError(Exception):
    """Root of every error raised by elog-stream."""


class SettingsError(ElogError, ValueError):
    """Invalid settings, given as arguments or ``ELOG_*`` variables.

    Each of ``problems`` names the argument or variable, the value given (never a token's) and
    what is expected.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


class AlreadyRunningError(ElogError):
    """Another ``elog-stream serve`` (or its server) uses the same data directory."""

    def __init__(self, data_dir: Path, running: str = "") -> None:
        at = f" at {running}" if running else ""
        super().__init__(
            f"elog-stream serve is already running{at} with data directory {data_dir}; "
            "stop it, or give another --data-dir"
        )
        self.data_dir = data_dir


class InvalidNameError(ElogError, ValueError):
    """A topic, experiment or description breaks the rules of docs/protocol.md."""


class InvalidImageError(ElogError, ValueError):
    """The image is not a supported type (judged by its magic bytes) or is empty."""


class ImageTooLargeError(InvalidImageError):
    """The image is larger than the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"image is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class RequestTooLargeError(ElogError):
    """An HTTP request body (other than an image) is over its limit."""


class RequestTimeoutError(ElogError):
    """An HTTP client did not send its whole request body in time."""


class ServiceBusyError(ElogError):
    """The service holds as many request bodies as it may; retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TopicNotFoundError(ElogError, LookupError):
    """No live image is stored for the topic (never published, or expired)."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"no live image for topic {topic!r}")
        self.topic = topic


class VersionNotKeptError(TopicNotFoundError):
    """The topic's image ``seq`` is no longer kept (or is now another image)."""

    def __init__(self, topic: str, seq: int, reason: str = "is no longer kept") -> None:
        super().__init__(topic)
        self.args = (f"image {seq} of topic {topic!r} {reason}",)
        self.seq = seq


class CorruptTopicError(ElogError):
    """Redis holds data for ``topic`` that breaks docs/protocol.md; ``kind`` names the fault.

    Kinds: ``wrong_type``, ``invalid_field``, ``not_an_image``, ``too_large``.
    Nothing is served from such data, and publishing to the topic is refused until the key is
    deleted or expires: elog-stream never overwrites what it did not write.
    """

    def __init__(self, topic: str, kind: str, reason: str) -> None:
        super().__init__(f"topic {topic[:200]!r} cannot be used: {reason}")
        self.topic = topic
        self.kind = kind
        self.reason = reason


class CorruptEntryError(CorruptTopicError):
    """A logbook entry of ``experiment`` (or its image) in Redis breaks docs/protocol.md."""

    def __init__(self, experiment: str, entry_id: str, kind: str, reason: str) -> None:
        super().__init__(experiment, kind, reason)
        self.args = (f"logbook entry {entry_id} of {experiment[:200]!r} cannot be used: {reason}",)
        self.entry_id = entry_id


class RedisRefusedError(ElogError):
    """Redis at ``url`` answered with an error (out of memory, read-only replica, ACL...)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"Redis at {url} refused the command: {reason}")
        self.url = url
        self.reason = reason


class RedisUnavailableError(ElogError):
    """The Redis server at ``url`` (credentials removed) cannot be reached."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(self._message(url, reason))
        self.url = url
        self.reason = reason

    @staticmethod
    def _message(url: str, reason: str) -> str:
        return f"cannot reach Redis at {url}: {reason}"


class PublishOutcomeUnknownError(RedisUnavailableError):
    """A publish reached Redis (or may have) but no answer came: it may have been stored.

    Retrying may publish the image twice; checking the topic's ``seq`` tells.
    """

    @staticmethod
    def _message(url: str, reason: str) -> str:
        return f"no answer from Redis at {url} ({reason}): the image may have been stored"


@contextlib.contextmanager
def redis_errors(url: str, *, topic: str = "", write: bool = False) -> Iterator[None]:
    """Translate every redis-py exception raised in the block into one of the above.

    ``url`` must already be redacted. ``write`` says that the block sends a write on a
    connection that is already established: if that connection then fails or stays silent,
    the server may have run the write, so PublishOutcomeUnknownError. Cluster errors that
    say nothing was run (CLUSTERDOWN, no node for the slot, no reachable node) are
    RedisUnavailableError; redirections (MOVED, ASK, TRYAGAIN) that reach here are
    RedisRefusedError.
    """
    try:
        try:
            yield
        finally:  # also when redis-py then failed: a lost cancellation must not become a retry
            _reraise_lost_cancellation()
    except redis.exceptions.ClusterDownError as exc:  # CLUSTERDOWN, MASTERDOWN: nothing was run
        raise RedisUnavailableError(url, str(exc)[:500] or "the cluster is down") from exc
    except redis.exceptions.RedisClusterException as exc:  # not a RedisError: no node, no slot
        raise RedisUnavailableError(url, str(exc)[:500] or type(exc).__name__) from exc
    except redis.exceptions.ResponseError as exc:
        message = str(exc)
        if message.startswith(DATA_ERROR_PREFIX):
            kind, _, reason = message.removeprefix(DATA_ERROR_PREFIX).partition(" ")
            raise CorruptTopicError(topic, kind, reason) from None
        if message.startswith("WRONGTYPE"):
            raise CorruptTopicError(topic, "wrong_type", "a key holds the wrong type") from None
        raise RedisRefusedError(url, message[:500]) from exc
    except redis.exceptions.AuthenticationError as exc:  # permanent: retrying cannot help
        raise RedisRefusedError(url, str(exc)[:500]) from exc
    except redis.exceptions.RedisError as exc:  # connection, timeout, garbled replies
        reason = str(exc)[:500] or type(exc).__name__
        if write:
            raise PublishOutcomeUnknownError(url, reason) from exc
        raise RedisUnavailableError(url, reason) from exc


def _reraise_lost_cancellation() -> None:
    # redis-py 8.1 sends with asyncio.wait_for, which on Python 3.11 returns the result and
    # drops a cancellation that arrives as the send completes (CPython gh-86296): the task
    # would run on after Task.cancel(), and a shutdown would wait for it forever. The request
    # is still counted by Task.cancelling(), so it is honoured here.
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop: the blocking Publisher
        return
    if task is not None and task.cancelling():
        raise asyncio.CancelledError("cancelled during a Redis command")
