"""What is read from Redis, parsed at the border into validated, immutable values.

Nothing read from Redis is trusted: the content type is decided from the image's magic bytes
whatever the hash says, numbers must be finite and in range, names follow the publish rules.
Every parser raises CorruptTopicError (with a ``kind``) for data it cannot use.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptTopicError, InvalidImageError, InvalidNameError
from .frames import ImageFrames
from .images import CONTENT_TYPES, sniff_content_type
from .protocol import (
    MAX_DESCRIPTION_LENGTH,
    MAX_HISTORY_LENGTH,
    digest,
    validate_description,
    validate_experiment,
)
from .scripts import PublishCall

MAX_SEQ = 2**53 - 1  # the largest integer a JavaScript viewer holds exactly
MAX_TIME = 1e11  # seconds since 1970: year 5138
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(rb"[0-9a-f]{40}")
# The experiment shown for a hash of the 2014 tool that has none (or an empty one).
LEGACY_EXPERIMENT = "unknown"
_SEQ = re.compile(r"0|[1-9][0-9]{0,15}")  # canonical, as HINCRBY accepts it
# A history entry is small JSON: names, a description and a few numbers.
_MAX_ENTRY_BYTES = 8 * MAX_DESCRIPTION_LENGTH


class UnexpectedReplyError(ValueError):
    """A reply no Redis running the read script gives: the server is not speaking it."""


@dataclass(frozen=True, slots=True)
class TopicImage:
    """An image of a topic and its metadata. Immutable, so it can be shared."""

    topic: str
    experiment: str
    description: str
    seq: int
    updated_at: float
    content_type: str
    digest: str
    data: bytes
    expires_at: float | None = None
    _frames: ImageFrames | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def frames(self) -> ImageFrames:
        """Its frames for viewers, encoded on first use and then shared by all of them."""
        frames = self._frames
        if frames is None:
            frames = ImageFrames(self)
            object.__setattr__(self, "_frames", frames)  # a cache: the image stays immutable
        return frames

    def metadata(self) -> dict[str, Any]:
        """The fields of the WebSocket ``image`` frame and the HTTP topic object."""
        return {
            "topic": self.topic,
            "experiment": self.experiment,
            "description": self.description,
            "seq": self.seq,
            "updated_at": self.updated_at,
            "content_type": self.content_type,
            "size": self.size,
            "digest": self.digest,
        }

    def topic_object(self) -> dict[str, Any]:
        """The HTTP topic object: the metadata and when the topic expires."""
        return {**self.metadata(), "expires_at": self.expires_at}


def published_image(call: PublishCall, seq: int, expires_at: float) -> TopicImage:
    """The TopicImage that a publish answered with ``seq`` stored, without reading it back."""
    return TopicImage(
        topic=call.topic,
        experiment=call.experiment,
        description=call.description,
        seq=seq,
        updated_at=call.updated_at,
        content_type=call.content_type,
        digest=call.digest,
        data=call.data,
        expires_at=expires_at,
    )


def parse_topic(topic: str, reply: Any, now: float, max_image_bytes: int) -> TopicImage | None:
    """The TopicImage in a ``scripts.topic_read_call`` reply at wall-clock ``now``.

    None when the topic does not exist. Hashes missing the newer fields (as the 2014 tool
    wrote them) get computed defaults: seq 0, updated_at 0, the digest of the image.
    """
    found = _bounded(topic, reply)
    if found is None:
        return None
    pttl, values = found
    experiment, description, _, seq, updated_at, stored_digest, data = values
    if not data:
        raise CorruptTopicError(topic, "invalid_field", "its hash has no image (pngimage)")
    _check_size(topic, data, max_image_bytes)
    return TopicImage(
        topic=topic,
        experiment=_name(topic, "experiment", experiment, validate_experiment),
        description=_name(topic, "description", description, validate_description),
        seq=_seq(topic, seq),
        updated_at=_time(topic, updated_at),
        content_type=_content_type(topic, data),
        digest=_digest(topic, stored_digest, data),
        data=data,
        expires_at=now + pttl / 1000 if isinstance(pttl, int) and pttl >= 0 else None,
    )


@dataclass(frozen=True, slots=True)
class LegacyFrame:
    """A validated hash of the 2014 tool, claimed (as ``claim``, its sum) for publishing."""

    topic: str
    experiment: str
    description: str
    data: bytes
    claim: str


class LegacySkip(enum.Enum):
    """Why a legacy read has nothing to publish, yet."""

    BUSY = "busy"  # another service is publishing this key: look again shortly
    SAME = "same"  # this content was claimed already


def parse_legacy(topic: str, reply: Any, max_image_bytes: int) -> LegacyFrame | LegacySkip | None:
    """What a ``scripts.legacy_read_call`` reply found; None when the key is no such hash.

    Raises CorruptTopicError for content that cannot be published (``too_large``,
    ``not_an_image``, ``invalid_field``); ``pending_claim`` then tells the claim to settle.
    """
    if reply is None:
        return None
    if reply in ([b"busy"], [b"same"]):
        return LegacySkip(reply[0].decode())
    if isinstance(reply, list) and len(reply) == 2 and reply[0] == b"size":
        raise CorruptTopicError(topic, "too_large", f"its fields hold {reply[1]} bytes")
    claim = pending_claim(reply)
    if claim is None or not (isinstance(reply[2], list) and len(reply[2]) == 3):
        raise UnexpectedReplyError(f"the legacy read script answered {reply!r:.80}")
    experiment, description, data = reply[2]
    if not isinstance(data, bytes):
        raise CorruptTopicError(topic, "not_an_image", "its pngimage is missing")
    _check_size(topic, data, max_image_bytes)
    _content_type(topic, data)
    return LegacyFrame(
        topic=topic,
        experiment=_name(topic, "experiment", experiment or LEGACY_EXPERIMENT, validate_experiment),
        description=_name(topic, "description", description, validate_description),
        data=data,
        claim=claim,
    )


def pending_claim(reply: Any) -> str | None:
    """The claim a ``legacy_read_call`` reply holds pending (its ``ok`` sum), else None."""
    if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"ok":
        if isinstance(reply[1], bytes) and _SHA1.fullmatch(reply[1]):
            return reply[1].decode()
    return None


def parse_history_entry(topic: str, seq: int, raw: bytes | None) -> dict[str, Any] | None:
    """The metadata of one kept image, from its ``meta:<seq>`` JSON; None if not kept."""
    if raw is None:
        return None
    if len(raw) > _MAX_ENTRY_BYTES:
        raise CorruptTopicError(topic, "invalid_history", f"entry {seq} is {len(raw)} bytes")
    try:
        entry = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep, huge numbers
        raise CorruptTopicError(topic, "invalid_history", f"entry {seq} is not JSON") from None
    if not isinstance(entry, dict):
        raise CorruptTopicError(topic, "invalid_history", f"entry {seq} is not a JSON object")
    size = entry.get("size")
    content_type = entry.get("content_type")
    if not (isinstance(size, int) and 0 < size <= MAX_SEQ) or content_type not in CONTENT_TYPES:
        raise CorruptTopicError(topic, "invalid_history", f"entry {seq} has no valid size/type")
    return {
        "topic": topic,
        "seq": seq,
        "experiment": _name(topic, "experiment", entry.get("experiment"), validate_experiment),
        "description": _name(topic, "description", entry.get("description"), validate_description),
        "updated_at": _time(topic, entry.get("updated_at")),
        "content_type": content_type,
        "size": size,
        "digest": _digest(topic, entry.get("digest"), None),
    }


def parse_history_image(
    topic: str, seq: int, reply: Any, max_image_bytes: int
) -> TopicImage | None:
    """The kept image ``seq`` in a ``scripts.history_image_call`` reply; None if not kept."""
    found = _bounded(topic, reply)
    if found is None:
        return None
    raw_entry, data = found[1]
    entry = parse_history_entry(topic, seq, raw_entry)
    if entry is None or not data:
        return None
    _check_size(topic, data, max_image_bytes)
    return TopicImage(
        topic=topic,
        experiment=entry["experiment"],
        description=entry["description"],
        seq=seq,
        updated_at=entry["updated_at"],
        content_type=_content_type(topic, data),
        digest=entry["digest"],
        data=data,
    )


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """What the latest publish trimmed a topic's history to (the history's ``limits``)."""

    length: int
    bytes: int
    seconds: float  # 0: no time limit


def parse_history_limits(topic: str, raw: Any) -> HistoryLimits | None:
    """The ``limits`` JSON of a history hash; None when absent (written by an earlier script)."""
    if raw is None:
        return None
    try:
        limits = json.loads(raw) if isinstance(raw, bytes) and len(raw) <= 256 else None
    except (ValueError, RecursionError):
        limits = None
    if isinstance(limits, dict):
        length, size, seconds = (_number(limits.get(k)) for k in ("length", "bytes", "seconds"))
        if length in range(1, MAX_HISTORY_LENGTH + 1) and size == int(size) and seconds >= 0:
            return HistoryLimits(int(length), int(size), seconds)
    raise CorruptTopicError(topic, "invalid_history", f"limits {str(raw)[:80]} are unusable")


def _number(value: Any) -> float:
    """A finite number >= 0, else -1."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) and value >= 0 else -1.0


def parse_seq(topic: str, value: Any) -> int | None:
    """A stored sequence number, or None when absent."""
    return None if value is None else _seq(topic, value)


def parse_fields(topic: str, reply: Any) -> list[Any] | None:
    """The values in a ``scripts.read_call`` reply; None when the hash does not exist."""
    found = _bounded(topic, reply)
    return None if found is None else list(found[1])


def _bounded(topic: str, reply: Any) -> tuple[Any, list[Any]] | None:
    # The reply of READ_SCRIPT: None, [b'type', kind], [b'size', n] or [b'ok', pttl, values].
    if reply is None:
        return None
    if isinstance(reply, list) and len(reply) == 2 and reply[0] == b"type":
        kind = reply[1].decode(errors="replace")
        raise CorruptTopicError(topic, "wrong_type", f"its key holds a {kind}, not a hash")
    if isinstance(reply, list) and len(reply) == 2 and reply[0] == b"size":
        raise CorruptTopicError(topic, "too_large", f"its fields hold {reply[1]} bytes")
    if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"ok":
        return reply[1], reply[2]
    raise UnexpectedReplyError(f"the read script answered {reply!r:.80}")


def _check_size(topic: str, data: bytes, max_image_bytes: int) -> None:
    if len(data) > max_image_bytes:
        raise CorruptTopicError(
            topic, "too_large", f"its image is {len(data)} bytes, over {max_image_bytes}"
        )


def _name(topic: str, field: str, value: Any, validate: Any) -> str:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    if text is None and field == "description":
        text = ""
    try:
        return str(validate(text))
    except InvalidNameError as exc:
        raise CorruptTopicError(topic, "invalid_field", str(exc)[:200]) from None


def _seq(topic: str, value: Any) -> int:
    if value is None:
        return 0
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    if not (_SEQ.fullmatch(text) and int(text) <= MAX_SEQ):
        raise CorruptTopicError(
            topic, "invalid_field", f"seq {text[:40]!r} is not an integer from 0 to 2^53-1"
        )
    return int(text)


def _time(topic: str, value: Any) -> float:
    if value is None:
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and 0 <= number <= MAX_TIME):
        raise CorruptTopicError(
            topic, "invalid_field", f"updated_at {str(value)[:40]!r} is not a Unix time"
        )
    return number


def _content_type(topic: str, data: bytes) -> str:
    try:
        return sniff_content_type(data)
    except InvalidImageError as exc:
        raise CorruptTopicError(topic, "not_an_image", str(exc)) from None


def _digest(topic: str, value: Any, data: bytes | None) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    if isinstance(text, str) and _DIGEST.fullmatch(text):
        return text
    if value is None and data is not None:
        return digest(data)  # a hash written by the 2014 tool
    raise CorruptTopicError(topic, "invalid_field", f"digest {str(text)[:80]!r} is not SHA-256")
