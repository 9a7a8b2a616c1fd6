"""elog-stream: publish matplotlib figures to Redis; every browser viewing them gets them pushed."""

from .errors import (
    CorruptTopicError,
    ElogError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidNameError,
    PublishOutcomeUnknownError,
    RedisRefusedError,
    RedisUnavailableError,
    SettingsError,
    TopicNotFoundError,
)
from .publisher import AsyncPublisher, Publisher, elogshow, grab
from .records import TopicImage

__all__ = [
    "AsyncPublisher",
    "CorruptTopicError",
    "ElogError",
    "ImageTooLargeError",
    "InvalidImageError",
    "InvalidNameError",
    "PublishOutcomeUnknownError",
    "Publisher",
    "RedisRefusedError",
    "RedisUnavailableError",
    "SettingsError",
    "TopicImage",
    "TopicNotFoundError",
    "elogshow",
    "grab",
]
