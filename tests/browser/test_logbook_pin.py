"""Pin to logbook from the focus view: the version on screen, the exact image, the dialog."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest
from playwright.sync_api import Page, expect
from support import png, run_service
from viewer_page import entries, entry

from elog_stream import Publisher

VIEW_TOKEN = "view-token-for-the-tests"
PUBLISH_TOKEN = "publish-token-for-the-tests"
ENTRY_LINK = re.compile(r"logbook\.html\?experiment=cxi01&entry=(\d+-\d+)$")


def assert_axe_clean(axe, page: Page) -> None:
    violations = axe(page)
    assert violations == [], "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']}\n  " + "\n  ".join(v["nodes"]) for v in violations
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_pin_the_live_image_and_a_kept_version_then_read_them_in_the_logbook(service, page, axe):
    for n in (1, 2, 3):
        service.publisher.publish("scan/x", "cxi01", png(f"v{n}"), f"version {n}")
    page.goto(service.url + "?topic=scan/x")
    focus = page.locator("#focus")
    expect(focus).to_have_attribute("data-pin", "allowed")
    image = focus.locator("img.focus-img")
    expect(image).to_have_attribute("data-seq", "3")
    pin = focus.locator("[data-focus=pin]")
    expect(pin).to_have_text("Pin to logbook")
    pin.click()

    dialog = page.get_by_role("dialog", name="Pin to logbook")
    expect(dialog).to_be_visible()
    what = dialog.locator("[data-entry=what]")
    expect(what).to_have_text("Update #3 of scan/x, as shown, into the logbook of cxi01.")
    name = dialog.get_by_label("Your name")
    expect(name).to_be_focused()  # no login name, none given yet: asked
    assert_axe_clean(axe, page)
    name.fill("Ada Lovelace")
    comment = dialog.get_by_label("Comment")
    comment.fill("first light\nthe beam is on")
    dialog.get_by_role("button", name="Pin", exact=True).click()
    done = dialog.locator("[data-entry=done]")
    expect(done).to_have_text("Pinned #3 to the logbook of cxi01. Open the entry")
    link = done.get_by_role("link", name="Open the entry")
    expect(link).to_be_focused()
    expect(link).to_have_attribute("href", ENTRY_LINK)
    live_id = link.get_attribute("data-entry")
    assert_axe_clean(axe, page)
    page.keyboard.press("Escape")  # closes the dialog only, back to its button
    expect(dialog).to_be_hidden()
    expect(pin).to_be_focused()
    expect(focus).to_be_visible()

    # Scrolled back, the button names the version it pins; a newer image arriving meanwhile
    # changes nothing: the version on screen is pinned.
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(image).to_have_attribute("data-seq", "1")
    expect(pin).to_have_text("Pin #1 to logbook")
    page.keyboard.press("p")
    expect(what).to_have_text("Update #1 of scan/x, as shown, into the logbook of cxi01.")
    expect(dialog.locator("[data-author=known]")).to_be_visible()
    expect(dialog.locator("[data-author=name]")).to_have_text("Ada Lovelace")
    expect(name).to_be_hidden()  # asked once: remembered
    expect(comment).to_be_focused()
    expect(comment).to_have_value("")
    page.keyboard.type("the jet moved here")
    service.publisher.publish("scan/x", "cxi01", png("v4"), "version 4")
    expect(focus.locator("[data-scrub=position]")).to_contain_text("1 of 4")
    dialog.get_by_role("button", name="Pin", exact=True).click()
    expect(done).to_have_text("Pinned #1 to the logbook of cxi01. Open the entry")
    assert page.evaluate("localStorage.getItem('elog-author')") == "Ada Lovelace"

    with page.expect_navigation():
        link.click()
    match = ENTRY_LINK.search(page.url)
    assert match is not None
    kept_id = match[1]
    expect(entries(page)).to_have_count(2)
    expect(entries(page).first).to_have_attribute("data-id", kept_id)  # newest first
    current = page.locator("li.entry[aria-current=true]")
    expect(current).to_have_attribute("data-id", kept_id)
    expect(current).to_be_focused()
    expect(current.locator(".entry-title")).to_have_text("scan/x #1")
    expect(current.locator(".entry-comment")).to_have_text("the jet moved here")
    expect(current.locator(".entry-author")).to_have_text("Ada Lovelace")
    live = entry(page, live_id)
    assert live.locator(".entry-comment").inner_text() == "first light\nthe beam is on"
    for entry_id, version in ((live_id, "v3"), (kept_id, "v1")):
        item = entry(page, entry_id)
        digest = sha256(png(version))
        expect(item.locator(".entry-digest")).to_have_attribute("data-digest", digest)
        full = item.locator(".entry-full").evaluate("a => a.href")
        assert sha256(page.request.get(full).body()) == digest, f"the image of {version}"
        thumbnail = item.locator("img.entry-img")
        thumbnail.scroll_into_view_if_needed()
        expect(thumbnail).to_have_js_property("complete", True)
        assert thumbnail.evaluate("img => img.naturalWidth") > 0


def test_a_version_no_longer_kept_is_refused_with_the_services_reason(
    settings, service, page, page_errors
):
    page_errors.allow(r"status of 404")  # Chromium logs the refused pin
    with Publisher(settings.redis_url, prefix=settings.prefix, history_length=2) as short:
        short.publish("scan/short", "cxi01", png("s1"))
        short.publish("scan/short", "cxi01", png("s2"))
        page.goto(service.url + "?topic=scan/short")
        image = page.locator("#focus img.focus-img")
        expect(image).to_have_attribute("data-seq", "2")
        page.locator("#focus-topic").focus()
        page.keyboard.press("ArrowLeft")
        expect(image).to_have_attribute("data-seq", "1")
        page.keyboard.press("p")
        dialog = page.get_by_role("dialog", name="Pin to logbook")
        expect(dialog.locator("[data-entry=what]")).to_contain_text("Update #1 of scan/short")
        dialog.get_by_label("Your name").fill("Grace")
        dialog.get_by_label("Comment").fill("too late")
        short.publish("scan/short", "cxi01", png("s3"))  # only #2 and #3 are kept now
        expect(page.locator("#focus [data-scrub=position]")).to_contain_text("of 2")
        submit = dialog.get_by_role("button", name="Pin", exact=True)
        submit.click()
        error = dialog.locator("[data-entry=error]")
        expect(error).to_have_text("Not pinned: image 1 of topic 'scan/short' is no longer kept")
        expect(error).to_have_attribute("role", "alert")
        expect(submit).to_be_enabled()  # the dialog stays, to pin another version or cancel
        expect(dialog.locator("[data-entry=done]")).to_be_hidden()
    logbook = httpx.get(service.url + "api/logbook/cxi01").json()
    assert logbook["entries"] == []
    assert page.evaluate("localStorage.getItem('elog-author')") is None  # nothing accepted


def test_the_login_name_signs_and_no_name_is_asked(settings, publisher, new_page, page_errors):
    page_errors.allow(r"status of 401")  # the page before the login
    publisher.publish("scan/x", "cxi01", png("v1"))
    with run_service(settings.replace(view_token=VIEW_TOKEN)) as service:
        page = new_page()
        page.goto(service.url)
        page.locator("#token").fill(VIEW_TOKEN)
        page.locator("#name").fill("Marie Curie")
        with page.expect_navigation():
            page.locator("#token").press("Enter")
        page.goto(service.url + "?topic=scan/x")
        expect(page.locator("#focus img.focus-img")).to_have_attribute("data-seq", "1")
        page.keyboard.press("p")
        dialog = page.get_by_role("dialog", name="Pin to logbook")
        known = dialog.locator("[data-author=known]")
        expect(known).to_be_visible()
        expect(known.locator("[data-author=name]")).to_have_text("Marie Curie")
        expect(dialog.locator("[data-author=change]")).to_be_hidden()  # the login's own name
        expect(dialog.get_by_label("Your name")).to_be_hidden()
        dialog.get_by_label("Comment").fill("signed by the login")
        dialog.get_by_role("button", name="Pin", exact=True).click()
        expect(dialog.locator("[data-entry=done]")).to_contain_text("Pinned #1")
        page.keyboard.press("Escape")
        page.close()  # before the service stops, or it would log its reconnection attempts
        headers = {"Authorization": f"Bearer {VIEW_TOKEN}"}
        listed = httpx.get(service.url + "api/logbook/cxi01", headers=headers)
    assert [e["author"] for e in listed.json()["entries"]] == ["Marie Curie"]


@pytest.mark.parametrize("setting", [{"publish_token": PUBLISH_TOKEN}, {"read_only": True}])
def test_no_pin_action_where_the_service_does_not_allow_pinning(
    settings, publisher, new_page, setting
):
    publisher.publish("scan/x", "cxi01", png("v1"))
    with run_service(settings.replace(**setting)) as service:
        page = new_page()
        page.goto(service.url + "?topic=scan/x")
        expect(page.locator("#focus img.focus-img")).to_have_attribute("data-seq", "1")
        expect(page.locator("#focus")).to_have_attribute("data-pin", "refused")
        expect(page.locator("#focus [data-focus=pin]")).to_be_hidden()
        page.keyboard.press("p")
        expect(page.locator("#pin-dialog")).to_be_hidden()
        page.close()
