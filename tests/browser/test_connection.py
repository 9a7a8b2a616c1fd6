"""Live-ness: the indicator, reconnecting after the service restarts, and a path prefix."""

from __future__ import annotations

import re

from playwright.sync_api import expect
from support import png, run_service

# Chromium logs every refused connection attempt as a console error.
REFUSED = [r"WebSocket connection to .* failed", r"net::ERR_CONNECTION_REFUSED"]


def card(page, topic):
    return page.locator(f'#grid a.card[data-topic="{topic}"]')


def test_reconnects_and_resyncs_after_a_restart(settings, publisher, page, page_errors):
    for pattern in REFUSED:
        page_errors.allow(pattern)
    publisher.publish("keep/a", "exp", png("a1"), "before")
    publisher.publish("gone/b", "exp", png("b1"))
    status = page.locator("#status")

    with run_service(settings) as first:
        port = first.server.servers[0].sockets[0].getsockname()[1]
        page.goto(first.url)
        expect(status).to_have_attribute("data-state", "live")
        expect(page.locator("#status-text")).to_have_text("Live")
        expect(page.locator("#grid a.card")).to_have_count(2)
        page.evaluate("window.__sameDocument = true")

    expect(status).to_have_attribute("data-state", re.compile("reconnecting|offline"))
    expect(page.locator("#status-text")).to_have_text(re.compile(r"^(Reconnecting…|Offline)$"))
    # While the service is away, one topic expires and the other gets a new image.
    publisher.redis.delete(settings.keys.topic("gone/b"))
    publisher.publish("keep/a", "exp", png("a2"), "after")
    # After repeated failures (backoff 0.5, 1, 2, 4 s with jitter) the viewer says offline.
    expect(page.locator("#status-text")).to_have_text("Offline", timeout=20_000)
    expect(status).to_be_enabled()

    with run_service(settings, port=port):
        status.click()  # retry now instead of waiting out the backoff
        expect(page.locator("#status-text")).to_have_text("Live")
        expect(card(page, "gone/b")).to_have_count(0)
        expect(card(page, "keep/a").locator(".card-seq")).to_have_text("#2")
        expect(card(page, "keep/a").locator(".card-description")).to_have_text("after")
        assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"


def test_works_under_a_path_prefix(settings, publisher, page):
    publisher.publish("pre/fixed", "exp", png(), "behind a proxy")
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    network = re.compile(r"^(http|ws)s?:")

    with run_service(settings, root_path="/elog") as service:
        root = service.url
        assert root.endswith("/elog/")
        page.goto(root)
        expect(page.locator("#status-text")).to_have_text("Live")
        expect(card(page, "pre/fixed").locator(".card-description")).to_have_text("behind a proxy")
        assert sockets == [root.replace("http://", "ws://") + "ws"]
        assert [url for url in requests if network.match(url) and not url.startswith(root)] == []
        card(page, "pre/fixed").click()
        href = page.locator("[data-focus=download]").evaluate("a => a.href")
        assert href == root + "api/topics/pre/fixed/image"
        assert page.request.get(href).ok
