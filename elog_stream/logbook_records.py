"""What the logbook's scripts return, parsed at the border into validated Entries and bytes.

As for topics (records.py), nothing read from Redis is trusted: every field of an entry is
checked (names by the publish rules, numbers in range, the digest 64 hex digits, the type one
of the four images served), and an image's bytes must have the entry's SHA-256. Unusable
entries are CorruptEntryErrors, so a list can skip them and a single read can refuse them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from .errors import CorruptEntryError, InvalidNameError
from .images import CONTENT_TYPES, sniff_content_type
from .logbook import ENTRY_FIELDS, Entry, Retraction, validate_author, validate_comment
from .protocol import is_entry_id, validate_description, validate_topic
from .records import MAX_SEQ, MAX_TIME

_DIGEST = re.compile(r"[0-9a-f]{64}")
_SEQ = re.compile(r"0|[1-9][0-9]{0,15}")


class UnexpectedLogbookReplyError(ValueError):
    """A reply that no Redis running the logbook scripts gives."""


def parse_entries(experiment: str, reply: Any) -> list[Entry | CorruptEntryError]:
    """The entries (or why each cannot be used) in a ``READ_SCRIPT`` reply; [] for none.

    Raises CorruptEntryError when a key holds another type.
    """
    if reply is None:
        return []
    if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"type":
        key, kind = (part.decode(errors="replace") for part in reply[1:])
        raise CorruptEntryError(experiment, "-", "wrong_type", f"{key} holds a {kind}")
    if not isinstance(reply, list):
        raise UnexpectedLogbookReplyError(f"the logbook read script answered {reply!r:.80}")
    found: list[Entry | CorruptEntryError] = []
    for item in reply:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], bytes)):
            raise UnexpectedLogbookReplyError(f"the logbook read script answered {item!r:.80}")
        entry_id = item[0].decode(errors="replace")
        try:
            found.append(_entry(experiment, entry_id, item[1], item[2]))
        except CorruptEntryError as exc:
            found.append(exc)
    return found


def _entry(experiment: str, entry_id: str, fields: Any, retraction: Any) -> Entry:
    def bad(reason: str) -> CorruptEntryError:
        return CorruptEntryError(experiment, entry_id, "invalid_entry", reason[:200])

    if not isinstance(fields, list) or len(fields) % 2:
        raise bad("its fields are not pairs")
    if len(fields) == 2 and fields[0] == b"size":
        raise CorruptEntryError(experiment, entry_id, "too_large", f"it holds {fields[1]} bytes")
    values: dict[str, str] = {}
    for name, value in zip(fields[::2], fields[1::2], strict=True):
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise bad("its fields are not strings")
        try:
            values[name.decode()] = value.decode()
        except UnicodeDecodeError:
            raise bad(f"field {name[:40]!r} is not UTF-8") from None
    missing = [name for name in ENTRY_FIELDS if name not in values]
    if missing:
        raise bad(f"it lacks {', '.join(missing)}")
    try:
        if values["experiment"] != experiment:
            raise InvalidNameError(f"it names experiment {values['experiment'][:40]!r}")
        entry = Entry(
            id=entry_id,
            experiment=experiment,
            topic=validate_topic(values["topic"]),
            seq=_whole("seq", values["seq"], allow_zero=True),
            description=validate_description(values["description"]),
            digest=_digest(values["digest"]),
            content_type=_content_type(values["content_type"]),
            size=_whole("size", values["size"], allow_zero=False),
            published_at=_time("published_at", values["published_at"]),
            pinned_at=_time("pinned_at", values["pinned_at"]),
            author=validate_author(values["author"]),
            comment=validate_comment(values["comment"]),
            retracted=_retraction(retraction),
        )
    except InvalidNameError as exc:
        raise bad(str(exc)) from None
    if not is_entry_id(entry_id):
        raise bad("its id is not a stream id")
    return entry


def _whole(name: str, text: str, allow_zero: bool) -> int:
    if not (_SEQ.fullmatch(text) and int(text) <= MAX_SEQ and (allow_zero or text != "0")):
        raise InvalidNameError(f"{name} {text[:40]!r} is not an integer in range")
    return int(text)


def _time(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and 0 <= number <= MAX_TIME):
        raise InvalidNameError(f"{name} {str(value)[:40]!r} is not a Unix time")
    return number


def _digest(text: str) -> str:
    if not _DIGEST.fullmatch(text):
        raise InvalidNameError(f"digest {text[:80]!r} is not SHA-256")
    return text


def _content_type(text: str) -> str:
    if text not in CONTENT_TYPES:
        raise InvalidNameError(f"content_type {text[:40]!r} is not an image type served")
    return text


def _retraction(raw: Any) -> Retraction | None:
    if raw is None:
        return None
    if raw == b"size":
        raise InvalidNameError("its retraction is too large")
    try:
        value = json.loads(raw) if isinstance(raw, bytes) else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise InvalidNameError("its retraction is not a JSON object")
    return Retraction(
        by=validate_author(value.get("by")),  # type: ignore[arg-type]  # checked there
        reason=validate_comment(value.get("reason"), "reason"),  # type: ignore[arg-type]
        at=_time("retraction time", value.get("at")),
    )


def parse_image(entry: Entry, reply: Any) -> bytes:
    """The exact bytes ``entry`` pinned, from an ``IMAGE_SCRIPT`` reply: their SHA-256 must
    be the entry's digest and their magic bytes its content type. CorruptEntryError if not."""

    def bad(kind: str, reason: str) -> CorruptEntryError:
        return CorruptEntryError(entry.experiment, entry.id, kind, reason)

    if reply is None:
        raise bad("missing_image", f"its image {entry.digest[:12]}… is not in Redis")
    if not (isinstance(reply, list) and len(reply) == 2):
        raise UnexpectedLogbookReplyError(f"the logbook image script answered {reply!r:.80}")
    status, value = reply
    if status == b"type":
        raise bad("wrong_type", f"its image key holds a {value!r:.40}")
    if status == b"size":
        raise bad("too_large", f"its image is {value} bytes")
    if status != b"ok" or not isinstance(value, bytes):
        raise UnexpectedLogbookReplyError(f"the logbook image script answered {reply!r:.80}")
    if hashlib.sha256(value).hexdigest() != entry.digest:
        raise bad("invalid_image", "its image's bytes do not have its digest")
    try:
        content_type = sniff_content_type(value)
    except ValueError as exc:
        raise bad("not_an_image", str(exc)) from None
    if content_type != entry.content_type:  # served, exported and sent as the entry says
        raise bad("invalid_image", f"its image is {content_type}, not {entry.content_type}")
    return value
