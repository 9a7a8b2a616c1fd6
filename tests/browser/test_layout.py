"""Layouts for 50 plots: card size, compact cards, grouping, pins, stable places, phone header."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect
from support import png
from viewer_page import card, expect_grid, open_viewer

ARTIFACTS = Path(__file__).parent.parent / "artifacts"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
SIZES = pytest.mark.parametrize(
    "viewport", [DESKTOP, PHONE], ids=lambda v: "desktop" if v is DESKTOP else "phone"
)
THEMES = pytest.mark.parametrize("scheme", ["dark", "light"])
EXPERIMENTS = ["amo06", "cxif7214", "mfx2525", "xpp3316"]

BOXES = """() => [...document.querySelectorAll('#grid .card-item')]
    .filter((item) => !item.hidden)
    .map((item) => {
        const r = item.getBoundingClientRect();
        return [item.dataset.topic, r.left, r.top + scrollY, r.width, r.height];
    })"""
# The same, of the cards on screen: those a new topic must not move. (Cards off screen load
# their previews when scrolled to, and may then change height: nobody sees that.)
ON_SCREEN = BOXES.replace(
    ".filter((item) => !item.hidden)",
    ".filter((item) => !item.hidden && item.getBoundingClientRect().bottom > 0"
    " && item.getBoundingClientRect().top < innerHeight)",
)


def publish_44(service) -> list[str]:
    """44 topics, 11 in each of 4 experiments, as a beamline's screens would show."""
    topics = []
    for e, experiment in enumerate(EXPERIMENTS):
        for n in range(11):
            topic = f"{experiment}/{['detector', 'laser', 'scan'][n % 3]}/plot{n:02d}"
            service.publisher.publish(topic, experiment, png(f"{e}-{n}", size=(160, 120)))
            topics.append(topic)
    return sorted(topics)


def open_grid(service, new_page, viewport=DESKTOP, scheme="dark", count=44) -> Page:
    return open_viewer(new_page, service.url, count, viewport=viewport, color_scheme=scheme)


def screen(page: Page, name: str) -> None:
    """What one screen shows (the automatic screenshots are of the whole page)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"layout-{name}.png")


def tools(page: Page) -> None:
    """On a phone, unfold the header's tools."""
    toggle = page.locator("#tools-toggle")
    if toggle.is_visible() and toggle.get_attribute("aria-expanded") == "false":
        toggle.click()


@THEMES
def test_compact_small_cards_fit_44_topics_in_two_screens(service, new_page, scheme):
    publish_44(service)
    page = open_grid(service, new_page, scheme=scheme)
    height = "document.scrollingElement.scrollHeight"
    assert page.evaluate(height) > 3 * DESKTOP["height"]  # medium cards: many screens

    page.select_option("#card-size", "s")
    page.locator("#compact").click()
    expect(page.locator("#compact")).to_have_attribute("aria-pressed", "true")
    expect(card(page, "amo06/detector/plot00").locator(".card-description")).to_be_hidden()
    expect(card(page, "amo06/detector/plot00").locator(".card-seq")).to_be_visible()
    assert page.evaluate(height) <= 2 * DESKTOP["height"]
    screen(page, f"desktop-compact-small-{scheme}")
    columns = page.evaluate(
        "new Set([...document.querySelectorAll('#grid .card-item')]"
        ".map((i) => i.getBoundingClientRect().left)).size"
    )
    assert columns >= 7

    # Remembered by this browser.
    page.reload()
    expect_grid(page, 44)
    expect(page.locator("#card-size")).to_have_value("s")
    expect(page.locator("#compact")).to_have_attribute("aria-pressed", "true")
    assert page.evaluate(height) <= 2 * DESKTOP["height"]

    page.select_option("#card-size", "l")
    page.locator("#compact").click()
    widths = page.locator("#grid .card-item").evaluate_all(
        "items => items.map((i) => i.getBoundingClientRect().width)"
    )
    assert min(widths) >= 34 * 16


@SIZES
@THEMES
def test_grouping_shows_one_section_per_experiment(service, new_page, viewport, scheme):
    topics = publish_44(service)
    page = open_grid(service, new_page, viewport, scheme)
    expect(page.locator("#grid .group:visible")).to_have_count(1)
    expect(page.locator("#grid .group-title:visible")).to_have_count(0)  # one plain list

    tools(page)
    page.locator("#group").click()
    expect(page.locator("#group")).to_have_attribute("aria-pressed", "true")
    groups = page.locator("#grid .group")
    expect(groups).to_have_count(4)
    expect(page.locator("#grid .group-name")).to_have_text(EXPERIMENTS)
    expect(page.locator("#grid .group-count")).to_have_text(["11"] * 4)
    for index, experiment in enumerate(EXPERIMENTS):
        names = groups.nth(index).locator(".card-topic").all_text_contents()
        assert names == [t for t in topics if t.startswith(experiment)]
    # Each list is named by its heading.
    assert (
        groups.nth(1)
        .locator("ul")
        .evaluate("ul => document.getElementById(ul.getAttribute('aria-labelledby')).textContent")
        == "cxif721411"
    )

    # The search narrows the groups; a group with nothing to show is hidden.
    page.fill("#query", "amo06 laser")
    expect(page.locator("#grid .group:visible")).to_have_count(1)
    expect(page.locator("#grid .group-count:visible")).to_have_text(["4"])
    page.fill("#query", "")
    expect(page.locator("#grid .group:visible")).to_have_count(4)


def test_pins_come_first_survive_a_reload_and_the_url_wins(service, new_page):
    publish_44(service)
    page = open_grid(service, new_page)
    pinned = "xpp3316/scan/plot08"
    item = page.locator(f'#grid .card-item[data-topic="{pinned}"]')
    pin = item.locator("button.card-pin")
    expect(pin).to_have_attribute("aria-pressed", "false")
    expect(pin).to_have_accessible_name(f"Pin {pinned}")
    item.hover()
    pin.click()
    expect(pin).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#grid .card-topic").first).to_have_text(pinned)
    expect(page.locator("#grid .group-name")).to_have_text(["Pinned", "Topics"])
    assert parse_qs(urlsplit(page.url).query) == {"pin": [pinned]}
    # Card links keep the pins, so a topic opened in a new tab comes back to the same grid.
    assert "pin=xpp3316/scan/plot08" in card(page, "amo06/detector/plot00").get_attribute("href")

    # localStorage: a bare URL in this browser gets the pins back (and shows them).
    page.goto(service.url)
    expect_grid(page, 44)
    expect(page.locator("#grid .card-topic").first).to_have_text(pinned)
    expect(page).to_have_url(re.compile(r"\?pin=xpp3316/scan/plot08$"))

    # A link naming pins wins over this browser's, and is remembered.
    other = "amo06/laser/plot01"
    page.goto(f"{service.url}?pin={other}")
    expect_grid(page, 44)
    expect(page.locator("#grid .card-pinned .card-topic")).to_have_text([other])
    page.goto(service.url)
    expect_grid(page, 44)
    expect(page.locator("#grid .card-pinned .card-topic")).to_have_text([other])

    # Grouped, pins still come first; unpinning puts the card back in its place.
    page.locator("#group").click()
    expect(page.locator("#grid .group-name")).to_have_text(["Pinned", *EXPERIMENTS])
    card_item = page.locator(f'#grid .card-item[data-topic="{other}"]')
    card_item.hover()
    card_item.locator("button.card-pin").click()
    expect(page.locator("#grid .group-name")).to_have_text(EXPERIMENTS)
    expect(page).to_have_url(service.url)


@SIZES
@THEMES
def test_a_new_topic_moves_no_card_until_asked(service, new_page, viewport, scheme):
    topics = publish_44(service)
    page = open_grid(service, new_page, viewport, scheme)
    tools(page)
    page.locator("#group").click()
    if viewport is PHONE:
        page.locator("#tools-toggle").click()
    page.evaluate("window.scrollTo(0, 0)")
    pinned = "mfx2525/laser/plot04"
    item = page.locator(f'#grid .card-item[data-topic="{pinned}"]')
    item.hover()
    item.locator("button.card-pin").click()
    expect(page.locator("#grid .card-topic").first).to_have_text(pinned)
    before = page.evaluate(ON_SCREEN)
    assert before

    # Sorts first by name and belongs to the first experiment: it would shift every card.
    service.publisher.publish("amo06/aaa/new", "amo06", png("new", size=(160, 120)), "new one")
    chip = page.locator("#new-topics")
    expect(chip).to_have_text("1 new topic — sort in")
    # Off screen at the end: its preview loads only once scrolled to (boxes are page coordinates).
    expect(page.locator('#grid .card-item[data-topic="amo06/aaa/new"]')).to_have_count(1)
    after = page.evaluate(BOXES)
    assert [box for box in after if box in before] == before, "a card on screen moved"
    assert after[-1][0] == "amo06/aaa/new"
    expect(page.locator("#grid .group-name").last).to_have_text("New since you opened the page")
    screen(page, f"new-topic-{scheme}-{'phone' if viewport is PHONE else 'desktop'}")

    # Updates of existing topics move nothing either.
    service.publisher.publish(topics[0], topics[0].split("/")[0], png("again", size=(160, 120)))
    card(page, topics[0]).scroll_into_view_if_needed()  # off screen: its preview loads now
    expect(card(page, topics[0]).locator(".card-seq")).to_have_text("#2")
    assert [box for box in page.evaluate(BOXES) if box in before] == before

    chip.click()
    expect(chip).to_be_hidden()
    amo = page.locator('#grid .group[data-group="group:amo06"] .card-topic')
    expect(amo.first).to_have_text("amo06/aaa/new")
    expect(page.locator("#grid .group-name")).to_have_text(["Pinned", *EXPERIMENTS])


@THEMES
def test_phone_header_stays_small(service, new_page, scheme):
    publish_44(service)
    page = open_grid(service, new_page, PHONE, scheme)
    bar = page.locator("#bar")

    def height() -> float:
        box = bar.bounding_box()
        assert box is not None
        return box["height"]

    assert height() <= 70
    screen(page, f"phone-header-{scheme}")
    expect(page.locator("#query")).to_be_hidden()
    toggle = page.locator("#tools-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#query")).to_be_visible()
    expect(page.locator("#card-size")).to_be_visible()
    expect(page.locator("#group")).to_be_visible()
    screen(page, f"phone-tools-open-{scheme}")
    toggle.click()
    expect(page.locator("#query")).to_be_hidden()
    assert height() <= 70
    # The new-topics chip floats: the header does not grow.
    service.publisher.publish("zzz/new", "amo06", png("n", size=(160, 120)))
    expect(page.locator("#new-topics")).to_be_visible()
    assert height() <= 70
    # Scrolled down, the header is still there and still small.
    page.evaluate("window.scrollTo(0, document.scrollingElement.scrollHeight)")
    box = bar.bounding_box()
    assert box is not None and box["y"] == 0 and box["height"] <= 70
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
