"""The Redis wire format of docs/protocol.md: names, scripts, notifications. No I/O."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import InvalidResponse

from .errors import InvalidNameError
from .images import check_image

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
ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # a logbook entry: its Redis stream id


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


# The publish operation, documented verbatim in docs/protocol.md (a test keeps them equal).
PUBLISH_SCRIPT = """\
-- elog-stream publish (protocol v1): store, count, keep history, expire, notify; atomically.
-- KEYS[1] topic hash {prefix}topic:{T}     KEYS[2] history hash {prefix}history:{T}
-- ARGV[1] channel {prefix}updates          ARGV[2] notification {"topic":"T"}
-- ARGV[3] ttl in seconds                   ARGV[4] history length (0 to 10000)
-- ARGV[5] history byte budget              ARGV[6] history entry JSON (metadata, no seq)
-- ARGV[7] history seconds (0: no time limit) ARGV[8...] field, value pairs of the topic hash
-- (The earlier form, without ARGV[7] and with the pairs from ARGV[7], keeps no time limit.)
-- Returns the topic's new sequence number. Refuses, with an error starting "ELOGDATA <kind>",
-- to touch keys it cannot have written: another type, or a seq that is not an integer.
local topic, history = KEYS[1], KEYS[2]
local ttl, keep, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local seconds, pairs_at = tonumber(ARGV[7]), 8
if seconds == nil then seconds, pairs_at = 0, 7 end  -- a field name: the earlier form
if not (seconds >= 0 and seconds < math.huge) then
  return redis.error_reply('ERR history seconds must be a number >= 0, not '
    .. string.sub(ARGV[7], 1, 40))
end
local function field(name, n) return name .. string.format('%d', n) end
local function whole(value)  -- an integer from 0 to 2^53-2, else nil
  local n = tonumber(value)
  if n and n >= 0 and n < 9007199254740991 and n == math.floor(n) then return n end
end
if redis.acl_check_cmd and not redis.acl_check_cmd('PUBLISH', ARGV[1], ARGV[2]) then
  return redis.error_reply('NOPERM this user may not PUBLISH on ' .. ARGV[1])
end
for _, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'hash' and kind ~= 'none' then
    return redis.error_reply('ELOGDATA wrong_type ' .. key .. ' holds a ' .. kind .. ', not a hash')
  end
end
local old = redis.call('HGET', topic, 'seq')
if old and not ((old == '0' or string.match(old, '^[1-9]%d*$')) and whole(old)) then
  return redis.error_reply('ELOGDATA invalid_field seq of ' .. topic .. ' is '
    .. string.sub(old, 1, 40) .. ', not an integer from 0 to 2^53-2')
end
local seq = redis.call('HINCRBY', topic, 'seq', 1)
if seq == 1 then
  redis.call('DEL', history)  -- a history left from before the topic expired and restarted
end
redis.call('HSET', topic, unpack(ARGV, pairs_at))
redis.call('EXPIRE', topic, ttl)
if keep > 0 then
  local first = whole(redis.call('HGET', history, 'first'))
  local bytes = whole(redis.call('HGET', history, 'bytes'))
  if first == nil or bytes == nil or first > seq or redis.call('HLEN', history) > 20003
      or redis.call('HEXISTS', history, field('meta:', seq)) == 1 then
    -- none yet, not ours, or left over from before the topic expired and restarted at 1
    redis.call('DEL', history)
    first = seq
  end
  local image = redis.call('HGET', topic, 'pngimage')
  redis.call('HSET', history, field('meta:', seq), ARGV[6], field('image:', seq), image)
  bytes = redis.call('HINCRBY', history, 'bytes', string.len(image))
  -- Candidates for trimming, oldest first: the seqs since `first`, or, after a gap (images
  -- published without history, a hand edit), the kept ones by name; so the work is bounded.
  local kept = {}
  if seq - first <= 2 * keep then
    for n = first, seq do kept[#kept + 1] = n end
  else
    for _, name in ipairs(redis.call('HKEYS', history)) do
      local n = tonumber(string.match(name, '^meta:(%d+)$'))
      if n and n <= seq then kept[#kept + 1] = n end
    end
    table.sort(kept)
  end
  -- By time: entries published over `seconds` before this one, by the publishers' clocks
  -- (the entries' updated_at), go; so do unreadable ones.
  local cutoff
  if seconds > 0 then
    local ok, entry = pcall(cjson.decode, ARGV[6])
    if ok and type(entry) == 'table' and type(entry.updated_at) == 'number' then
      cutoff = entry.updated_at - seconds
    end
  end
  local function old(n)
    if not cutoff then return false end
    local ok, meta = pcall(cjson.decode, redis.call('HGET', history, field('meta:', n)))
    return not (ok and type(meta) == 'table' and type(meta.updated_at) == 'number'
      and meta.updated_at >= cutoff)
  end
  local i = 1
  while kept[i] < seq and (seq - kept[i] >= keep or bytes > budget or old(kept[i])) do
    local size = redis.call('HSTRLEN', history, field('image:', kept[i]))
    bytes = redis.call('HINCRBY', history, 'bytes', -size)
    redis.call('HDEL', history, field('meta:', kept[i]), field('image:', kept[i]))
    i = i + 1
  end
  redis.call('HSET', history, 'first', string.format('%d', kept[i]), 'limits',
    string.format('{"length":%.17g,"bytes":%.17g,"seconds":%.17g}', keep, budget, seconds))
  redis.call('EXPIRE', history, ttl)
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return seq
"""

# How the service and the publishers read, documented verbatim in docs/protocol.md: bounded in
# size, so a huge value written by someone else is refused without being transferred.
READ_SCRIPT = """\
-- elog-stream bounded read (protocol v1): named fields of one hash, unless they are too big.
-- KEYS[1] a hash    ARGV[1] byte limit of the fields together    ARGV[2...] field names
-- Returns nil when the key does not exist, {'type', <type>} when it is not a hash,
-- {'size', <bytes>} when the fields hold more than the limit, else {'ok', <pttl>, {values}}.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return nil end
if kind ~= 'hash' then return {'type', kind} end
local size = 0
for i = 2, #ARGV do size = size + redis.call('HSTRLEN', KEYS[1], ARGV[i]) end
if size > tonumber(ARGV[1]) then return {'size', size} end
return {'ok', redis.call('PTTL', KEYS[1]), redis.call('HMGET', KEYS[1], unpack(ARGV, 2))}
"""

# How the service reads a hash written by the 2014 tool (bare key T: experiment, description,
# pngimage, no seq) and claims its content, so that of several services exactly one publishes
# each content once (docs/protocol.md, "Hashes written by the 2014 tool"). Bounded like
# READ_SCRIPT: content over the limit is claimed by its sizes (refused once), neither
# transferred nor hashed.
LEGACY_READ_SCRIPT = """\
-- elog-stream legacy read (protocol v1): a hash of the 2014 tool, claimed once per content.
-- KEYS[1] the bare key T    KEYS[2] its claim {prefix}legacy:{T}; without it, only a probe
-- ARGV[1] byte limit of the three fields together    ARGV[2] claim lifetime in seconds
-- ARGV[3] how long a service may hold the claim while it publishes, in milliseconds
-- T is such a hash when it holds a pngimage field and no seq field (ours have a seq).
-- Returns nil when it is not; {'legacy'} for a probe; {'busy'} while another service
-- publishes T; {'same'} when this content was claimed before; {'size', <bytes>} over the
-- limit (claimed by its sizes alone, so refused once, and never copied nor hashed); else
-- {'ok', <sum>, {experiment, description, pngimage}} with the claim held as 'pending:<sum>'
-- until the service settles it. A 'pending:' claim without expiry is no service's: ignored.
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return nil end
if redis.call('HEXISTS', KEYS[1], 'seq') == 1
    or redis.call('HEXISTS', KEYS[1], 'pngimage') == 0 then
  return nil
end
if #KEYS == 1 then return {'legacy'} end
local claim = redis.call('GET', KEYS[2])
if claim and string.sub(claim, 1, 8) == 'pending:' and redis.call('PTTL', KEYS[2]) > 0 then
  return {'busy'}
end
local fields, sizes, size = {'experiment', 'description', 'pngimage'}, {}, 0
for i = 1, 3 do
  sizes[i] = redis.call('HSTRLEN', KEYS[1], fields[i])
  size = size + sizes[i]
end
if size > tonumber(ARGV[1]) then
  local sum = redis.sha1hex('size:' .. table.concat(sizes, ':'))
  if claim == sum then return {'same'} end
  redis.call('SET', KEYS[2], sum, 'EX', ARGV[2])
  return {'size', size}
end
local values = redis.call('HMGET', KEYS[1], unpack(fields))
local text = {}
for i = 1, 3 do
  local value = values[i] or ''
  text[i] = string.len(value) .. ':' .. value
end
local sum = redis.sha1hex(table.concat(text))
if claim == sum then return {'same'} end
redis.call('SET', KEYS[2], 'pending:' .. sum, 'PX', ARGV[3])
return {'ok', sum, values}
"""

LEGACY_SETTLE_SCRIPT = """\
-- elog-stream legacy settle (protocol v1): end a claim taken by the legacy read.
-- KEYS[1] the claim {prefix}legacy:{T}   ARGV[1] the content's sum   ARGV[2] lifetime in s
-- ARGV[3] '1': done (published or refused), keep the sum; '0': failed, drop the claim.
-- Only a claim still held as 'pending:<sum>' is touched. Returns 1 if it was, else 0.
if redis.call('GET', KEYS[1]) ~= 'pending:' .. ARGV[1] then return 0 end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

# The fields of a topic hash, in the order a read asks for them.
TOPIC_FIELDS = ("experiment", "description", "content_type", "seq", "updated_at", "digest")
IMAGE_FIELD = "pngimage"
# Room for the text fields of a hash next to its image, in a bounded read.
FIELDS_BYTES = 64 * 1024


@dataclass(frozen=True)
class ScriptCall:
    keys: list[str | bytes]
    args: list[Any]

    def command(self, script: str, *, by_sha: bool = True) -> tuple[Any, ...]:
        """The ``EVALSHA`` command running ``script`` (``EVAL`` when the server lacks it)."""
        head = ("EVALSHA", _sha1(script)) if by_sha else ("EVAL", script)
        return (*head, len(self.keys), *self.keys, *self.args)


@functools.cache
def _sha1(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


@dataclass(frozen=True)
class Limits:
    """How long topics live and how much history each keeps (``history_seconds`` 0: no
    time limit)."""

    ttl: int = DEFAULT_TTL
    history_length: int = DEFAULT_HISTORY_LENGTH
    history_bytes: int = DEFAULT_HISTORY_BYTES
    history_seconds: float = 0.0


@dataclass(frozen=True)
class PublishCall(ScriptCall):
    """A ``PUBLISH_SCRIPT`` call (it returns the new seq) and the metadata it stores."""

    topic: str
    experiment: str
    description: str
    content_type: str
    updated_at: float
    digest: str
    data: bytes

    @property
    def topic_key(self) -> str:
        """The key of the topic hash, which decides the cluster node the call goes to."""
        key = self.keys[0]
        return key if isinstance(key, str) else key.decode()


def publish_call(
    keys: Keys,
    limits: Limits,
    topic: str,
    experiment: str,
    description: str,
    data: bytes,
    max_image_bytes: int,
    now: float,
) -> PublishCall:
    """The checked call publishing ``data`` at wall-clock ``now``.

    Raises InvalidNameError for bad names and InvalidImageError (ImageTooLargeError over
    ``max_image_bytes``) for anything but a PNG, JPEG, WebP or GIF.
    """
    validate_topic(topic)
    validate_experiment(experiment)
    validate_description(description)
    content_type = check_image(data, max_image_bytes)
    updated_at = f"{now:.6f}"
    fields = {
        "experiment": experiment,
        "description": description,
        "content_type": content_type,
        "updated_at": updated_at,
        "digest": digest(data),
    }
    entry = json.dumps({**fields, "updated_at": float(updated_at), "size": len(data)})
    return PublishCall(
        keys=[keys.topic(topic), keys.history(topic)],
        args=[
            keys.channel,
            encode_notification(topic),
            limits.ttl,
            limits.history_length,
            limits.history_bytes,
            entry,
            repr(float(limits.history_seconds)),
            *[item for pair in fields.items() for item in pair],
            IMAGE_FIELD,
            data,
        ],
        topic=topic,
        experiment=experiment,
        description=description,
        content_type=content_type,
        updated_at=float(updated_at),
        digest=fields["digest"],
        data=data,
    )


def seq_reply(reply: object) -> int:
    """The seq a ``PUBLISH_SCRIPT`` call answered; InvalidResponse if the peer answered else."""
    if isinstance(reply, int) and not isinstance(reply, bool) and reply > 0:
        return reply
    raise InvalidResponse(f"the publish script answered {reply!r:.60}")


def read_call(key: str, fields: Sequence[str], limit: int) -> ScriptCall:
    """A ``READ_SCRIPT`` call for ``fields`` of the hash ``key``, refused over ``limit`` bytes."""
    return ScriptCall(keys=[key], args=[limit, *fields])


def topic_read_call(keys: Keys, topic: str, max_image_bytes: int) -> ScriptCall:
    """A ``READ_SCRIPT`` call for the topic hash; ``records.parse_topic`` parses its reply."""
    fields = [*TOPIC_FIELDS, IMAGE_FIELD]
    return read_call(keys.topic(topic), fields, max_image_bytes + FIELDS_BYTES)


def history_image_call(keys: Keys, topic: str, seq: int, max_image_bytes: int) -> ScriptCall:
    """A ``READ_SCRIPT`` call for one kept image; ``records.parse_history_image`` parses it."""
    fields = [f"meta:{seq}", f"image:{seq}"]
    return read_call(keys.history(topic), fields, max_image_bytes + FIELDS_BYTES)


def legacy_read_call(
    keys: Keys, key: bytes, topic: str | None, limit: int, ttl: int, hold_ms: int
) -> ScriptCall:
    """A ``LEGACY_READ_SCRIPT`` call claiming the bare ``key`` of ``topic``; with no topic (an
    invalid name) a probe that only says whether it is such a hash."""
    claim = [] if topic is None else [keys.legacy(topic)]
    return ScriptCall(keys=[key, *claim], args=[limit, ttl, hold_ms])


def legacy_settle_call(keys: Keys, topic: str, claim: str, ttl: int, done: bool) -> ScriptCall:
    """A ``LEGACY_SETTLE_SCRIPT`` call ending the claim ``claim`` (a sum) on ``topic``."""
    return ScriptCall(keys=[keys.legacy(topic)], args=[claim, ttl, "1" if done else "0"])


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
        if not (isinstance(entry_id, str) and ENTRY_ID.fullmatch(entry_id)):
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
