"""Exceptions raised by elog-stream.

ElogError
 ├── InvalidNameError      (also ValueError)   bad topic, experiment or description
 ├── InvalidImageError     (also ValueError)   not a PNG/JPEG, empty, or too large
 │    └── ImageTooLargeError
 ├── TopicNotFoundError    (also LookupError)  no live image for a topic
 └── RedisUnavailableError                     the Redis server cannot be reached
"""

from __future__ import annotations


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


class RedisUnavailableError(ElogError):
    """The Redis server at ``url`` (credentials removed) cannot be reached."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach Redis at {url}: {reason}")
        self.url = url
        self.reason = reason
