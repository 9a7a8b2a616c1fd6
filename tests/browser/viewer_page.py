"""What the browser tests look for in the viewer's page."""

from __future__ import annotations

from playwright.sync_api import Locator, Page, expect

# True once every shown card that is on screen has decoded its image: cards off screen load
# their previews only when scrolled into view (web/js/previews.js).
_ON_SCREEN_SHOWN = """() => [...document.querySelectorAll('#grid .card-item')]
  .filter((item) => {
    const box = item.getBoundingClientRect();
    return !item.hidden && box.height > 0 && box.bottom > 0 && box.top < innerHeight;
  })
  .every((item) => item.querySelector('img.card-img')?.complete)"""


def card(page: Page, topic: str) -> Locator:
    """The link of ``topic``'s card."""
    return page.locator(f'#grid a.card[data-topic="{topic}"]')


def expect_grid(page: Page, count: int) -> None:
    """Wait until the grid holds ``count`` cards and those on screen show their images."""
    expect(page.locator("#grid .card-item")).to_have_count(count)
    page.wait_for_function(_ON_SCREEN_SHOWN)


def open_viewer(new_page, url: str, count: int, **options: object) -> Page:
    """A new page (``new_page`` fixture, ``options`` for it) on the viewer at ``url``, live,
    showing ``count`` cards."""
    page = new_page(**options)
    page.goto(url)
    expect(page.locator("#status-text")).to_have_text("Live")
    expect_grid(page, count)
    return page


def entries(page: Page) -> Locator:
    """The entries of the logbook page's list, newest first."""
    return page.locator('[data-logbook="entries"] > li.entry')


def entry(page: Page, entry_id: str) -> Locator:
    """The element of the logbook entry ``entry_id`` in the logbook page's list."""
    return page.locator(f'[data-logbook="entries"] > li.entry[data-id="{entry_id}"]')


def open_logbook(new_page, url: str, count: int, **options: object) -> Page:
    """A new page on the logbook page at ``url``, live, listing ``count`` entries."""
    page = new_page(**options)
    page.goto(url)
    expect(page.locator("#status-text")).to_have_text("Live")
    expect(entries(page)).to_have_count(count)
    return page
