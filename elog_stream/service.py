"""What one service process owns while it runs: the store, Hub, Feed, counters and tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .bodies import BodyBudget
from .config import Settings, redact_url
from .feed import Feed
from .hub import Hub
from .legacy import LegacyBridge
from .local import RUNTIME_FILE, LocalRedis
from .logbook_push import LogbookPush
from .logbook_store import LogbookStore, check_persistence
from .previews import Previews
from .protocol import LogbookNotice
from .ratelimit import RateLimiter
from .stats import Stats
from .store import TopicStore
from .webhook import Webhook

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    stats: Stats
    store: TopicStore
    hub: Hub
    feed: Feed
    publish_limiter: RateLimiter
    bodies: BodyBudget
    previews: Previews
    logbook: LogbookStore
    feed_task: asyncio.Task[None] | None = None  # set once the TaskGroup runs it

    def feed_running(self) -> bool:
        """Whether the Feed task runs (it ends only when the service stops)."""
        return self.feed_task is not None and not self.feed_task.done()


@contextlib.asynccontextmanager
async def running_service(settings: Settings, demo: bool = False) -> AsyncIterator[Service]:
    """Start everything the service needs; stop it all on exit, also on error or cancellation.

    Its TaskGroup owns the Feed task, the logbook's push and start-up persistence check, and
    the webhook's, the demo's and the LegacyBridge's when enabled: they are cancelled and
    awaited on exit.
    With no ``settings.redis_url`` a private server is started and stopped here, so it is
    stopped even when the process exits by a re-raised signal; its data is kept in
    ``settings.data_dir`` (local.py). Raises AlreadyRunningError if another service uses it.
    """
    async with contextlib.AsyncExitStack() as stack:
        redis_url = settings.redis_url
        if redis_url is None:
            # Started in the event loop's thread, which lives as long as the service, and not in
            # a pool thread (asyncio.to_thread): on Linux the server dies with the thread that
            # started it (embedded.py), so even a SIGKILLed service leaves no server behind.
            # This blocks the loop only during start-up, before anything is served.
            local = LocalRedis(settings.data_dir).start()
            stack.callback(local.stop)
            redis_url = local.url
            print(
                f"elog-stream: embedded Redis at {redact_url(redis_url)}, data in "
                f"{local.data_dir}; publishers of this user find it there "
                f"(others need ELOG_REDIS_URL: the url in {RUNTIME_FILE})",
                flush=True,
            )
        stats = Stats()
        store = TopicStore(redis_url, settings, stats)
        stack.push_async_callback(store.aclose)
        hub = Hub(stats)
        logbook = LogbookStore(store, settings, stats)
        push = LogbookPush(logbook, hub)
        webhook = None
        if settings.logbook_webhook is not None:
            webhook = Webhook(
                settings.logbook_webhook,
                logbook,
                stats,
                sweep_interval=settings.reconcile_interval,
            )
        feed = Feed(
            store,
            hub,
            stats,
            keepalive_interval=settings.keepalive_interval,
            reconcile_interval=settings.reconcile_interval,
            logbook=push.notice if webhook is None else _both(push.notice, webhook.notice),
        )
        service = Service(
            settings,
            stats,
            store,
            hub,
            feed,
            publish_limiter=RateLimiter(settings.publish_rate, settings.publish_burst),
            bodies=BodyBudget(settings.max_bodies_in_flight_bytes, settings.body_timeout),
            previews=Previews(stats, settings.preview_cache_bytes),
            logbook=logbook,
        )
        stack.callback(service.previews.close)
        async with asyncio.TaskGroup() as tasks:
            service.feed_task = tasks.create_task(feed.run(), name="elog-feed")
            owned = [
                service.feed_task,
                tasks.create_task(push.run(), name="elog-logbook-push"),
                tasks.create_task(check_persistence(logbook), name="elog-persistence-check"),
            ]
            if webhook is not None:
                owned.append(tasks.create_task(webhook.run(), name="elog-webhook"))
            if demo:
                from .demo import run_demo

                owned.append(tasks.create_task(run_demo(feed.publish), name="elog-demo"))
            if settings.legacy_keys:
                legacy = LegacyBridge(
                    store,
                    feed,
                    stats,
                    scan_interval=settings.legacy_scan_interval,
                    reconcile_interval=settings.reconcile_interval,
                )
                owned.append(tasks.create_task(legacy.run(), name="elog-legacy"))
            log.info("serving topics from %s", redact_url(redis_url))
            try:
                yield service
            finally:
                for task in owned:
                    task.cancel()


def _both(
    first: Callable[[LogbookNotice], None], second: Callable[[LogbookNotice], None]
) -> Callable[[LogbookNotice], None]:
    def tell(notice: LogbookNotice) -> None:
        first(notice)
        second(notice)

    return tell
