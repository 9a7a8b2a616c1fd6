"""A latest-wins mailbox: at most one pending value per key, so memory is bounded by the keys."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LatestWins(Generic[K, V]):
    """Pending values by key, oldest key first.

    A newer value replaces the pending value of its key, which keeps its place in line, so a
    busy key cannot starve the others. ``ready`` is set whenever a value is put; pass an Event
    to share it with other wake-up sources of the consumer. Never blocks; not thread-safe.
    """

    def __init__(self, ready: asyncio.Event | None = None) -> None:
        # OrderedDict, not dict: taking from the front of a dict slows down as deleted
        # entries pile up there (draining 100,000 took 8.8 s); OrderedDict stays O(1).
        self._items: OrderedDict[K, V] = OrderedDict()
        self.ready = ready or asyncio.Event()

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
