"""Search in any word order, keyboard shortcuts, axe-core, long names, a missing topic."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from support import png
from viewer_page import card, expect_grid, open_viewer

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
SIZES = pytest.mark.parametrize(
    "viewport", [DESKTOP, PHONE], ids=lambda v: "desktop" if v is DESKTOP else "phone"
)
THEMES = pytest.mark.parametrize("scheme", ["dark", "light"])
LONG_TOPIC = "cxif7214/" + "very-long-camera-segment-name/" * 4 + "frame"
LONG_EXPERIMENT = "experiment-with-a-name-far-longer-than-any-card-is-wide-2026"


def publish_set(service) -> None:
    publisher = service.publisher
    publisher.publish("cxif7214/detector/sum", "cxif7214", png("sum"), "sum of all panels")
    publisher.publish("cxif7214/detector/max", "cxif7214", png("max"), "brightest pixel")
    publisher.publish("cxif7214/laser/power", "cxif7214", png("laser"), "laser power meter")
    publisher.publish("amo06/spectrum", "amo06", png("spec"), "electron time of flight")
    publisher.publish(LONG_TOPIC, LONG_EXPERIMENT, png("long"), "a long name")


def open_grid(service, new_page, viewport=DESKTOP, scheme="dark", count=5) -> Page:
    return open_viewer(new_page, service.url, count, viewport=viewport, color_scheme=scheme)


def assert_axe_clean(axe, page: Page) -> None:
    violations = axe(page)
    assert violations == [], "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']}\n  " + "\n  ".join(v["nodes"]) for v in violations
    )


@SIZES
def test_search_finds_words_in_any_order_in_topic_experiment_and_description(
    service, new_page, viewport
):
    publish_set(service)
    page = open_grid(service, new_page, viewport)
    shown = page.locator("#grid .card-item:visible .card-topic")

    page.keyboard.press("/")  # unfolds the phone's tools too
    query = page.locator("#query")
    expect(query).to_be_focused()
    query.fill("sum detector")
    expect(shown).to_have_text(["cxif7214/detector/sum"])
    expect(page.locator("#count")).to_have_text("1 of 5 topics")
    query.fill("PANELS")  # a description word, any case
    expect(shown).to_have_text(["cxif7214/detector/sum"])
    query.fill("amo06 flight")  # experiment and description
    expect(shown).to_have_text(["amo06/spectrum"])
    query.fill("cxif7214 detector")
    expect(shown).to_have_text(["cxif7214/detector/max", "cxif7214/detector/sum"])
    query.fill("detector nothing-like-this")
    expect(page.locator("#empty")).to_have_text("No topic matches this filter.")

    # The search is in the URL and a new description is searched as it arrives.
    query.fill("meter")
    expect(page).to_have_url(service.url + "?q=meter")
    expect(shown).to_have_text(["cxif7214/laser/power"])
    service.publisher.publish("amo06/spectrum", "amo06", png("spec2"), "now a power meter too")
    expect(shown).to_have_text(["amo06/spectrum", "cxif7214/laser/power"])


@SIZES
@THEMES
def test_shortcuts_dialog_traps_focus_and_closes_on_escape(
    service, new_page, axe, viewport, scheme
):
    publish_set(service)
    page = open_grid(service, new_page, viewport, scheme)
    first = page.locator("#grid a.card").first
    first.focus()
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    close = dialog.get_by_role("button", name="Close")
    expect(close).to_be_focused()
    expect(dialog).to_contain_text("Move between cards")
    for key in ["Tab", "Tab", "Shift+Tab"]:
        page.keyboard.press(key)
        assert page.evaluate(
            "document.getElementById('shortcuts').contains(document.activeElement)"
        )
    # "/" does not reach the search behind the dialog.
    page.keyboard.press("/")
    expect(page.locator("#query")).not_to_be_focused()
    assert_axe_clean(axe, page)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(first).to_be_focused()
    expect(page.locator("#focus")).to_be_hidden()

    # Also from the header's button (phones have no "?" key to spare).
    if viewport is PHONE:
        page.locator("#tools-toggle").click()
    page.locator("#shortcuts-button").click()
    expect(dialog).to_be_visible()
    close.click()
    expect(dialog).to_be_hidden()

    # In a topic: "?" opens it above the focus view; its Esc closes only the list.
    first.click()
    expect(page.locator("#focus")).to_be_visible()
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#focus")).to_be_visible()


def test_arrow_keys_follow_the_grid_and_enter_opens(service, new_page):
    for n in range(12):
        service.publisher.publish(f"grid/t{n:02d}", "exp", png(str(n), size=(160, 120)))
    page = open_grid(service, new_page, count=12)
    links = page.locator("#grid a.card")
    boxes = links.evaluate_all(
        "ls => ls.map((l) => { const r = l.getBoundingClientRect(); return [r.left, r.top]; })"
    )
    columns = len({left for left, _ in boxes})
    assert 2 <= columns < 12

    def focused() -> str:
        return page.evaluate("document.activeElement.dataset.topic")

    links.nth(0).focus()
    page.keyboard.press("ArrowLeft")  # an edge: stays
    assert focused() == "grid/t00"
    page.keyboard.press("ArrowRight")
    assert focused() == "grid/t01"
    page.keyboard.press("ArrowDown")  # the card below, in the next row
    assert focused() == f"grid/t{1 + columns:02d}"
    page.keyboard.press("ArrowUp")
    assert focused() == "grid/t01"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")  # top row: stays
    assert focused() == "grid/t00"
    for _ in range(columns):
        page.keyboard.press("ArrowRight")  # wraps from the row's end to the next row
    assert focused() == f"grid/t{columns:02d}"
    # Hidden cards are skipped.
    page.fill("#query", "t0")
    expect(page.locator("#grid .card-item:visible")).to_have_count(10)
    page.locator("#grid a.card").nth(9).focus()
    page.keyboard.press("ArrowRight")
    assert focused() == "grid/t09"

    page.keyboard.press("Enter")
    expect(page.locator("#focus-topic")).to_have_text("grid/t09")
    # In the focus view the arrows are the history's: the grid's stay out of the way.
    page.keyboard.press("ArrowDown")
    expect(page.locator("#focus")).to_be_visible()


@SIZES
@THEMES
def test_axe_finds_nothing_on_the_grid_focus_view_and_login(
    service, new_page, axe, viewport, scheme
):
    publish_set(service)
    page = open_grid(service, new_page, viewport, scheme)
    long = page.locator(f'#grid .card-item[data-topic="{LONG_TOPIC}"]')
    long.hover()
    long.locator("button.card-pin").click()  # a pinned section and headings
    expect(page.locator("#grid .group-name").first).to_have_text("Pinned")
    assert_axe_clean(axe, page)

    if viewport is PHONE:
        page.locator("#tools-toggle").click()
    page.locator("#compact").click()
    page.locator("#group").click()
    expect(page.locator("#grid .group-name")).to_have_text(["Pinned", "amo06", "cxif7214"])
    assert_axe_clean(axe, page)

    card(page, "cxif7214/detector/sum").click()
    expect(page.locator("#focus img.focus-img")).to_be_visible()
    assert_axe_clean(axe, page)

    # The check itself works: the card links' old label (not their visible text) is caught.
    page.keyboard.press("Escape")
    expect(page.locator("#focus")).to_be_hidden()
    page.evaluate(
        "document.querySelector('#grid a.card').setAttribute('aria-label', 'Figure, experiment')"
    )
    assert "label-content-name-mismatch" in {v["id"] for v in axe(page)}

    login = new_page(viewport=viewport, color_scheme=scheme)
    login.goto(service.url + "login")
    expect(login.locator("#token")).to_be_visible()
    assert_axe_clean(axe, login)


@SIZES
def test_long_names_are_ellipsised_and_the_update_number_stays(service, new_page, viewport):
    publish_set(service)
    for n in range(2, 13):
        service.publisher.publish(LONG_TOPIC, LONG_EXPERIMENT, png(f"long {n}"), "a long name")
    page = open_grid(service, new_page, viewport)
    long = card(page, LONG_TOPIC)
    long.scroll_into_view_if_needed()  # its preview, and so its metadata, loads once on screen
    expect(long.locator(".card-seq")).to_have_text("#12")
    title = long.locator(".card-topic")
    experiment = long.locator(".card-experiment")
    expect(title).to_have_attribute("title", LONG_TOPIC)
    expect(experiment).to_have_attribute("title", LONG_EXPERIMENT)
    for name in (title, experiment):
        assert name.evaluate("e => e.scrollWidth > e.clientWidth"), "not cut"
        expect(name).to_have_css("text-overflow", "ellipsis")
    # The number is whole and inside the card.
    inside = long.evaluate(
        """card => {
            const c = card.getBoundingClientRect();
            const s = card.querySelector('.card-seq');
            const r = s.getBoundingClientRect();
            return r.width > 0 && r.left >= c.left && r.right <= c.right
                && s.scrollWidth <= s.clientWidth + 1;
        }"""
    )
    assert inside
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    # Keyboard focus shows the full name.
    long.focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowRight")  # the last card
    expect(long).to_be_focused()
    assert title.evaluate("e => e.scrollWidth <= e.clientWidth")


@SIZES
@THEMES
def test_a_missing_topic_says_not_live(service, new_page, page_errors, axe, viewport, scheme):
    page_errors.allow(r"status of 404")  # the topic and its history, asked for by the link
    publish_set(service)
    page = new_page(viewport=viewport, color_scheme=scheme)
    page.goto(service.url + "?topic=cxif7214/no/such/plot")
    focus = page.locator("#focus")
    expect(focus).to_be_visible()
    expect(page.locator("#focus-topic")).to_have_text("cxif7214/no/such/plot")
    notice = focus.locator("[data-focus=notice]")
    expect(notice).to_contain_text("Not live")
    expect(notice).to_be_visible()
    expect(focus.locator("[data-focus=download]")).to_be_hidden()
    expect(focus.locator(".focus-layout")).to_be_hidden()
    expect(focus.locator("[data-focus=scrub]")).to_be_hidden()
    assert_axe_clean(axe, page)
    page.keyboard.press("Escape")
    expect(focus).to_be_hidden()
    expect_grid(page, 5)

    # A live topic opened next shows its details and download again.
    card(page, "amo06/spectrum").click()
    expect(focus.locator("[data-focus=download]")).to_be_visible()
    expect(notice).to_be_hidden()
    expect(focus.locator("[data-focus=experiment]")).to_have_text("amo06")
