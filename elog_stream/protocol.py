"""The Redis wire format of docs/protocol.md: key names, name rules, notifications. No I/O.

The Lua scripts that read and write these keys, and their calls, are in scripts.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import TypeGuard

from .errors import InvalidNameError

DEFAULT_PREFIX = "elog:"
DEFAULT_TTL = 3600
DEFAULT_HISTORY_LENGTH = 50
DEFAULT_HISTORY_BYTES = 50 * 1024 * 1024
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 10_000
# Notifications name one topic (at most 200 characters); anything longer is not one of ours.
MAX_NOTIFICATION_BYTES = 4096
MAX_HISTORY_LENGTH = 10_000  # the publish script treats a longer history as not its own

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DESCRIPTION_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_ELOG_KEY = re.compile(r"(?:topic|history|legacy):\{[^{}]*\}\Z")


def _at_most(limit: int) -> str:
    """A regular expression for the decimal numbers from 0 to ``limit`` (leading zeros allowed
    up to ``limit``'s length)."""
    digits = str(limit)
    shorter = f"[0-9]{{1,{len(digits) - 1}}}" if len(digits) > 1 else None
    same_length = [
        f"{digits[:i]}[0-{int(digit) - 1}][0-9]{{{len(digits) - i - 1}}}"
        for i, digit in enumerate(digits)
        if digit != "0"
    ]
    return "|".join(filter(None, [shorter, *same_length, digits]))


# A logbook entry: its Redis stream id, two numbers of at most 2**64 - 1 (Redis refuses larger).
# The API's schema states this same pattern, so that what it calls valid is accepted.
_STREAM_ID_PART = _at_most(2**64 - 1)
ENTRY_ID = re.compile(f"(?:{_STREAM_ID_PART})-(?:{_STREAM_ID_PART})")


def is_entry_id(text: object) -> TypeGuard[str]:
    """Whether ``text`` is a Redis stream id (ENTRY_ID)."""
    return isinstance(text, str) and ENTRY_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class Keys:
    """Key and channel names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def topic(self, topic: str) -> str:
        # The braces are a Redis Cluster hash tag: all keys of a topic share a slot.
        return f"{self.prefix}topic:{{{topic}}}"

    def topic_of(self, key: bytes | str) -> str:
        """The valid topic name of a topic hash key (inverse of ``topic``).

        Raises InvalidNameError (a ValueError) for any other key.
        """
        name = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
        head = f"{self.prefix}topic:{{"
        if not (name.startswith(head) and name.endswith("}")):
            raise InvalidNameError(
                f"{name[:200]!r} is not a topic key under prefix {self.prefix!r}"
            )
        return validate_topic(name[len(head) : -1])

    def history(self, topic: str) -> str:
        return f"{self.prefix}history:{{{topic}}}"

    def legacy(self, topic: str) -> str:
        """The claim on the bare key ``topic`` written by the 2014 tool (same slot as it)."""
        return f"{self.prefix}legacy:{{{topic}}}"

    @property
    def channel(self) -> str:
        return f"{self.prefix}updates"

    @property
    def topic_pattern(self) -> str:
        """SCAN MATCH pattern of every topic hash."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "topic:{*}"


def is_elog_key(name: str) -> bool:
    """Whether ``name`` has the form of an elog-stream key under any prefix (never a legacy key)."""
    return _ELOG_KEY.search(name) is not None


def validate_topic(topic: str) -> str:
    """Return ``topic`` if it is a valid topic name; raise InvalidNameError saying why not."""
    _check_name("topic", topic)
    if "{" in topic or "}" in topic:
        raise InvalidNameError(f"topic {topic!r} contains '{{' or '}}'")
    segments = topic.split("/")
    if "" in segments:
        raise InvalidNameError(
            f"topic {topic!r} has an empty path segment (leading, trailing or '//')"
        )
    if "." in segments or ".." in segments:
        raise InvalidNameError(f"topic {topic!r} has a '.' or '..' segment (unusable in URLs)")
    if topic.endswith(("/image", "/history")) or "/history/" in topic:
        raise InvalidNameError(
            f"topic {topic!r} ends in '/image' or '/history' or contains '/history/', "
            "which are reserved by the HTTP API"
        )
    return topic


def validate_experiment(experiment: str) -> str:
    """Return ``experiment`` if valid; raise InvalidNameError saying why not."""
    _check_name("experiment", experiment)
    return experiment


def validate_description(description: str) -> str:
    """Return ``description`` if valid; raise InvalidNameError saying why not."""
    if not isinstance(description, str):
        raise InvalidNameError(f"description must be a str, not {type(description).__name__}")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidNameError(
            f"description is {len(description)} characters, over {MAX_DESCRIPTION_LENGTH}"
        )
    if _DESCRIPTION_CONTROL.search(description):
        raise InvalidNameError("description contains control characters (only tab and newline)")
    _check_unicode("description", description)
    return description


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str):
        raise InvalidNameError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidNameError(f"{what} is empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"{what} {value[:40]!r}... is {len(value)} characters, over {MAX_NAME_LENGTH}"
        )
    if _CONTROL.search(value):
        raise InvalidNameError(f"{what} {value!r} contains control characters")
    _check_unicode(what, value)


def _check_unicode(what: str, value: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidNameError(f"{what} {value[:40]!r} is not valid Unicode") from None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Limits:
    """How long topics live and how much history each keeps (``history_seconds`` 0: no
    time limit)."""

    ttl: int = DEFAULT_TTL
    history_length: int = DEFAULT_HISTORY_LENGTH
    history_bytes: int = DEFAULT_HISTORY_BYTES
    history_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Keepalive:
    """A service's own probe on the update channel: it proves the subscription delivers."""

    token: str


@dataclass(frozen=True, slots=True)
class LogbookNotice:
    """A logbook entry was pinned or retracted (docs/protocol.md, "The logbook")."""

    experiment: str
    id: str


class MalformedNotificationError(ValueError):
    """A message on the update channel that is not a notification; ``kind`` says how."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def encode_notification(topic: str) -> bytes:
    return json.dumps({"topic": topic}, ensure_ascii=False, separators=(",", ":")).encode()


def encode_keepalive(token: str) -> bytes:
    return json.dumps({"keepalive": token}, separators=(",", ":")).encode()


def decode_notification(payload: bytes | str) -> str | Keepalive | LogbookNotice:
    """The valid topic named by a notification, or the Keepalive or LogbookNotice it is.

    Raises MalformedNotificationError (kinds ``oversized_notification``,
    ``malformed_notification``, ``invalid_topic``) for anything else; never parses more than
    MAX_NOTIFICATION_BYTES.
    """
    if len(payload) > MAX_NOTIFICATION_BYTES:
        raise MalformedNotificationError(
            "oversized_notification",
            f"notification of {len(payload)} bytes, over {MAX_NOTIFICATION_BYTES}",
        )
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MalformedNotificationError(
            "malformed_notification", f"notification is not JSON: {str(exc)[:100]}"
        ) from None
    if isinstance(message, dict) and isinstance(message.get("keepalive"), str):
        return Keepalive(message["keepalive"])
    if isinstance(message, dict) and "logbook" in message:
        experiment, entry_id = message["logbook"], message.get("id")
        if not is_entry_id(entry_id):
            raise MalformedNotificationError(
                "malformed_notification", f"logbook notification without an id: {payload!r:.100}"
            )
        try:
            return LogbookNotice(validate_experiment(experiment), entry_id)
        except InvalidNameError as exc:
            raise MalformedNotificationError("malformed_notification", str(exc)) from None
    topic = message.get("topic") if isinstance(message, dict) else None
    if not isinstance(topic, str):
        raise MalformedNotificationError(
            "malformed_notification", f"notification has no topic: {payload!r:.100}"
        )
    try:
        return validate_topic(topic)
    except InvalidNameError as exc:
        raise MalformedNotificationError("invalid_topic", str(exc)) from None
