"""The feed supervises itself: a crash restarts it with backoff and is reported until it heals."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from support import DEADLINE, png

from elog_stream import Publisher
from elog_stream.config import Settings
from elog_stream.feed import Feed
from elog_stream.hub import Hub
from elog_stream.mailbox import LatestWins
from elog_stream.records import TopicImage
from elog_stream.stats import Stats
from elog_stream.store import TopicStore


class BuggyHub(Hub):
    """A Hub whose ``update`` raises while ``broken``: a stand-in for any bug in the feed."""

    broken = True

    def update(self, image: TopicImage) -> bool:
        if self.broken:
            raise RuntimeError("bug in the hub")
        return super().update(image)


def crash_count(stats: Stats) -> int:
    errors: dict[str, int] = stats.as_dict()["feed_errors"]
    return errors.get("crash", 0)


async def until(condition: Callable[[], object], what: str) -> None:
    async with asyncio.timeout(DEADLINE):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_crashed_feed_restarts_and_reports_it_until_it_recovers(
    settings: Settings, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    stats = Stats()
    store = TopicStore(str(settings.redis_url), settings, stats)
    hub = BuggyHub(stats)
    feed = Feed(store, hub, stats, keepalive_interval=0.5)
    publisher.publish("crash/trigger", "e", png("1"))
    try:
        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(feed.run())
            await until(lambda: "the feed crashed" in (feed.problem() or ""), "the crash")
            assert "RuntimeError: bug in the hub" in str(feed.problem())
            assert "retrying in" in str(feed.problem())
            await until(lambda: crash_count(stats) >= 2, "a restart that crashes again")

            hub.broken = False  # "fixed": the next restart recovers and catches up
            await until(lambda: hub.get("crash/trigger") is not None, "the topic")
            await until(lambda: feed.problem() is None, "the feed to be live")
            publisher.publish("crash/after", "e", png("2"))
            await until(lambda: hub.get("crash/after") is not None, "a new publish")
            running.cancel()
    finally:
        await store.aclose()
    assert running.cancelled()
    crashes = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert crashes and all(r.exc_info for r in crashes)  # logged with the traceback
    assert stats.as_dict()["redis_reconnects"] == crash_count(stats)


async def test_latest_wins_mailbox_keeps_one_value_per_key_in_arrival_order() -> None:
    box: LatestWins[str, int] = LatestWins()
    assert box.put("a", 1) is None
    assert box.put("b", 1) is None
    assert box.put("a", 2) == 1  # replaced, keeps its place in line
    assert list(box) == ["a", "b"] and len(box) == 2
    assert box.popleft() == ("a", 2)
    assert not box.pop_if("b", 2) and box.pop_if("b", 1)
    waiting = asyncio.create_task(box.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    box.put("c", 3)
    await asyncio.wait_for(waiting, DEADLINE)


async def test_cancelling_during_redis_commands_always_ends_the_task(settings: Settings) -> None:
    # redis-py 8.1 on Python 3.11 could drop a cancellation in asyncio.wait_for; a shutdown
    # then waited for the feed forever.
    store = TopicStore(str(settings.redis_url), settings)
    try:
        for trial in range(40):

            async def read_forever() -> None:
                while True:
                    await store.read("cancel/me")

            reading = asyncio.create_task(read_forever())
            await asyncio.sleep(trial * 0.00025)  # land the cancel at different points
            reading.cancel()
            done, _ = await asyncio.wait([reading], timeout=DEADLINE)
            assert done and reading.cancelled(), f"the cancel was lost in trial {trial}"
    finally:
        await store.aclose()
