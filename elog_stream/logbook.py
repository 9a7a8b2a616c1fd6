"""The logbook's Redis layout (docs/protocol.md, "The logbook"): keys, scripts, entries. No I/O.

Per experiment E (hash tag ``{E}``, so all of an experiment's keys share a Cluster slot):
an append-only stream of entries ``{prefix}logbook:{E}``, the images they pin by SHA-256
``{prefix}logbook:{E}:image:<digest>`` (one copy however often pinned) and the retractions
``{prefix}logbook:{E}:retracted`` (entry id -> who, why, when; set once, never changed).
``{prefix}logbooks`` is the set of experiments that have a logbook, and
``{prefix}logbook-webhook-since`` when a webhook first forwarded entries. Nothing expires.
Everything read back is checked here (``parse_entries``, ``parse_image``): it is untrusted.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .errors import CorruptEntryError, InvalidNameError, TopicNotFoundError, VersionNotKeptError
from .images import CONTENT_TYPES, sniff_content_type
from .protocol import (
    ENTRY_ID,
    ScriptCall,
    validate_description,
    validate_experiment,
    validate_topic,
)
from .records import MAX_SEQ, MAX_TIME, TopicImage

MAX_COMMENT_LENGTH = 10_000
MAX_AUTHOR_LENGTH = 100
MAX_PAGE = 200  # entries per page at most
# The text of one entry is a few names and a comment; anything larger was not written by us.
MAX_ENTRY_BYTES = 64 * 1024
WEBHOOK_GROUP = "elog-webhook"  # the consumer group the webhook delivers from (webhook.py)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SEQ = re.compile(r"0|[1-9][0-9]{0,15}")
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


PIN_SCRIPT = """\
-- elog-stream logbook pin (protocol v1): keep an image and append an entry, atomically.
-- KEYS[1] the stream {prefix}logbook:{E}   KEYS[2] the image {prefix}logbook:{E}:image:<sha256>
-- ARGV[1] channel {prefix}updates   ARGV[2] the image bytes   ARGV[3] the experiment E
-- ARGV[4...] field, value pairs of the entry
-- Returns the new entry's id. Refuses, with an error starting "ELOGDATA wrong_type", keys
-- that hold another type. The image key is content-addressed: written only if it differs.
if redis.acl_check_cmd and not redis.acl_check_cmd('PUBLISH', ARGV[1], '{}') then
  return redis.error_reply('NOPERM this user may not PUBLISH on ' .. ARGV[1])
end
local want = {'stream', 'string'}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= want[i] and kind ~= 'none' then
    return redis.error_reply('ELOGDATA wrong_type ' .. key .. ' holds a ' .. kind)
  end
end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  redis.call('SET', KEYS[2], ARGV[2])
end
-- The webhook's consumer group starts with the experiment's first entry (an error when it
-- exists already, ignored).
redis.pcall('XGROUP', 'CREATE', KEYS[1], 'elog-webhook', '$', 'MKSTREAM')
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
redis.call('PUBLISH', ARGV[1], cjson.encode({logbook = ARGV[3], id = id}))
return id
"""


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
    if isinstance(text, str) and ENTRY_ID.fullmatch(text):
        return text
    raise ValueError(f"the pin script answered {reply!r:.60}")


# ---- retracting -------------------------------------------------------------------------

RETRACT_SCRIPT = """\
-- elog-stream logbook retract (protocol v1): mark an entry retracted, once; it stays readable.
-- KEYS[1] the stream {prefix}logbook:{E}   KEYS[2] the retractions {prefix}logbook:{E}:retracted
-- ARGV[1] channel {prefix}updates   ARGV[2] the experiment E   ARGV[3] the entry id
-- ARGV[4] the retraction JSON {"by": ..., "reason": ..., "at": <Unix time>}
-- Returns 'ok', 'already' (retracted before: nothing changes) or 'missing' (no such entry).
local want = {'stream', 'hash'}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= want[i] and kind ~= 'none' then
    return redis.error_reply('ELOGDATA wrong_type ' .. key .. ' holds a ' .. kind)
  end
end
if #redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3]) == 0 then return 'missing' end
if redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[4]) == 0 then return 'already' end
redis.call('PUBLISH', ARGV[1], cjson.encode({logbook = ARGV[2], id = ARGV[3]}))
return 'ok'
"""


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

READ_SCRIPT = """\
-- elog-stream logbook read (protocol v1): entries newest first, with their retractions.
-- KEYS[1] the stream {prefix}logbook:{E}   KEYS[2] the retractions {prefix}logbook:{E}:retracted
-- ARGV[1] newest id ('+', an id, or '(' .. id for those before it)   ARGV[2] oldest ('-', an id)
-- ARGV[3] at most this many entries   ARGV[4] byte limit of one entry's values, and of a retraction
-- Returns nil when there is no stream, {'type', key, kind} when a key holds another type, else
-- {{id, {field, value, ...} or {'size', bytes}, retraction JSON or nil or 'size'}, ...}.
local want = {'stream', 'hash'}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= want[i] and kind ~= 'none' then return {'type', key, kind} end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local limit, found = tonumber(ARGV[4]), {}
for _, entry in ipairs(redis.call('XREVRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])) do
  local fields, size = entry[2], 0
  for _, value in ipairs(fields) do size = size + string.len(value) end
  if size > limit then fields = {'size', size} end
  local retraction = redis.call('HGET', KEYS[2], entry[1])
  if retraction and string.len(retraction) > limit then retraction = 'size' end
  found[#found + 1] = {entry[1], fields, retraction}
end
return found
"""

IMAGE_SCRIPT = """\
-- elog-stream logbook image read (protocol v1): a pinned image, unless it is too big.
-- KEYS[1] {prefix}logbook:{E}:image:<sha256>   ARGV[1] byte limit
-- Returns nil when missing, {'type', kind} for another type, {'size', bytes} over the limit,
-- else {'ok', bytes}.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return nil end
if kind ~= 'string' then return {'type', kind} end
local size = redis.call('STRLEN', KEYS[1])
if size > tonumber(ARGV[1]) then return {'size', size} end
return {'ok', redis.call('GET', KEYS[1])}
"""


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
    if not ENTRY_ID.fullmatch(entry_id):
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
    be the entry's digest and they must be an image. CorruptEntryError if not."""

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
        sniff_content_type(value)
    except ValueError as exc:
        raise bad("not_an_image", str(exc)) from None
    return value
