"""Fan-out: the latest image of every topic, offered to every viewer without waiting on any.

The Hub holds one shared, immutable TopicImage per topic. Each Viewer has a latest-wins mailbox
with at most one pending item per topic, so a slow viewer skips intermediate images instead of
buffering them, and memory per viewer is bounded by the number of topics, not by time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from .mailbox import Flag, LatestWins
from .protocol import MAX_NAME_LENGTH
from .records import TopicImage
from .stats import Stats

log = logging.getLogger(__name__)

MAX_FILTER_ENTRIES = 100
# A pattern may spell each character of a name as a class ("[dD]", as the web viewer does for a
# case-insensitive search); all patterns together are bounded so that compiling them and matching
# every topic against them stays cheap.
MAX_PATTERN_LENGTH = 4 * MAX_NAME_LENGTH + 2
MAX_PATTERNS_LENGTH = 2_000
_WILDCARD = re.compile(r"[*?[]")


@dataclass(frozen=True)
class Expired:
    """A topic whose image has expired in Redis."""

    topic: str


@dataclass(frozen=True)
class Close:
    """The viewer must be disconnected with this WebSocket close code and reason."""

    code: int
    reason: str


CLOSE_GOING_AWAY = Close(1001, "server shutting down")


Item = TopicImage | Expired
# A pending item and, for a live update, when its image was installed (time.monotonic()).
Pending = tuple[Item, float | None]
Message = dict[str, object]
# Writes a live image to the viewer at once and whole, or returns False (see Viewer.next).
Direct = Callable[[TopicImage], bool]
MAX_PENDING_MESSAGES = 32
# Logbook entries waiting for one viewer (one per entry: a retraction replaces its pin). Pins
# come at human pace; a viewer this far behind is stuck and about to be closed (4008).
MAX_PENDING_NOTES = 1000


@dataclass(frozen=True)
class Filter:
    """Which topics a viewer wants: topic names or shell patterns, and experiment names.

    An empty tuple means "all". A topic entry matches a topic equal to it, or one that it matches
    as a shell pattern (``fnmatch.fnmatchcase``); the patterns are compiled once, into one regex.
    """

    topics: tuple[str, ...] = ()
    experiments: tuple[str, ...] = ()
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _experiments: frozenset[str] = field(init=False, repr=False, compare=False)
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = [topic for topic in self.topics if _WILDCARD.search(topic)]
        pattern = re.compile("|".join(map(fnmatch.translate, patterns))) if patterns else None
        object.__setattr__(self, "_names", frozenset(self.topics))
        object.__setattr__(self, "_experiments", frozenset(self.experiments))
        object.__setattr__(self, "_pattern", pattern)

    @classmethod
    def parse(cls, topics: object = None, experiments: object = None) -> Filter:
        """Build a Filter from untrusted input; raise ValueError saying what is wrong."""
        topics = _str_tuple("topics", topics, MAX_PATTERN_LENGTH)
        patterns = sum(len(topic) for topic in topics if _WILDCARD.search(topic))
        if patterns > MAX_PATTERNS_LENGTH:
            raise ValueError(
                f"topics has {patterns} characters of patterns, over {MAX_PATTERNS_LENGTH}"
            )
        return cls(topics, _str_tuple("experiments", experiments, MAX_NAME_LENGTH))

    def matches(self, image: TopicImage) -> bool:
        if self._experiments and image.experiment not in self._experiments:
            return False
        return (
            not self.topics
            or image.topic in self._names
            or (self._pattern is not None and self._pattern.match(image.topic) is not None)
        )


def _str_tuple(name: str, value: object, max_length: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings")
    if len(value) > MAX_FILTER_ENTRIES:
        raise ValueError(f"{name} has {len(value)} entries, over {MAX_FILTER_ENTRIES}")
    for entry in value:
        if len(entry) > max_length:
            raise ValueError(
                f"{name} entry {entry[:40]!r}... is {len(entry)} characters, over {max_length}"
            )
    return tuple(value)


def _identity(image: TopicImage) -> tuple[int, float, str]:
    return (image.seq, image.updated_at, image.digest)


class Viewer:
    """One connected viewer: its filter and its latest-wins mailbox.

    Only the viewer's own sender task calls ``next``; the Hub calls ``offer`` from the event loop.
    """

    def __init__(self, filter: Filter, stats: Stats) -> None:
        self.filter = filter
        self.announce = False  # send image headers without their bytes (WebSocket "images")
        # False for a resuming viewer until its first ``refilter``: no image is offered before
        # the client has said what it holds (the refilter then offers every one it lacks).
        self.subscribed = True
        self.dropped = 0
        self._stats = stats
        self._ready = Flag()
        self._pending: LatestWins[str, Pending] = LatestWins(self._ready)
        self._taken: Pending | None = None  # the item ``next`` returned last
        # What the client holds per topic: (seq, digest), digest None when the client only
        # told us the seq (resuming a connection).
        self._sent: dict[str, tuple[int, str | None]] = {}
        self._messages: list[Message] = []  # at most MAX_PENDING_MESSAGES (not a deque: 760 B)
        self._notes: LatestWins[str, Message] = LatestWins(self._ready)
        self._close: Close | None = None
        # Set only while ``next`` waits with nothing pending: dropped as soon as anything is
        # queued, so that nothing written directly overtakes what waits in the mailbox.
        self._direct: Direct | None = None

    def close(self, close: Close) -> None:
        """Make ``next`` return ``close`` from now on, before anything else."""
        self._close = close
        self._direct = None
        self._ready.set()

    def say(self, message: Message) -> None:
        """Queue a control message; it goes out before any pending image."""
        self._messages.append(message)
        if len(self._messages) > MAX_PENDING_MESSAGES:
            del self._messages[0]
        self._direct = None
        self._ready.set()

    def note(self, key: str, message: Message) -> None:
        """Queue ``message`` after the control messages and before images, replacing a pending
        one of the same ``key``: never dropped for an image, nor for another key (but beyond
        MAX_PENDING_NOTES, the oldest goes)."""
        self._notes.put(key, message)
        self._direct = None
        if len(self._notes) > MAX_PENDING_NOTES:
            self._notes.popleft()

    def offer(self, item: Item, installed_at: float | None = None) -> None:
        """Queue ``item``, replacing any older pending item of the same topic. Never blocks.

        ``installed_at`` is when the Hub took the image, for a live update (not a snapshot).
        """
        if isinstance(item, TopicImage):
            if not self.subscribed or not self.filter.matches(item) or self._holds(item):
                return
            # Only live updates: a snapshot's images follow its sync frame, which is queued.
            if installed_at is not None and self._direct is not None and self._direct(item):
                self._sent[item.topic] = (item.seq, item.digest)
                self._count(item, installed_at, with_bytes=not self.announce)
                return
        elif item.topic not in self._sent and item.topic not in self._pending:
            return
        replaced = self._pending.get(item.topic)
        if replaced is not None and replaced[0] is item:  # offered again: keep its time
            installed_at = replaced[1] if installed_at is None else installed_at
        elif replaced is not None and isinstance(replaced[0], TopicImage):
            self.dropped += 1
            self._stats.frame_superseded()
        self._direct = None
        self._pending.put(item.topic, (item, installed_at))

    async def next(self, direct: Direct | None = None) -> Item | Message | Close:
        """Wait for and take a Close if any, else the next message, else the oldest item.

        While it waits with nothing pending, live images are handed to ``direct`` instead of
        being queued, and counted as sent when it returns True: the sender task is not woken
        per image, as a broadcast loop writes. Cancelling is safe: nothing is taken.
        """
        while not (self._pending or self._messages or self._notes or self._close):
            self._ready.clear()
            self._direct = direct
            try:
                await self._ready.wait()
            finally:
                self._direct = None
        if self._close is not None:
            return self._close
        if self._messages:
            return self._messages.pop(0)
        if self._notes:
            return self._notes.popleft()[1]
        topic, pending = self._pending.popleft()
        item = pending[0]
        if isinstance(item, TopicImage):
            self._sent[topic] = (item.seq, item.digest)
            self._taken = pending
        else:
            self._sent.pop(topic, None)
        return item

    def sent(self, image: TopicImage, with_bytes: bool = True) -> None:
        """Count ``image``, taken from ``next``, as handed to the socket: its bytes (none when
        only announced) and, for a live update, the time since the Hub took it."""
        taken = self._taken
        installed_at = taken[1] if taken is not None and taken[0] is image else None
        self._taken = None
        self._count(image, installed_at, with_bytes)

    def _count(
        self, image: TopicImage, installed_at: float | None, with_bytes: bool = True
    ) -> None:
        seen_to_sent = None if installed_at is None else time.monotonic() - installed_at
        self._stats.image_sent(len(image.data) if with_bytes else 0, seen_to_sent)

    def _holds(self, image: TopicImage) -> bool:
        sent = self._sent.get(image.topic)
        return sent is not None and sent[0] == image.seq and sent[1] in (None, image.digest)

    def refilter(
        self, filter: Filter, live: Iterable[TopicImage], have: Mapping[str, int] | None = None
    ) -> list[str]:
        """Switch to ``filter``; queue the matching images of ``live`` the client lacks.

        ``have`` maps topics to the seq the client already holds (from a previous connection).
        Returns the names of the live topics that match, for the ``sync`` frame.
        """
        self.filter = filter
        self.subscribed = True
        live = list(live)
        topics = {image.topic for image in live}
        # Held topics are tracked while live, in view or not (widening the filter again resends
        # only what changed); a removed one's entry goes when its Expired is sent, or here.
        for topic in self._sent.keys() - topics:
            del self._sent[topic]
        if have:  # only what is live now: the client may name anything
            for topic in topics & have.keys():
                self._sent.setdefault(topic, (have[topic], None))
        for topic in self._pending:
            pending = self._pending.get(topic)
            if pending is not None and isinstance(pending[0], TopicImage):
                if not filter.matches(pending[0]):
                    self._pending.pop(topic)
        names = []
        for image in live:
            if filter.matches(image):
                names.append(image.topic)
                self.offer(image)
        return names


class Hub:
    """The latest image of each topic, and the viewers to offer every change to."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self._images: dict[str, TopicImage] = {}
        self._viewers: set[Viewer] = set()
        self._closing = False
        self._no_viewers = asyncio.Event()
        self._no_viewers.set()
        stats.watch(topics=lambda: self.topic_count, viewers=lambda: self.viewer_count)

    def images(self) -> list[TopicImage]:
        """Every live image, newest first."""
        return sorted(self._images.values(), key=lambda image: image.updated_at, reverse=True)

    def get(self, topic: str) -> TopicImage | None:
        return self._images.get(topic)

    @property
    def topic_count(self) -> int:
        return len(self._images)

    @property
    def viewer_count(self) -> int:
        return len(self._viewers)

    def update(self, image: TopicImage) -> bool:
        """Store ``image`` and offer it to every viewer unless it is the one already held.

        Returns whether viewers were offered it (counted as a publish seen). A re-read of the
        same image only refreshes its expiry time.
        """
        current = self._images.get(image.topic)
        self._images[image.topic] = image
        if current is not None and _identity(current) == _identity(image):
            return False
        self.stats.publish_seen()
        installed_at = time.monotonic()
        for viewer in self._viewers:
            viewer.offer(image, installed_at)
        return True

    def note(self, experiment: str, key: str, message: Message) -> None:
        """Queue ``message`` (about ``experiment``; a logbook entry) for every viewer whose
        filter takes that experiment (all, when it names none); see ``Viewer.note``."""
        for viewer in self._viewers:
            experiments = viewer.filter.experiments
            if not experiments or experiment in experiments:
                viewer.note(key, message)

    def remove(self, topic: str) -> None:
        """Forget ``topic`` and tell the viewers that had it."""
        if self._images.pop(topic, None) is not None:
            for viewer in self._viewers:
                viewer.offer(Expired(topic))

    def expiring(self, now: float) -> list[str]:
        """Topics whose known expiry time has passed."""
        return [
            topic
            for topic, image in self._images.items()
            if image.expires_at is not None and image.expires_at <= now
        ]

    @contextmanager
    def connect(self, filter: Filter, snapshot: bool = True) -> Iterator[tuple[Viewer, list[str]]]:
        """Register a viewer with ``filter``, pre-loaded with the matching snapshot if asked;
        without one (a resuming client), it is offered no image until its first ``refilter``.

        Yields the viewer and the names for its first ``sync`` frame; unregisters on exit,
        also on error or cancellation.
        """
        viewer = Viewer(filter, self.stats)
        names = viewer.refilter(filter, self.images()) if snapshot else []
        viewer.subscribed = snapshot
        if self._closing:
            viewer.close(CLOSE_GOING_AWAY)
        self._viewers.add(viewer)
        self._no_viewers.clear()
        try:
            yield viewer, names
        finally:
            self._viewers.discard(viewer)
            if not self._viewers:
                self._no_viewers.set()

    async def close_viewers(self, timeout: float) -> int:
        """Ask every viewer, present and future, to disconnect with 1001 ("going away").

        Waits up to ``timeout`` seconds for them to be gone; returns how many are left.
        """
        self._closing = True
        for viewer in self._viewers:
            viewer.close(CLOSE_GOING_AWAY)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._no_viewers.wait()
        return len(self._viewers)
