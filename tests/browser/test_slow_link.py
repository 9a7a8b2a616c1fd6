"""A slow link (Chromium throttled to 10 Mbit/s, 40 ms): the grid loads previews sized to its
cards, visible cards first, and one large image never holds back the others; the focus view
loads the full image."""

from __future__ import annotations

import functools
import io
import re

import numpy
import pytest
from playwright.sync_api import Page, expect
from support import png
from viewer_page import card

SMALL_TOPICS = [f"exp/plot{n:02d}" for n in range(24)]
BIG_TOPIC = "exp/camera"  # sorts first: its card is in view on every screen
MBIT = 1_000_000 / 8  # bytes per second
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1440, "height": 900}}


@functools.cache
def big_image() -> bytes:
    """A 4000x3000 PNG of about 7 MB: a band of noise (incompressible) on a flat field."""
    from PIL import Image

    pixels = numpy.full((3000, 4000, 3), 40, dtype=numpy.uint8)
    pixels[1000:1600] = numpy.random.default_rng(7).integers(0, 256, (600, 4000, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def throttle(page: Page) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 40,
            "downloadThroughput": 10 * MBIT,
            "uploadThroughput": 10 * MBIT,
        },
    )


def transfers(page: Page, pattern: str) -> list[dict]:
    """Resource timing entries whose URL matches ``pattern``: name and bytes received."""
    return page.evaluate(
        """(pattern) => performance.getEntriesByType('resource')
            .filter((entry) => new RegExp(pattern).test(entry.name))
            .map((entry) => ({ name: entry.name, size: entry.encodedBodySize }))""",
        pattern,
    )


@pytest.mark.parametrize("scheme", ["dark", "light"])
@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_a_large_image_does_not_hold_back_the_grid_on_a_slow_link(service, new_page, size, scheme):
    big = big_image()
    assert len(big) > 6_000_000
    # Newest first is the order of a new viewer's snapshot: published in reverse, the cards
    # arrive top to bottom, so those at the bottom are never in view before the grid fills.
    for topic in reversed(SMALL_TOPICS):
        service.publisher.publish(topic, "exp", png(topic, size=(640, 480)), "a plot")
    service.publisher.publish(BIG_TOPIC, "exp", big, "4000x3000 camera frame")
    page = new_page(viewport=SIZES[size], color_scheme=scheme)
    throttle(page)
    binary_frames: list[bytes] = []
    page.on(
        "websocket",
        lambda ws: ws.on(
            "framereceived", lambda f: isinstance(f, bytes) and binary_frames.append(f)
        ),
    )
    page.goto(service.url)

    expect(page.locator("#grid a.card")).to_have_count(len(SMALL_TOPICS) + 1)
    # Every card in view shows its image, decoded, the large one's included: all previews.
    in_view = page.evaluate(
        """() => [...document.querySelectorAll('#grid a.card')]
            .filter((a) => a.getBoundingClientRect().top < innerHeight)
            .map((a) => a.dataset.topic)"""
    )
    assert BIG_TOPIC in in_view and len(in_view) < len(SMALL_TOPICS)
    for topic in in_view:
        expect(card(page, topic).locator("img.card-img")).to_have_js_property("complete", True)
    camera = card(page, BIG_TOPIC).locator("img.card-img")
    card_width = camera.evaluate("img => img.parentElement.clientWidth * devicePixelRatio")
    preview_width = camera.evaluate("img => img.naturalWidth")
    assert card_width <= preview_width <= 2 * card_width < 4000
    assert camera.evaluate("img => img.naturalHeight") == round(preview_width * 3 / 4)

    # Nothing was pushed over the socket, and the large image itself was never fetched.
    assert binary_frames == []
    assert transfers(page, r"/exp/camera/(history/\d+/)?image$") == []
    previews = transfers(page, r"\?max_width=\d+$")
    camera_preview = [entry for entry in previews if "/exp/camera/" in entry["name"]]
    assert len(camera_preview) == 1 and 0 < camera_preview[0]["size"] < len(big) / 20
    assert sum(entry["size"] for entry in previews) < len(big) / 10

    # Cards out of view load when they come into view, not before.
    last = card(page, SMALL_TOPICS[-1])
    assert not transfers(page, SMALL_TOPICS[-1])
    expect(last.locator(".card-placeholder")).to_be_attached()
    last.scroll_into_view_if_needed()
    expect(last.locator("img.card-img")).to_have_js_property("complete", True)
    assert len(transfers(page, SMALL_TOPICS[-1] + r"/history/1/image\?max_width=")) == 1
    page.evaluate("scrollTo(0, 0)")

    # The focus view loads the full image (about 6 s at 10 Mbit/s).
    card(page, BIG_TOPIC).click()
    full = page.locator("#focus img.focus-img")
    expect(full).to_have_js_property("naturalWidth", 4000, timeout=60_000)
    loaded = transfers(page, r"/exp/camera/history/1/image$")
    assert [entry["size"] for entry in loaded] == [len(big)]
    expect(page.locator("#focus [data-focus=size]")).to_have_text(re.compile(r"MiB"))
    urls = page.evaluate("window.__objectUrls")
    assert len(set(urls["created"]) - set(urls["revoked"])) <= len(SMALL_TOPICS) + 1


def test_a_card_that_updates_shows_the_newest_preview_and_the_focus_view_follows(service, page):
    service.publisher.publish("scan/a", "exp", png("a1", size=(1600, 1200)), "first")
    page.goto(service.url)
    scan = card(page, "scan/a")
    expect(scan.locator(".card-seq")).to_have_text("#1")
    for n in range(2, 7):
        service.publisher.publish("scan/a", "exp", png(f"a{n}", size=(1600, 1200)), f"v{n}")
    expect(scan.locator(".card-seq")).to_have_text("#6")
    expect(scan.locator(".card-description")).to_have_text("v6")
    assert scan.locator("img.card-img").evaluate("img => img.naturalWidth") < 1600
    page.wait_for_function("() => window.__objectUrls.created.length >= 2")
    urls = page.evaluate("window.__objectUrls")
    live = set(urls["created"]) - set(urls["revoked"])
    assert live == {scan.locator("img.card-img").get_attribute("src")}

    scan.click()
    image = page.locator("#focus img.focus-img")
    expect(image).to_have_attribute("data-seq", "6")
    expect(image).to_have_js_property("naturalWidth", 1600)
    service.publisher.publish("scan/a", "exp", png("a7", size=(1600, 1200)), "v7")
    expect(image).to_have_attribute("data-seq", "7")
    expect(image).to_have_js_property("naturalWidth", 1600)
    expect(page.locator("#focus [data-focus=description]")).to_have_text("v7")
