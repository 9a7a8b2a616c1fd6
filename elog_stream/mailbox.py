"""A latest-wins mailbox: at most one pending value per key, so memory is bounded by the keys;
and Flag, the event that wakes its consumer."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Flag:
    """``asyncio.Event``'s ``set``, ``clear``, ``is_set`` and ``wait``, in ~100 bytes.

    An Event allocates a deque of waiters (~760 bytes) whether or not anything waits; a Flag
    holds a list only while something waits. One per connection adds up: ``Viewer`` and the
    server's ``ViewerProtocol`` use it. Cancelling ``wait`` is safe; not thread-safe.
    """

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        """Return True once set (at once if it is)."""
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None
        return True


class LatestWins(Generic[K, V]):
    """Pending values by key, oldest key first.

    A newer value replaces the pending value of its key, which keeps its place in line, so a
    busy key cannot starve the others. ``ready`` is set whenever a value is put; pass an Event
    to share it with other wake-up sources of the consumer. Never blocks; not thread-safe.
    """

    def __init__(self, ready: asyncio.Event | Flag | None = None) -> None:
        # OrderedDict, not dict: taking from the front of a dict slows down as deleted
        # entries pile up there (draining 100,000 took 8.8 s); OrderedDict stays O(1).
        self._items: OrderedDict[K, V] = OrderedDict()
        self.ready: asyncio.Event | Flag = ready or asyncio.Event()

    def put(self, key: K, value: V) -> V | None:
        """Make ``value`` the pending value of ``key``; return the one it replaced, if any."""
        replaced = self._items.get(key)
        self._items[key] = value
        self.ready.set()
        return replaced

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def pop(self, key: K) -> V | None:
        """Remove and return the pending value of ``key``, if any."""
        return self._items.pop(key, None)

    def pop_if(self, key: K, value: V) -> bool:
        """Remove the pending value of ``key`` only if it is ``value`` (not replaced since)."""
        if self._items.get(key) is value:
            del self._items[key]
            return True
        return False

    def peek(self) -> tuple[K, V]:
        """The oldest pending key and its value; raises KeyError when empty."""
        if not self._items:
            raise KeyError("mailbox is empty")
        key = next(iter(self._items))
        return key, self._items[key]

    def popleft(self) -> tuple[K, V]:
        """Remove and return the oldest pending key and its value; KeyError when empty."""
        if not self._items:
            raise KeyError("mailbox is empty")
        return self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    async def wait(self) -> None:
        """Wait until something is pending. Cancelling is safe."""
        while not self._items:
            self.ready.clear()
            await self.ready.wait()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))
