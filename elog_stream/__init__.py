"""elog-stream: publish matplotlib figures to Redis; every browser viewing them gets them pushed."""

from .errors import (
    ElogError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidNameError,
    RedisUnavailableError,
    TopicNotFoundError,
)
from .protocol import TopicImage
from .publisher import AsyncPublisher, Publisher, elogshow, grab

__all__ = [
    "AsyncPublisher",
    "ElogError",
    "ImageTooLargeError",
    "InvalidImageError",
    "InvalidNameError",
    "Publisher",
    "RedisUnavailableError",
    "TopicImage",
    "TopicNotFoundError",
    "elogshow",
    "grab",
]
