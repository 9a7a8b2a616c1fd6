"""The logbook page: live entries, search, retraction, text-only comments, pages, links, axe."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from support import png
from viewer_page import entries, entry, open_logbook

BOOK = "logbook.html?experiment=cxi01"
HOSTILE_COMMENT = '<img src=x onerror="window.__pwned=1"> and <b>bold</b>'


def assert_axe_clean(axe, page: Page) -> None:
    violations = axe(page)
    assert violations == [], "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']}\n  " + "\n  ".join(v["nodes"]) for v in violations
    )


def pin_over_http(service, topic: str, comment: str, author: str = "Bob") -> dict[str, Any]:
    """Pin ``topic``'s current image as another client would: POST api/logbook."""
    response = httpx.post(
        service.url + "api/logbook", json={"topic": topic, "comment": comment, "author": author}
    )
    assert response.status_code == 201, response.text
    return response.json()


def retract_over_http(service, pinned: dict[str, Any], reason: str) -> None:
    response = httpx.post(
        f"{service.url}{pinned['url']}/retract", json={"reason": reason, "author": "Carol"}
    )
    assert response.status_code == 200, response.text


def test_entries_pinned_elsewhere_appear_live(service, new_page):
    service.publisher.publish("scan/x", "cxi01", png("v1"), "the scan")
    service.publisher.publish("other/y", "amo02", png("o1"))
    first = pin_over_http(service, "scan/x", "before the page opened")
    page = open_logbook(new_page, service.url + BOOK, 1)
    page.evaluate("window.__samePage = true")
    expect(page.locator("[data-logbook=status]")).to_have_text("1 entry.")

    service.publisher.publish("scan/x", "cxi01", png("v2"), "the scan")
    second = pin_over_http(service, "scan/x", "pinned by another client", author="Dan")
    expect(entries(page)).to_have_count(2)
    expect(entries(page).first).to_have_attribute("data-id", second["id"])
    newest = entry(page, second["id"])
    expect(newest.locator(".entry-comment")).to_have_text("pinned by another client")
    expect(newest.locator(".entry-author")).to_have_text("Dan")
    expect(newest.locator(".entry-title")).to_have_text("scan/x #2")
    expect(page.locator("[data-logbook=status]")).to_have_text(
        "New entry: Update #2 of scan/x, by Dan."
    )
    # Python pins straight into Redis; another experiment's entry is not this page's.
    pin_over_http(service, "other/y", "another experiment")
    third = service.publisher.pin("scan/x", "pinned from Python", author="Eve")
    expect(entries(page)).to_have_count(3)
    expect(entries(page).first).to_have_attribute("data-id", third.id)
    expect(entries(page).last).to_have_attribute("data-id", first["id"])
    assert page.evaluate("window.__samePage") is True, "the page was not reloaded"

    # The topic link leads to the live topic, the permalink marks the entry without a reload.
    topic = entry(page, first["id"]).locator(".entry-topic")
    expect(topic).to_have_attribute("href", "./?experiment=cxi01&topic=scan/x")
    entry(page, first["id"]).get_by_role("link", name="Link to this entry").click()
    expect(page).to_have_url(f"{service.url}{BOOK}&entry={first['id']}")
    expect(entry(page, first["id"])).to_have_attribute("aria-current", "true")
    expect(entry(page, first["id"])).to_be_focused()
    assert page.evaluate("window.__samePage") is True
    page.go_back()
    expect(page.locator("li.entry[aria-current]")).to_have_count(0)


def test_search_is_the_services_and_live_entries_follow_it(service, new_page):
    service.publisher.publish("scan/x", "cxi01", png("v1"), "detector panel")
    for comment in ("beam alignment done", "vacuum fine", "Beam lost at 14:02"):
        pin_over_http(service, "scan/x", comment)
    page = open_logbook(new_page, service.url + BOOK, 3)
    page.evaluate("window.__samePage = true")
    query = page.get_by_role("searchbox", name="Search")
    query.fill("BEAM")
    query.press("Enter")
    comments = page.locator("[data-logbook=entries] .entry-comment")
    expect(comments).to_have_text(["Beam lost at 14:02", "beam alignment done"])
    expect(page).to_have_url(f"{service.url}{BOOK}&q=BEAM")
    expect(page.locator("[data-logbook=status]")).to_have_text("2 entries match “BEAM”.")
    query.fill("lost beam")  # words in any order
    query.press("Enter")
    expect(comments).to_have_text(["Beam lost at 14:02"])
    query.fill("panel bob")  # the description and the author are searched too
    query.press("Enter")
    expect(comments).to_have_count(3)
    query.fill("beam")
    query.press("Enter")
    expect(comments).to_have_count(2)

    # While searching, a new entry is shown only if the service finds it.
    pin_over_http(service, "scan/x", "vacuum again")
    pin_over_http(service, "scan/x", "beam dump")
    expect(comments).to_have_text(["beam dump", "Beam lost at 14:02", "beam alignment done"])
    query.fill("nothing-like-this")
    query.press("Enter")
    expect(page.locator("[data-logbook=status]")).to_have_text(
        "No entry matches “nothing-like-this”."
    )
    page.go_back()
    expect(page).to_have_url(f"{service.url}{BOOK}&q=beam")
    expect(comments).to_have_count(3)
    assert page.evaluate("window.__samePage") is True


def test_retract_from_the_page_and_from_another_client(service, new_page, axe):
    service.publisher.publish("scan/x", "cxi01", png("v1"))
    first = pin_over_http(service, "scan/x", "a wrong reading")
    second = pin_over_http(service, "scan/x", "also wrong")
    page = open_logbook(new_page, service.url + BOOK, 2)
    expect(page.locator("#logbook-view")).to_have_attribute("data-pin", "allowed")
    item = entry(page, first["id"])
    item.get_by_role("button", name="Retract Update #1 of scan/x").click()
    dialog = page.get_by_role("dialog", name="Retract entry")
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-entry=what]")).to_contain_text("pinned by Bob")
    name = dialog.get_by_label("Your name")
    expect(name).to_be_focused()
    name.fill("Ada")
    dialog.get_by_label("Reason").fill("the detector was off")
    assert_axe_clean(axe, page)
    dialog.get_by_role("button", name="Retract", exact=True).click()
    expect(dialog).to_be_hidden()

    note = item.locator(".entry-retraction")
    expect(note).to_have_text(
        re.compile(r"^Retracted by Ada on \d{4}-\d\d-\d\d [\d:]{8}: the detector was off$")
    )
    expect(item).to_have_class(re.compile(r"\bentry-retracted\b"))
    expect(item).to_be_focused()
    expect(item.locator(".entry-comment")).to_have_text("a wrong reading")  # kept, struck
    assert "line-through" in item.locator(".entry-comment").evaluate(
        "c => getComputedStyle(c).textDecorationLine"
    )
    expect(item.get_by_role("button", name=re.compile("^Retract"))).to_have_count(0)
    assert page.evaluate("localStorage.getItem('elog-author')") == "Ada"

    retract_over_http(service, second, "duplicate")
    expect(entry(page, second["id"]).locator(".entry-retraction")).to_contain_text(
        "Retracted by Carol"
    )
    expect(entries(page)).to_have_count(2)  # nothing is removed
    assert_axe_clean(axe, page)


def test_comments_are_text_never_html(service, new_page):
    service.publisher.publish("scan/x", "cxi01", png("v1"), "<i>described</i>")
    before = pin_over_http(service, "scan/x", HOSTILE_COMMENT, author="<b>Mallory</b>")
    page = open_logbook(new_page, service.url + BOOK, 1)
    after = pin_over_http(service, "scan/x", "<b>bold</b> <script>window.__pwned=2</script>")
    expect(entries(page)).to_have_count(2)
    comments = page.locator("[data-logbook=entries] .entry-comment")
    expect(comments).to_have_text(
        ["<b>bold</b> <script>window.__pwned=2</script>", HOSTILE_COMMENT]
    )
    expect(entry(page, before["id"]).locator(".entry-author")).to_have_text("<b>Mallory</b>")
    expect(entry(page, before["id"]).locator(".entry-description")).to_have_text("<i>described</i>")
    newest = entry(page, after["id"]).locator(".entry-comment")
    assert newest.evaluate("c => c.childElementCount") == 0
    body = page.locator("[data-logbook=entries] .entry-body")
    expect(body.locator("b, i, script")).to_have_count(0)
    expect(page.locator("[data-logbook=entries] img:not(.entry-img)")).to_have_count(0)
    assert page.evaluate("window.__pwned") is None

    # Also in the pin dialog's answer and a linked entry.
    page.goto(f"{service.url}{BOOK}&entry={before['id']}")
    expect(entry(page, before["id"])).to_have_attribute("aria-current", "true")
    expect(entry(page, before["id"]).locator(".entry-comment")).to_have_text(HOSTILE_COMMENT)
    assert page.evaluate("window.__pwned") is None


def test_older_pages_and_a_link_to_an_entry_not_on_the_first(service, new_page, page_errors):
    page_errors.allow(r"status of 404")  # Chromium logs the answer for an unknown entry
    service.publisher.publish("scan/x", "cxi01", png("v1"))
    pinned = [service.publisher.pin("scan/x", f"note {n}", author="Bob") for n in range(53)]
    oldest = pinned[0].id
    page = new_page()
    page.goto(f"{service.url}{BOOK}&entry={oldest}")
    linked = page.locator("[data-logbook=linked]")
    expect(linked).to_be_visible()
    shown = linked.locator("li.entry")
    expect(shown).to_have_attribute("data-id", oldest)
    expect(shown).to_have_attribute("aria-current", "true")
    expect(shown).to_be_focused()
    expect(entries(page)).to_have_count(50)  # one page
    expect(page.locator("[data-logbook=status]")).to_have_text("50 entries (older ones below).")
    older = page.get_by_role("button", name="Older entries")
    older.click()
    expect(entries(page)).to_have_count(53)
    expect(entries(page).last.locator(".entry-comment")).to_have_text("note 0")
    expect(older).to_be_hidden()
    expect(linked).to_be_hidden()  # now in the list, marked there
    expect(entry(page, oldest)).to_have_attribute("aria-current", "true")
    ids = entries(page).evaluate_all("items => items.map((i) => i.dataset.id)")
    assert ids == [p.id for p in reversed(pinned)]

    page.goto(f"{service.url}{BOOK}&entry=999-0")
    expect(page.locator("[data-logbook=status]")).to_have_text(
        "Entry 999-0 is not in the logbook of cxi01."
    )


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_logbooks_are_found_from_the_viewer_and_axe_finds_nothing(
    service, new_page, axe, page_errors, scheme
):
    service.publisher.publish("scan/x", "cxi01", png("v1"))
    service.publisher.publish("other/y", "amo02", png("o1"))
    pin_over_http(service, "scan/x", "one")
    pin_over_http(service, "scan/x", "two")
    retracted = pin_over_http(service, "other/y", "three")
    retract_over_http(service, retracted, "wrong experiment")

    page = new_page(color_scheme=scheme)
    page.goto(service.url)
    expect(page.locator("#status-text")).to_have_text("Live")
    page.get_by_role("button", name="Group").click()
    group_link = page.get_by_role("link", name="Logbook of cxi01")
    expect(group_link).to_have_attribute("href", "logbook.html?experiment=cxi01")
    page.locator("#experiment").select_option("amo02")
    expect(page.locator("#logbook-link")).to_have_attribute("href", "logbook.html?experiment=amo02")
    page.locator("#experiment").select_option("")
    with page.expect_navigation():
        page.locator("#logbook-link").click()
    expect(page).to_have_url(service.url + "logbook.html")
    books = page.locator("[data-logbook=index] li")  # the most recently pinned first
    expect(books).to_have_text(
        [
            re.compile(r"^amo02\s*1 entry · latest pinned \d{4}-\d\d-\d\d [\d:]{8}$"),
            re.compile(r"^cxi01\s*2 entries · latest pinned "),
        ]
    )
    assert_axe_clean(axe, page)
    pin_over_http(service, "scan/x", "three")  # the index follows live
    expect(books).to_have_text([re.compile(r"^cxi01\s*3 entries"), re.compile(r"^amo02")])

    with page.expect_navigation():
        page.get_by_role("link", name="amo02").click()
    expect(page.get_by_role("heading", name="Logbook of amo02")).to_be_visible()
    expect(entries(page)).to_have_count(1)
    expect(page.get_by_role("link", name="Export HTML")).to_have_attribute(
        "href", re.compile(r"/api/logbook/amo02/export\.html$")
    )
    zip_link = page.get_by_role("link", name="Export ZIP")
    with page.expect_download() as download:
        zip_link.click()
    assert download.value.suggested_filename == "logbook-amo02.zip"
    expect(page.locator("#live-link")).to_have_attribute("href", "./?experiment=amo02")
    assert_axe_clean(axe, page)

    phone = new_page(color_scheme=scheme, viewport={"width": 390, "height": 844})
    phone.goto(service.url + BOOK)
    expect(entries(phone)).to_have_count(3)
    assert phone.evaluate("document.documentElement.scrollWidth <= innerWidth")
    assert_axe_clean(axe, phone)
