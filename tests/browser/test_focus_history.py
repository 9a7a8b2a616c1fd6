"""The focus view's history scrubber: lazy loading, keyboard and slider, following live."""

from __future__ import annotations

import re

from playwright.sync_api import expect
from support import png
from viewer_page import card

HISTORY_IMAGE = re.compile(r"/api/topics/scan/x/history/(\d+)/image$")


def test_scrubbing_loads_only_the_versions_shown_and_does_not_yank(service, page):
    for n in range(1, 6):
        service.publisher.publish("scan/x", "exp", png(f"v{n}"), f"version {n}")
    loaded: list[int] = []

    def record(request) -> None:
        match = HISTORY_IMAGE.search(request.url)
        if match:
            loaded.append(int(match[1]))

    page.on("request", record)
    page.goto(service.url)
    expect(card(page, "scan/x").locator(".card-seq")).to_have_text("#5")
    card(page, "scan/x").click()

    focus = page.locator("#focus")
    image = focus.locator("img.focus-img")
    position = focus.locator("[data-scrub=position]")
    ahead = focus.locator("[data-scrub=ahead]")
    live = focus.locator("[data-scrub=live]")
    expect(position).to_have_text(re.compile(r"^#5 · 5 of 5 · \d\d:\d\d:\d\d$"))
    expect(image).to_have_attribute("data-seq", "5")
    expect(live).to_be_disabled()

    page.keyboard.press("ArrowLeft")
    expect(image).to_have_attribute("data-seq", "4")
    page.keyboard.press("ArrowLeft")
    expect(image).to_have_attribute("data-seq", "3")
    expect(image).to_have_js_property("complete", True)
    expect(position).to_have_text(re.compile(r"^#3 · 3 of 5 · \d\d:\d\d:\d\d$"))
    expect(ahead).to_have_text("2 newer")
    expect(focus.locator("[data-focus=seq]")).to_have_text("3")
    expect(focus.locator("[data-focus=description]")).to_have_text("version 3")
    download = focus.locator("[data-focus=download]")
    expect(download).to_have_attribute("href", re.compile(r"/history/3/image$"))
    expect(download).to_have_attribute("download", "x-3.png")
    # Lazy: the newest came with the card over the socket; only the two stepped to were fetched.
    assert loaded == [4, 3]
    assert page.request.get(download.evaluate("a => a.href")).body() == png("v3")

    # Scrolled back, a new image extends the range but does not replace what is shown.
    service.publisher.publish("scan/x", "exp", png("v6"), "version 6")
    expect(card(page, "scan/x").locator(".card-seq")).to_have_text("#6")
    expect(position).to_have_text(re.compile(r"^#3 · 3 of 6 · "))
    expect(ahead).to_have_text("3 newer")
    expect(image).to_have_attribute("data-seq", "3")
    expect(focus.locator("[data-focus=description]")).to_have_text("version 3")
    assert loaded == [4, 3]

    page.keyboard.press("ArrowRight")
    expect(image).to_have_attribute("data-seq", "4")
    expect(position).to_have_text(re.compile(r"^#4 · 4 of 6 · "))

    # The slider jumps straight to a version; dragging through others loads only the last.
    slider = focus.locator("[data-scrub=slider]")
    slider.evaluate(
        """(s) => {
            for (const v of ['3', '2', '1']) {
                s.value = v;
                s.dispatchEvent(new Event('input', { bubbles: true }));
            }
            s.dispatchEvent(new Event('change', { bubbles: true }));
        }"""
    )
    expect(image).to_have_attribute("data-seq", "1")
    expect(focus.locator("[data-scrub=older]")).to_be_disabled()
    assert 2 not in loaded

    live.click()
    expect(image).to_have_attribute("data-seq", "6")
    expect(position).to_have_text(re.compile(r"^#6 · 6 of 6 · "))
    expect(ahead).to_have_text("newest")
    expect(live).to_be_disabled()
    expect(focus.locator("[data-focus=description]")).to_have_text("version 6")
    assert 6 not in loaded, "the newest is the card's image: no request"

    # At the newest, the view follows live updates again.
    service.publisher.publish("scan/x", "exp", png("v7"), "version 7")
    expect(image).to_have_attribute("data-seq", "7")
    expect(position).to_have_text(re.compile(r"^#7 · 7 of 7 · "))

    # Arrow keys step back and forth; Esc still goes back to the grid.
    page.keyboard.press("ArrowLeft")
    expect(image).to_have_attribute("data-seq", "6")
    page.keyboard.press("ArrowRight")
    expect(image).to_have_attribute("data-seq", "7")
    expect(live).to_be_disabled()
    page.keyboard.press("Escape")
    expect(focus).to_be_hidden()
    expect(page).to_have_url(service.url)
