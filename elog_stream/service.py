"""What one service process owns while it runs: Redis client, Hub, Feed and their tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .config import Settings, redact_url
from .embedded import EmbeddedRedis
from .feed import Feed
from .hub import Hub
from .publisher import AsyncPublisher
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    publisher: AsyncPublisher
    hub: Hub
    feed: Feed
    publish_limiter: RateLimiter
    login_limiter: RateLimiter


@contextlib.asynccontextmanager
async def running_service(settings: Settings, demo: bool = False) -> AsyncIterator[Service]:
    """Start everything the service needs; stop it all on exit, also on error or cancellation.

    With no ``settings.redis_url`` a private server is started and stopped here, so it is
    stopped even when the process exits by a re-raised signal.
    """
    async with contextlib.AsyncExitStack() as stack:
        redis_url = settings.redis_url
        if redis_url is None:
            embedded = await asyncio.to_thread(EmbeddedRedis().start)
            stack.callback(embedded.stop)
            redis_url = embedded.url
            print(f"elog-stream: embedded Redis running; publish with ELOG_REDIS_URL={redis_url}")
        publisher = AsyncPublisher(
            redis_url,
            prefix=settings.prefix,
            ttl=settings.ttl,
            history_length=settings.history_length,
            history_bytes=settings.history_bytes,
            max_image_bytes=settings.max_image_bytes,
        )
        stack.push_async_callback(publisher.aclose)
        hub = Hub()
        feed = Feed(publisher, hub)
        service = Service(
            settings,
            publisher,
            hub,
            feed,
            publish_limiter=RateLimiter(settings.publish_rate, settings.publish_burst),
            login_limiter=RateLimiter(rate=0.2, burst=5),
        )
        tasks = [asyncio.create_task(feed.run(), name="elog-feed")]
        if demo:
            from .demo import run_demo

            tasks.append(asyncio.create_task(run_demo(publisher), name="elog-demo"))
        for task in tasks:
            task.add_done_callback(_log_crash)
        stack.push_async_callback(_cancel_and_wait, tasks)
        log.info("serving topics from %s", redact_url(redis_url))
        yield service


async def _cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s crashed", task.get_name(), exc_info=task.exception())
