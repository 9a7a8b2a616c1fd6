"""The logbook's Redis layout (docs/protocol.md, "The logbook"): keys, entries, the checks of
comments and authors, and the calls of its scripts (logbook_scripts.py). No I/O.

Per experiment E (hash tag ``{E}``, so all of an experiment's keys share a Cluster slot):
an append-only stream of entries ``{prefix}logbook:{E}``, the images they pin by SHA-256
``{prefix}logbook:{E}:image:<digest>`` (one copy however often pinned) and the retractions
``{prefix}logbook:{E}:retracted`` (entry id -> who, why, when; set once, never changed).
``{prefix}logbooks`` is the set of experiments that have a logbook, and
``{prefix}logbook-webhook-since`` when a webhook first forwarded entries. Nothing expires.
Everything read back is checked in logbook_records.py: it is untrusted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .errors import InvalidNameError, TopicNotFoundError, VersionNotKeptError
from .protocol import is_entry_id, validate_experiment
from .records import TopicImage
from .scripts import ScriptCall

MAX_COMMENT_LENGTH = 10_000
MAX_AUTHOR_LENGTH = 100
MAX_PAGE = 200  # entries per page at most
# The text of one entry is a few names and a comment; anything larger was not written by us.
MAX_ENTRY_BYTES = 64 * 1024
WEBHOOK_GROUP = "elog-webhook"  # the consumer group the webhook delivers from (webhook.py)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# The fields of an entry in the stream, in the order the pin script writes them.
ENTRY_FIELDS = (
    "experiment", "topic", "seq", "description", "digest", "content_type", "size",
    "published_at", "pinned_at", "author", "comment",
)  # fmt: skip


@dataclass(frozen=True)
class LogbookKeys:
    """The logbook's key names under one prefix."""

    prefix: str

    @property
    def index(self) -> str:
        """The set of experiments that have a logbook."""
        return f"{self.prefix}logbooks"

    @property
    def channel(self) -> str:
        return f"{self.prefix}updates"

    @property
    def webhook_since(self) -> str:
        """When a service first forwarded new entries to a webhook (Unix time)."""
        return f"{self.prefix}logbook-webhook-since"

    def stream(self, experiment: str) -> str:
        return f"{self.prefix}logbook:{{{experiment}}}"

    def retracted(self, experiment: str) -> str:
        return f"{self.prefix}logbook:{{{experiment}}}:retracted"

    def image(self, experiment: str, digest: str) -> str:
        return f"{self.prefix}logbook:{{{experiment}}}:image:{digest}"


def logbook_experiment(experiment: str) -> str:
    """``experiment`` if it can have a logbook; InvalidNameError if not (braces would break
    the hash tag that keeps an experiment's keys together)."""
    validate_experiment(experiment)
    if "{" in experiment or "}" in experiment:
        raise InvalidNameError(f"experiment {experiment!r} contains '{{' or '}}': no logbook")
    return experiment


def validate_comment(text: str, what: str = "comment") -> str:
    """Plain text of at most MAX_COMMENT_LENGTH characters, tab and newline the only control
    characters; InvalidNameError saying why not."""
    if not isinstance(text, str):
        raise InvalidNameError(f"{what} must be a str, not {type(text).__name__}")
    if len(text) > MAX_COMMENT_LENGTH:
        raise InvalidNameError(f"{what} is {len(text)} characters, over {MAX_COMMENT_LENGTH}")
    if _TEXT_CONTROL.search(text):
        raise InvalidNameError(f"{what} contains control characters (only tab and newline)")
    _check_unicode(what, text)
    return text


def validate_author(name: str) -> str:
    """A name of 1 to MAX_AUTHOR_LENGTH characters, not blank, without control characters."""
    if not isinstance(name, str):
        raise InvalidNameError(f"author must be a str, not {type(name).__name__}")
    if not name.strip():
        raise InvalidNameError("author is empty")
    if len(name) > MAX_AUTHOR_LENGTH:
        raise InvalidNameError(f"author is {len(name)} characters, over {MAX_AUTHOR_LENGTH}")
    if _CONTROL.search(name):
        raise InvalidNameError(f"author {name[:40]!r} contains control characters")
    _check_unicode("author", name)
    return name


def _check_unicode(what: str, value: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidNameError(f"{what} is not valid Unicode") from None


@dataclass(frozen=True, slots=True)
class Retraction:
    by: str
    reason: str
    at: float

    def as_json(self) -> dict[str, Any]:
        return {"by": self.by, "reason": self.reason, "at": self.at}


@dataclass(frozen=True, slots=True)
class Entry:
    """One pinned image of an experiment's logbook, and its retraction if any. Immutable."""

    id: str
    experiment: str
    topic: str
    seq: int
    description: str
    digest: str
    content_type: str
    size: int
    published_at: float
    pinned_at: float
    author: str
    comment: str
    retracted: Retraction | None = None

    @property
    def url(self) -> str:
        """Relative to the service root, the experiment percent-encoded as one segment."""
        return f"api/logbook/{quote(self.experiment, safe='')}/entries/{self.id}"

    def as_json(self) -> dict[str, Any]:
        """The entry object of docs/protocol.md."""
        return {
            "id": self.id,
            "experiment": self.experiment,
            "topic": self.topic,
            "seq": self.seq,
            "description": self.description,
            "digest": self.digest,
            "content_type": self.content_type,
            "size": self.size,
            "published_at": self.published_at,
            "pinned_at": self.pinned_at,
            "author": self.author,
            "comment": self.comment,
            "retracted": None if self.retracted is None else self.retracted.as_json(),
            "url": self.url,
            "image_url": self.url + "/image",
        }

    def matches(self, words: list[str]) -> bool:
        """Whether every word (lower case) is in the comment, topic, author or description."""
        text = "\n".join((self.comment, self.topic, self.author, self.description)).lower()
        return all(word in text for word in words)


def search_words(query: str | None) -> list[str]:
    return (query or "").lower().split()


# ---- pinning ----------------------------------------------------------------------------


def check_version(
    topic: str, seq: int | None, digest: str | None, image: TopicImage | None
) -> TopicImage:
    """``image`` if it is the version of ``topic`` asked for; else the error saying why not.

    ``image`` is what was read for ``seq`` (the current image when ``seq`` is None); a
    ``digest`` given by the caller must match, so a topic that restarted at 1 never gives
    another image than the one seen.
    """
    if image is None:
        if seq is None:
            raise TopicNotFoundError(topic)
        raise VersionNotKeptError(topic, seq)
    if digest is not None and image.digest != digest:
        raise VersionNotKeptError(topic, image.seq, f"is now another image ({image.digest[:12]}…)")
    return image


@dataclass(frozen=True)
class PinCall(ScriptCall):
    """A ``PIN_SCRIPT`` call and the entry it appends (``entry`` with the id it answers)."""

    image: TopicImage
    author: str
    comment: str
    pinned_at: float

    def entry(self, entry_id: str) -> Entry:
        image = self.image
        return Entry(
            id=entry_id,
            experiment=image.experiment,
            topic=image.topic,
            seq=image.seq,
            description=image.description,
            digest=image.digest,
            content_type=image.content_type,
            size=image.size,
            published_at=image.updated_at,
            pinned_at=self.pinned_at,
            author=self.author,
            comment=self.comment,
        )


def pin_call(
    keys: LogbookKeys, image: TopicImage, author: str, comment: str, now: float
) -> PinCall:
    """The checked call pinning ``image`` (validated, read from Redis) at wall-clock ``now``.

    Raises InvalidNameError for a bad author or comment, or an experiment that cannot have
    a logbook.
    """
    experiment = logbook_experiment(image.experiment)
    validate_author(author)
    validate_comment(comment)
    pinned_at = float(f"{now:.6f}")
    values = {
        "experiment": experiment,
        "topic": image.topic,
        "seq": str(image.seq),
        "description": image.description,
        "digest": image.digest,
        "content_type": image.content_type,
        "size": str(image.size),
        "published_at": repr(image.updated_at),
        "pinned_at": f"{pinned_at:.6f}",
        "author": author,
        "comment": comment,
    }
    pairs = [item for name in ENTRY_FIELDS for item in (name, values[name])]
    return PinCall(
        keys=[keys.stream(experiment), keys.image(experiment, image.digest)],
        args=[keys.channel, image.data, experiment, *pairs],
        image=image,
        author=author,
        comment=comment,
        pinned_at=pinned_at,
    )


def entry_id_reply(reply: object) -> str:
    """The entry id a ``PIN_SCRIPT`` call answered; ValueError for anything else."""
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    if isinstance(text, str) and is_entry_id(text):
        return text
    raise ValueError(f"the pin script answered {reply!r:.60}")


# ---- retracting -------------------------------------------------------------------------


def retract_call(
    keys: LogbookKeys, experiment: str, entry_id: str, by: str, reason: str, now: float
) -> ScriptCall:
    """The checked call retracting entry ``entry_id``; InvalidNameError for bad text."""
    validate_author(by)
    validate_comment(reason, "reason")
    retraction = json.dumps({"by": by, "reason": reason, "at": float(f"{now:.6f}")})
    return ScriptCall(
        keys=[keys.stream(experiment), keys.retracted(experiment)],
        args=[keys.channel, experiment, entry_id, retraction],
    )


# ---- reading ----------------------------------------------------------------------------


def read_call(
    keys: LogbookKeys, experiment: str, newest: str = "+", oldest: str = "-", count: int = 1
) -> ScriptCall:
    """A ``READ_SCRIPT`` call; ``parse_entries`` parses its reply."""
    return ScriptCall(
        keys=[keys.stream(experiment), keys.retracted(experiment)],
        args=[newest, oldest, count, MAX_ENTRY_BYTES],
    )


def image_call(keys: LogbookKeys, entry: Entry, max_image_bytes: int) -> ScriptCall:
    return ScriptCall(keys=[keys.image(entry.experiment, entry.digest)], args=[max_image_bytes])
