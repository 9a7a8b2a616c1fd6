"""Freshness on the cards (live, late, stale, offline), the outage banner and reconnecting."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from support import png, run_service

ARTIFACTS = Path(__file__).parent.parent / "artifacts"
# Chromium logs every refused connection attempt as a console error.
REFUSED = [r"WebSocket connection to .* failed", r"net::ERR_CONNECTION_REFUSED"]
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1440, "height": 900}}
LOOKS = [
    pytest.param(size, scheme, id=f"{size}-{scheme}")
    for size in SIZES
    for scheme in ("dark", "light")
]
CLOCK = re.compile(r"^\d\d:\d\d:\d\d$")
# The page's backoff cap (web/js/socket.js MAX_DELAY_MS): recovery within 2 s rests on it.
MAX_RETRY_DELAY_MS = 1500

# Records every value the page gives an attribute of an element, from now on.
_RECORD = """([selector, attribute, name]) => {
    const node = document.querySelector(selector);
    const seen = (window[name] = [node.getAttribute(attribute)]);
    new MutationObserver(() => seen.push(node.getAttribute(attribute)))
        .observe(node, { attributes: true, attributeFilter: [attribute] });
}"""


def item(page: Page, topic: str):
    return page.locator(f'#grid li.card-item[data-topic="{topic}"]')


def record(page: Page, selector: str, attribute: str, name: str) -> None:
    page.evaluate(_RECORD, [selector, attribute, name])


def changes(values: list) -> list:
    """``values`` without repeats in a row."""
    return [v for i, v in enumerate(values) if values[i - 1 : i] != [v]]


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


@pytest.mark.parametrize(("size", "scheme"), LOOKS)
def test_a_steady_topic_that_stops_turns_late_then_stale(service, new_page, size, scheme):
    publisher = service.publisher
    publisher.publish("once/only", "exp", png("once"), "published once, before the page")
    publisher.publish("steady/5hz", "exp", png("s0"), "five updates a second")
    page = new_page(viewport=SIZES[size], color_scheme=scheme)
    page.goto(service.url)
    steady = item(page, "steady/5hz")
    expect(steady).to_have_attribute("data-state", "live")
    record(page, '#grid li[data-topic="steady/5hz"]', "data-state", "__states")

    def publish() -> None:
        # The steady rate being tested, not a wait for anything.
        for n in range(1, 16):
            publisher.publish("steady/5hz", "exp", png(f"s{n}"), "five updates a second")
            time.sleep(0.2)

    thread = threading.Thread(target=publish)
    thread.start()
    thread.join()
    expect(steady.locator(".card-seq")).to_have_text("#16")

    # Well past its usual interval (3 × 0.2 s, at least 1.5 s): late, in words on the card.
    expect(steady).to_have_attribute("data-state", "late")
    badge = steady.locator(".card-badge")
    expect(badge).to_be_visible()
    expect(badge).to_have_text(re.compile(r"^late · usual every 0\.[1-4] s$"))
    shot(page, f"freshness-late-{size}-{scheme}")
    # Much longer (10 × usual, at least 5 s): stale.
    expect(steady).to_have_attribute("data-state", "stale")
    expect(badge).to_have_text(re.compile(r"^stale · usual every 0\.[1-4] s$"))
    assert changes(page.evaluate("window.__states"))[-3:] == ["live", "late", "stale"]

    # The exact publish time is on the card, the same as its machine-readable datetime.
    clock = steady.locator("time.card-clock")
    expect(clock).to_have_text(CLOCK)
    assert clock.evaluate(
        """t => [new Date(t.dateTime)].map(d => [d.getHours(), d.getMinutes(), d.getSeconds()]
            .map(n => String(n).padStart(2, '0')).join(':'))[0] === t.textContent"""
    )
    assert clock.get_attribute("datetime") == steady.locator(".card-updated").get_attribute(
        "datetime"
    )
    # A topic seen once has no usual interval: the fixed rule (stale after 5 min) keeps it live.
    once = item(page, "once/only")
    expect(once).to_have_attribute("data-state", "live")
    expect(once.locator(".card-badge")).to_be_hidden()
    expect(once.locator(".card-clock")).to_have_text(CLOCK)


def test_a_paused_page_does_not_call_a_steady_topic_late(service, page):
    publisher = service.publisher
    publisher.publish("steady/a", "exp", png("a0"))
    page.goto(service.url)
    steady = item(page, "steady/a")
    expect(steady).to_have_attribute("data-state", "live")
    page.locator("#pause").click()
    record(page, '#grid li[data-topic="steady/a"]', "data-state", "__states")
    for n in range(1, 16):
        publisher.publish("steady/a", "exp", png(f"a{n}"))
        time.sleep(0.2)  # the steady rate being tested
    expect(page.locator("#pause")).to_have_text("Resume (1 new)")
    # The shown image is 3 s old, 15 usual intervals, but the topic is alive: not late.
    assert page.evaluate("window.__states") == ["live"]
    expect(steady.locator(".card-seq")).to_have_text("#1")
    page.locator("#pause").click()
    expect(steady.locator(".card-seq")).to_have_text("#16")
    expect(steady).to_have_attribute("data-state", "live")
    expect(steady).to_have_attribute("data-state", "late")  # and it stopped


@pytest.mark.parametrize(("size", "scheme"), LOOKS)
def test_an_outage_dims_every_card_and_says_since_when(
    settings, publisher, new_page, page_errors, size, scheme
):
    for pattern in REFUSED:
        page_errors.allow(pattern)
    publisher.publish("exp/a", "exp", png("a"), "first")
    publisher.publish("exp/b", "exp", png("b"), "second")
    page = new_page(viewport=SIZES[size], color_scheme=scheme)
    banner = page.locator("#outage")
    cards = page.locator("#grid li.card-item")

    with run_service(settings) as first:
        port = first.server.servers[0].sockets[0].getsockname()[1]
        page.goto(first.url)
        expect(page.locator("#status-text")).to_have_text("Live")
        expect(cards).to_have_count(2)
        for index in range(2):
            expect(cards.nth(index)).to_have_attribute("data-state", "live")
        expect(banner).to_be_hidden()
        record(page, "#status", "data-retry-in-ms", "__delays")

    expect(banner).to_be_visible()
    expect(banner.locator(".outage-text")).to_have_text(
        re.compile(r"^Offline since \d\d:\d\d:\d\d — retrying (in [12] s|now…)$")
    )
    expect(banner.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-.*Z$"))
    expect(banner.get_by_role("button", name="Retry now", exact=True)).to_be_visible()
    for index in range(2):
        expect(cards.nth(index)).to_have_attribute("data-state", "offline")
        expect(cards.nth(index).locator(".card-badge")).to_have_text("offline")
    expect(page.locator("#status-text")).to_have_text("Offline")
    # Past the doubling (0.25, 0.5, 1 s steps): the waits have reached the cap.
    page.wait_for_function("() => window.__delays.filter((d) => d > 0).length >= 6")
    shot(page, f"outage-{size}-{scheme}")

    with run_service(settings, port=port):
        # No click: the backoff alone brings the page back.
        expect(page.locator("#status-text")).to_have_text("Live")
        expect(banner).to_be_hidden()
        for index in range(2):
            expect(cards.nth(index)).to_have_attribute("data-state", "live")
            expect(cards.nth(index).locator(".card-badge")).to_be_hidden()

    delays = [int(d) for d in page.evaluate("window.__delays") if d and d != "0"]
    # The wait between attempts never exceeds the cap, so recovery takes ≤ 1.5 s + a handshake.
    assert max(delays) <= MAX_RETRY_DELAY_MS, delays
    assert max(delays[4:]) >= MAX_RETRY_DELAY_MS / 2, f"the cap was never reached: {delays}"


def _pause_clock(page: Page) -> None:
    """Stop the page's timers (its retry timer included); sockets and events stay real."""
    page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 1)  # in seconds


def _waiting_to_retry(page: Page) -> None:
    """Wait until no attempt is under way: the page waits on its (paused) retry timer."""
    expect(page.locator("#status")).not_to_have_attribute("data-retry-in-ms", re.compile(r"^0?$"))
    expect(page.locator("#status")).to_have_attribute(
        "data-state", re.compile("^(reconnecting|offline)$")
    )


def test_retry_now_visibility_and_online_reconnect_at_once(settings, publisher, page, page_errors):
    for pattern in REFUSED:
        page_errors.allow(pattern)
    publisher.publish("exp/a", "exp", png("a1"))
    answered: list = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda _: answered.append(ws)))
    status = page.locator("#status-text")
    page.clock.install()

    with run_service(settings) as first:
        port = first.server.servers[0].sockets[0].getsockname()[1]
        page.goto(first.url)
        expect(status).to_have_text("Live")
        # Visible again while connected and heard from: the connection is kept.
        page.evaluate(
            """() => {
                for (const state of ['hidden', 'visible']) {
                    Object.defineProperty(document, 'visibilityState',
                                          { value: state, configurable: true });
                    document.dispatchEvent(new Event('visibilitychange'));
                }
            }"""
        )
    # Offline, in real time; then the page's timers stop, so only what is tested can reconnect.
    expect(page.locator("#outage")).to_be_visible()
    _pause_clock(page)
    _waiting_to_retry(page)
    with run_service(settings, port=port):
        page.get_by_role("button", name="Retry now", exact=True).click()
        expect(status).to_have_text("Live")
        expect(page.locator("#outage")).to_be_hidden()

    _waiting_to_retry(page)  # the clock is paused: the retry timer never fires
    with run_service(settings, port=port):
        page.evaluate(
            """() => {
                Object.defineProperty(document, 'visibilityState',
                                      { value: 'visible', configurable: true });
                document.dispatchEvent(new Event('visibilitychange'));
            }"""
        )
        expect(status).to_have_text("Live")

    _waiting_to_retry(page)
    with run_service(settings, port=port):
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(status).to_have_text("Live")
        publisher.publish("exp/a", "exp", png("a2"))
        expect(page.locator('#grid a.card[data-topic="exp/a"] .card-seq')).to_have_text("#2")

    assert len({id(ws) for ws in answered}) == 4, (
        "one connection per reconnect, none for a visible live tab"
    )


@pytest.mark.parametrize(
    ("size", "scheme"), [("desktop", "dark"), ("phone", "light")], ids=["desktop", "phone"]
)
def test_the_status_dot_stays_visible_in_forced_colors(service, new_page, size, scheme):
    service.publisher.publish("exp/a", "exp", png("a"))
    page = new_page(viewport=SIZES[size], color_scheme=scheme, forced_colors="active")
    page.goto(service.url)
    expect(page.locator("#status-text")).to_have_text("Live")
    assert page.evaluate("matchMedia('(forced-colors: active)').matches")
    visible = """dot => {
        const style = getComputedStyle(dot);
        const behind = getComputedStyle(dot.parentElement).backgroundColor;
        const box = dot.getBoundingClientRect();
        return box.width > 4 && box.height > 4 && style.visibility === 'visible' &&
            (style.backgroundColor !== behind ||
             (parseFloat(style.borderTopWidth) > 0 && style.borderTopColor !== behind));
    }"""
    dot = page.locator("#status .status-dot")
    assert dot.evaluate(visible), "the live dot vanished"
    shot(page, f"forced-colors-live-{size}")
    live_fill = dot.evaluate("dot => getComputedStyle(dot).backgroundColor")
    # Not connected: a hollow ring, still visible, told apart from live by its shape too.
    page.evaluate("document.getElementById('status').dataset.state = 'offline'")
    assert dot.evaluate(visible), "the offline dot vanished"
    shot(page, f"forced-colors-offline-{size}")
    assert dot.evaluate("dot => getComputedStyle(dot).backgroundColor") != live_fill
    page.evaluate("document.getElementById('status').dataset.state = 'live'")
