"""elog-stream: publish matplotlib figures to Redis; every browser viewing them gets them pushed."""

from .async_publisher import AsyncPublisher
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
from .publisher import Publisher, elogshow, grab
from .records import TopicImage


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext elog_stream``: adds the ``%elog`` magic (see elog_stream.notebook)."""
    from .notebook import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    from .notebook import unload_ipython_extension as unload

    unload(ipython)


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
    "load_ipython_extension",
    "unload_ipython_extension",
]
