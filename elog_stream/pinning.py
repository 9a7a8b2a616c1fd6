"""Pinning from Python: who signs a pin, and the blocking pin behind ``Publisher.pin``.

The asyncio twin (``AsyncPublisher.pin``) runs the same steps on a LogbookStore; the checks
and the Redis calls themselves are in logbook.py, written once.
"""

from __future__ import annotations

import getpass
import os
import time
from typing import TYPE_CHECKING

from .config import Settings
from .errors import RedisUnavailableError, redis_errors
from .logbook import (
    Entry,
    LogbookKeys,
    check_version,
    entry_id_reply,
    pin_call,
)
from .logbook_scripts import PIN_SCRIPT
from .protocol import READ_SCRIPT, history_image_call, validate_topic
from .records import TopicImage, parse_history_image

if TYPE_CHECKING:
    from .publisher import Publisher


def author_of(settings: Settings, author: str | None) -> str:
    """``author``, else ``ELOG_AUTHOR`` (``settings.author``), else the OS user's name."""
    if author is not None:
        return author
    if settings.author is not None:
        return settings.author
    try:
        return getpass.getuser()
    except OSError:  # no name for this uid (a container)
        return f"uid {os.getuid()}"


def pin_blocking(
    publisher: Publisher,
    topic: str,
    comment: str,
    seq: int | None,
    author: str | None,
    digest: str | None,
) -> Entry:
    """See ``Publisher.pin``."""
    current = publisher.grab(validate_topic(topic))
    kept: TopicImage | None = current
    if seq is not None and seq != current.seq:
        kept = _kept_image(publisher, topic, seq)
    image = check_version(topic, seq, digest, kept)
    settings = publisher.settings
    call = pin_call(
        LogbookKeys(settings.prefix), image, author_of(settings, author), comment, time.time()
    )
    client = publisher.redis
    with redis_errors(publisher.url, topic=image.experiment):
        client.sadd(LogbookKeys(settings.prefix).index, image.experiment)
    with redis_errors(publisher.url, topic=image.experiment, write=True):
        reply = client.register_script(PIN_SCRIPT)(keys=call.keys, args=call.args)
    try:
        return call.entry(entry_id_reply(reply))
    except ValueError as exc:
        raise RedisUnavailableError(publisher.url, str(exc)) from None


def _kept_image(publisher: Publisher, topic: str, seq: int) -> TopicImage | None:
    settings = publisher.settings
    call = history_image_call(settings.keys, topic, seq, settings.max_image_bytes)
    with redis_errors(publisher.url, topic=topic):
        reply = publisher.redis.register_script(READ_SCRIPT)(keys=call.keys, args=call.args)
    return parse_history_image(topic, seq, reply, settings.max_image_bytes)
