"""Live-ness: the indicator, reconnecting after the service restarts, and a path prefix."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect
from support import png, run_service
from viewer_page import card

# Chromium logs every refused connection attempt as a console error.
REFUSED = [r"WebSocket connection to .* failed", r"net::ERR_CONNECTION_REFUSED"]


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
    # Not connected for 2 s (attempts every 0.25 s doubling to 1.5 s), the viewer says offline.
    expect(page.locator("#status-text")).to_have_text("Offline", timeout=20_000)
    expect(status).to_be_enabled()

    with run_service(settings, port=port):
        # Retry now instead of waiting out the backoff, unless the page already reconnected
        # (the wait is at most 1.5 s; checked and clicked in one step inside the page).
        status.evaluate("button => button.disabled || button.click()")
        expect(page.locator("#status-text")).to_have_text("Live")
        expect(card(page, "gone/b")).to_have_count(0)
        expect(card(page, "keep/a").locator(".card-seq")).to_have_text("#2")
        expect(card(page, "keep/a").locator(".card-description")).to_have_text("after")
        assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"


def test_works_under_a_path_prefix(settings, publisher, page, page_errors):
    for pattern in REFUSED:  # the page outlives the service, and may try to reconnect
        page_errors.allow(pattern)
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
        assert sockets == [root.replace("http://", "ws://") + "ws?images=announce"]
        assert [url for url in requests if network.match(url) and not url.startswith(root)] == []
        # Opening a topic loads its history, under the prefix too.
        with page.expect_response(re.compile(r"/elog/api/topics/pre/fixed/history$")):
            card(page, "pre/fixed").click()
        href = page.locator("[data-focus=download]").evaluate("a => a.href")
        # The shown version's own URL, so a publish meanwhile does not change the download.
        assert href == root + "api/topics/pre/fixed/history/1/image"
        assert page.request.get(href).ok


class Sockets:
    """Every WebSocket a page opens, with the text frames it sent and received."""

    def __init__(self, page) -> None:
        self.all: list[dict] = []
        page.on("websocket", self._opened)

    def _opened(self, ws) -> None:
        record = {"ws": ws, "url": ws.url, "sent": [], "received": []}
        ws.on("framesent", lambda frame: record["sent"].append(frame))
        ws.on("framereceived", lambda frame: record["received"].append(frame))
        self.all.append(record)

    def answered(self) -> list[dict]:
        """The sockets the server talked on (failed attempts during an outage left out)."""
        return [record for record in self.all if record["received"]]

    @staticmethod
    def images(record: dict) -> list[str]:
        """Topics of the image headers a socket received."""
        texts = [json.loads(f) for f in record["received"] if isinstance(f, str)]
        return [message["topic"] for message in texts if message["type"] == "image"]


def test_a_reconnect_resumes_without_resending_what_the_page_holds(
    settings, publisher, page, page_errors
):
    for pattern in REFUSED:
        page_errors.allow(pattern)
    publisher.publish("same/a", "exp", png("a1"), "unchanged")
    publisher.publish("moved/b", "exp", png("b1"))
    publisher.publish("moved/b", "exp", png("b2"))
    sockets = Sockets(page)

    with run_service(settings) as first:
        port = first.server.servers[0].sockets[0].getsockname()[1]
        page.goto(first.url)
        expect(card(page, "moved/b").locator(".card-seq")).to_have_text("#2")
        expect(card(page, "same/a").locator(".card-seq")).to_have_text("#1")
    expect(page.locator("#status")).to_have_attribute("data-state", re.compile("reconnecting|off"))
    publisher.publish("moved/b", "exp", png("b3"), "published during the outage")

    with run_service(settings, port=port):
        # Retry now instead of waiting out the backoff, unless the page already reconnected
        # (checked and clicked in one step inside the page, so the two cannot race).
        page.locator("#status").evaluate("button => button.disabled || button.click()")
        expect(page.locator("#status-text")).to_have_text("Live")
        expect(card(page, "moved/b").locator(".card-seq")).to_have_text("#3")

    before, after = sockets.answered()
    assert "resume" not in before["url"], "a first connection is a normal one"
    assert before["sent"] == []
    assert "resume=1" in after["url"]
    assert json.loads(after["sent"][0]) == {
        "type": "subscribe",
        "topics": [],
        "experiments": [],
        "have": {"same/a": 1, "moved/b": 2},
    }
    assert sorted(Sockets.images(before)) == ["moved/b", "same/a"]
    assert Sockets.images(after) == ["moved/b"], "only the topic that changed is sent again"
    expect(card(page, "same/a").locator(".card-description")).to_have_text("unchanged")
    expect(card(page, "same/a").locator("img.card-img")).to_be_visible()


def test_a_silent_connection_is_dropped_and_replaced(service, page):
    service.publisher.publish("quiet/a", "exp", png("a1"))
    sockets = Sockets(page)
    page.clock.install()
    page.goto(service.url)
    expect(card(page, "quiet/a").locator(".card-seq")).to_have_text("#1")
    expect(page.locator("#status-text")).to_have_text("Live")

    page.evaluate(
        """() => {
            window.__states = [];
            const status = document.getElementById('status');
            new MutationObserver(() => window.__states.push(status.dataset.state))
                .observe(status, { attributes: true, attributeFilter: ['data-state'] });
        }"""
    )
    # The page's time now moves only when told to; the sockets stay real.
    page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 1)  # in seconds
    # 30 s of silence is tolerated (the server sends a heartbeat after 15 s of quiet)...
    page.clock.run_for(30_000)
    expect(page.locator("#status-text")).to_have_text("Live")
    assert len(sockets.all) == 1
    # ... but past 40 s without any frame the socket is taken for dead and replaced.
    page.clock.run_for(11_000)
    expect(page.locator("#status-text")).to_have_text("Live")
    states = page.evaluate("window.__states")
    assert [s for i, s in enumerate(states) if states[i - 1 : i] != [s]] == ["reconnecting", "live"]
    assert len(sockets.all) == 2 and "resume=1" in sockets.all[1]["url"]
    dead = sockets.all[0]["ws"]
    if not dead.is_closed():
        dead.wait_for_event("close")  # the page closed it, or the test times out
    service.publisher.publish("quiet/a", "exp", png("a2"))
    expect(card(page, "quiet/a").locator(".card-seq")).to_have_text("#2")


def test_a_refused_origin_is_shown_and_not_retried(service, page):
    # A proxy that rewrites Host makes the service refuse the page's origin. The service's own
    # tests cover the refusal; here the socket is answered as it would be, with close 4403.
    attempts: list[str] = []

    def refuse(ws) -> None:
        attempts.append(ws.url)
        ws.close(code=4403, reason="WebSocket origin not allowed")

    page.route_web_socket(re.compile(r"/ws(\?.*)?$"), refuse)
    page.clock.install()
    page.goto(service.url)
    status = page.locator("#status")
    expect(status).to_have_attribute("data-state", "offline")
    expect(page.locator("#status-text")).to_have_text("Offline: origin not allowed")
    expect(status).to_have_attribute("title", re.compile("origin not allowed"))
    page.clock.run_for(120_000)  # two minutes: the backoff would have retried many times
    expect(page.locator("#status-text")).to_have_text("Offline: origin not allowed")
    assert len(attempts) == 1
    status.click()  # a person may still try again, once per click
    expect(status).to_have_attribute("data-state", "offline")
    assert len(attempts) == 2
