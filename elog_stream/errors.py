"""Exceptions raised by elog-stream, and the one translation of redis-py's errors into them.

ElogError
 ├── InvalidNameError      (also ValueError)   bad topic, experiment or description
 ├── InvalidImageError     (also ValueError)   not a PNG/JPEG/WebP/GIF, empty, or too large
 │    └── ImageTooLargeError
 ├── TopicNotFoundError    (also LookupError)  no live image for a topic
 ├── CorruptTopicError                         Redis holds data for a topic that is unusable
 ├── RedisRefusedError                         Redis answered a command with an error
 └── RedisUnavailableError                     the Redis server cannot be reached
      └── PublishOutcomeUnknownError           a publish was sent but got no answer
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.exceptions

# Prefix of the errors the scripts of docs/protocol.md raise for data they cannot use.
DATA_ERROR_PREFIX = "ELOGDATA "


class ElogError(Exception):
    """Root of every error raised by elog-stream."""


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


class TopicNotFoundError(ElogError, LookupError):
    """No live image is stored for the topic (never published, or expired)."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"no live image for topic {topic!r}")
        self.topic = topic


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
    """Translate redis-py's exceptions raised in the block into the ones above.

    ``url`` must already be redacted. ``write`` says that the block sends a write on a
    connection that is already established, so a reply that times out means the server may
    have run it (it is slow, paused, or the reply was lost): PublishOutcomeUnknownError. A
    connection found closed stays RedisUnavailableError: far more often a pooled connection
    that a restarted server had closed than a server that died just after running the write.
    """
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        message = str(exc)
        if message.startswith(DATA_ERROR_PREFIX):
            kind, _, reason = message.removeprefix(DATA_ERROR_PREFIX).partition(" ")
            raise CorruptTopicError(topic, kind, reason) from None
        if message.startswith("WRONGTYPE"):
            raise CorruptTopicError(topic, "wrong_type", "a key holds the wrong type") from None
        raise RedisRefusedError(url, message[:500]) from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        if write and isinstance(exc, redis.exceptions.TimeoutError):
            raise PublishOutcomeUnknownError(url, reason) from exc
        raise RedisUnavailableError(url, reason) from exc
