"""The Redis wire format of docs/protocol.md: names, hash fields, notifications. No I/O."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidNameError
from .images import sniff_content_type

DEFAULT_PREFIX = "elog:"
DEFAULT_TTL = 3600
DEFAULT_HISTORY_LENGTH = 50
DEFAULT_HISTORY_BYTES = 50 * 1024 * 1024
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 10_000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DESCRIPTION_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


@dataclass(frozen=True)
class Keys:
    """Key and channel names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def topic(self, topic: str) -> str:
        # The braces are a Redis Cluster hash tag: all keys of a topic share a slot.
        return f"{self.prefix}topic:{{{topic}}}"

    def topic_of(self, key: bytes | str) -> str:
        """Return the topic name of a topic hash key (inverse of ``topic``)."""
        name = key.decode() if isinstance(key, bytes) else key
        head = f"{self.prefix}topic:{{"
        if not (name.startswith(head) and name.endswith("}")):
            raise ValueError(f"{name!r} is not a topic key under prefix {self.prefix!r}")
        return name[len(head) : -1]

    def history(self, topic: str) -> str:
        return f"{self.prefix}history:{{{topic}}}"

    @property
    def channel(self) -> str:
        return f"{self.prefix}updates"

    @property
    def topic_pattern(self) -> str:
        """SCAN MATCH pattern of every topic hash."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "topic:{*}"


@dataclass(frozen=True, slots=True)
class TopicImage:
    """The current image of a topic and its metadata. Immutable, so it can be shared."""

    topic: str
    experiment: str
    description: str
    seq: int
    updated_at: float
    content_type: str
    digest: str
    data: bytes
    expires_at: float | None = None

    @property
    def size(self) -> int:
        return len(self.data)

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
    return description


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str):
        raise InvalidNameError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidNameError(f"{what} is empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{what} is {len(value)} characters, over {MAX_NAME_LENGTH}")
    if _CONTROL.search(value):
        raise InvalidNameError(f"{what} {value!r} contains control characters")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The publish operation, documented verbatim in docs/protocol.md (a test keeps them equal).
PUBLISH_SCRIPT = """\
-- elog-stream publish (protocol v1): store, count, keep history, expire, notify; atomically.
-- KEYS[1] topic hash {prefix}topic:{T}     KEYS[2] history hash {prefix}history:{T}
-- ARGV[1] channel {prefix}updates          ARGV[2] notification {"topic":"T"}
-- ARGV[3] ttl in seconds                   ARGV[4] history length (0 keeps no history)
-- ARGV[5] history byte budget              ARGV[6] history entry JSON (metadata, no seq)
-- ARGV[7...] field, value pairs of the topic hash
-- Returns the topic's new sequence number.
local topic, history = KEYS[1], KEYS[2]
local ttl, keep, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local seq = redis.call('HINCRBY', topic, 'seq', 1)
redis.call('HSET', topic, unpack(ARGV, 7))
redis.call('EXPIRE', topic, ttl)
if keep > 0 then
  local first = tonumber(redis.call('HGET', history, 'first'))
  if first == nil or first > seq or redis.call('HEXISTS', history, 'meta:' .. seq) == 1 then
    -- none yet, or left over from before the topic expired and restarted at 1
    redis.call('DEL', history)
    first = seq
  end
  local image = redis.call('HGET', topic, 'pngimage')
  redis.call('HSET', history, 'meta:' .. seq, ARGV[6], 'image:' .. seq, image)
  local bytes = redis.call('HINCRBY', history, 'bytes', string.len(image))
  while first < seq and (seq - first >= keep or bytes > budget) do
    local size = redis.call('HSTRLEN', history, 'image:' .. first)
    bytes = redis.call('HINCRBY', history, 'bytes', -size)
    redis.call('HDEL', history, 'meta:' .. first, 'image:' .. first)
    first = first + 1
  end
  redis.call('HSET', history, 'first', first)
  redis.call('EXPIRE', history, ttl)
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return seq
"""


@dataclass(frozen=True)
class ScriptCall:
    keys: list[str]
    args: list[Any]


def publish_call(
    keys: Keys,
    topic: str,
    experiment: str,
    description: str,
    data: bytes,
    content_type: str,
    limits: Limits,
    now: float,
) -> ScriptCall:
    """The keys and arguments of one ``PUBLISH_SCRIPT`` call; it returns the new seq.

    The names and image must already be validated.
    """
    fields = {
        "experiment": experiment,
        "description": description,
        "content_type": content_type,
        "updated_at": f"{now:.6f}",
        "digest": digest(data),
    }
    entry = json.dumps({**fields, "updated_at": round(now, 6), "size": len(data)})
    return ScriptCall(
        keys=[keys.topic(topic), keys.history(topic)],
        args=[
            keys.channel,
            encode_notification(topic),
            limits.ttl,
            limits.history_length,
            limits.history_bytes,
            entry,
            *[item for pair in fields.items() for item in pair],
            "pngimage",
            data,
        ],
    )


@dataclass(frozen=True)
class Limits:
    """How long topics live and how much history each keeps."""

    ttl: int = DEFAULT_TTL
    history_length: int = DEFAULT_HISTORY_LENGTH
    history_bytes: int = DEFAULT_HISTORY_BYTES


def encode_notification(topic: str) -> bytes:
    return json.dumps({"topic": topic}, ensure_ascii=False, separators=(",", ":")).encode()


def decode_notification(payload: bytes | str) -> str:
    """Return the topic named by a notification; raise ValueError if it is malformed."""
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"notification is not JSON: {exc}") from None
    topic = message.get("topic") if isinstance(message, dict) else None
    if not isinstance(topic, str):
        raise ValueError(f"notification has no topic: {payload!r:.200}")
    return topic


def read_commands(keys: Keys, topic: str) -> list[tuple[Any, ...]]:
    """The commands that read a topic; ``parse_read`` turns their replies into a TopicImage."""
    key = keys.topic(topic)
    return [("HGETALL", key), ("PTTL", key)]


def parse_read(topic: str, replies: list[Any], now: float) -> TopicImage | None:
    """TopicImage from the replies of ``read_commands`` at wall-clock ``now``; None if absent.

    Hashes missing the newer fields (as the 2014 tool wrote them) get computed defaults.
    """
    fields, pttl = replies
    data = fields.get(b"pngimage")
    if not data:
        return None
    content_type = fields.get(b"content_type")
    return TopicImage(
        topic=topic,
        experiment=_text(fields.get(b"experiment")),
        description=_text(fields.get(b"description")),
        seq=int(fields.get(b"seq") or 0),
        updated_at=float(fields.get(b"updated_at") or 0.0),
        content_type=content_type.decode() if content_type else _sniff_or_png(data),
        digest=_text(fields.get(b"digest")) or digest(data),
        data=data,
        expires_at=now + pttl / 1000 if pttl >= 0 else None,
    )


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", errors="replace") if value else ""


def _sniff_or_png(data: bytes) -> str:
    try:
        return sniff_content_type(data)
    except ValueError:
        return "image/png"
