"""The viewer in a real Chromium against the real service and Redis."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, expect
from support import png
from viewer_page import card

XSS = "<img src=x onerror=window.__pwned=1><script>window.__pwned=1</script>"


def query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def test_existing_topics_are_shown_on_load(service, page):
    service.publisher.publish("cxi/detector/sum", "cxi01", png("a"), "sum of all panels")
    service.publisher.publish("amo/spectrum", "amo02", png("b"), "")
    page.goto(service.url)

    expect(page.locator("#status-text")).to_have_text("Live")
    expect(page.locator("#grid a.card")).to_have_count(2)
    detector = card(page, "cxi/detector/sum")
    expect(detector.locator(".card-topic")).to_have_text("cxi/detector/sum")
    expect(detector.locator(".card-experiment")).to_have_text("cxi01")
    expect(detector.locator(".card-description")).to_have_text("sum of all panels")
    expect(detector.locator(".card-seq")).to_have_text("#1")
    expect(detector.locator(".card-updated")).to_have_text(
        re.compile(r"^updated (just now|\d+ s ago)$")
    )
    image = detector.locator("img.card-img")
    expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    expect(image).to_have_attribute("alt", re.compile("cxi/detector/sum"))
    assert image.evaluate("img => img.complete && img.naturalWidth") == 64
    # Sorted by name, so a wall screen keeps its layout.
    expect(page.locator("#grid .card-topic")).to_have_text(["amo/spectrum", "cxi/detector/sum"])
    expect(page.locator("#count")).to_have_text("2 topics")
    expect(page.locator("#empty")).to_be_hidden()


def test_publish_appears_without_reload_and_old_blobs_are_released(service, page):
    page.goto(service.url)
    expect(page.locator("#status-text")).to_have_text("Live")
    expect(page.locator("#empty")).to_contain_text("No live topics yet")
    page.evaluate("window.__sameDocument = true")

    service.publisher.publish("xpp/scan", "xpp03", png("1"), "first")
    scan = card(page, "xpp/scan")
    expect(scan.locator(".card-seq")).to_have_text("#1")
    first_url = scan.locator("img").get_attribute("src")

    for n in range(2, 6):
        service.publisher.publish("xpp/scan", "xpp03", png(str(n)), f"update {n}")
    expect(scan.locator(".card-seq")).to_have_text("#5")
    expect(scan.locator(".card-description")).to_have_text("update 5")
    last_url = scan.locator("img").get_attribute("src")
    assert last_url != first_url
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"

    urls = page.evaluate("window.__objectUrls")
    assert first_url in urls["revoked"]
    live = set(urls["created"]) - set(urls["revoked"])
    assert live == {last_url}, "every replaced or dropped image's object URL must be revoked"


def test_updated_time_ticks(service, page):
    service.publisher.publish("mfx/laser", "mfx04", png(), "")
    page.goto(service.url)
    updated = card(page, "mfx/laser").locator(".card-updated")
    expect(updated).to_have_text(re.compile(r"^updated (just now|[0-9]+ s ago)$"))
    first = updated.text_content()
    assert first is not None
    # Nothing is published meanwhile: the text changes by itself, to a later number of seconds.
    expect(updated).not_to_have_text(first)
    expect(updated).to_have_text(re.compile(r"^updated [1-9][0-9]* s ago$"))


def test_filter_by_experiment_is_in_the_url_and_restored(service, page, new_page):
    service.publisher.publish("cxi/a", "cxi01", png("a"))
    service.publisher.publish("cxi/b", "cxi01", png("b"))
    service.publisher.publish("amo/c", "amo02", png("c"))
    page.goto(service.url)
    expect(page.locator("#grid a.card")).to_have_count(3)
    expect(page.locator("#experiment option")).to_have_text(["All experiments", "amo02", "cxi01"])

    page.select_option("#experiment", "cxi01")
    expect(page.locator("#grid a.card:visible")).to_have_count(2)
    expect(card(page, "amo/c")).to_be_hidden()
    expect(page).to_have_url(re.compile(r"\?experiment=cxi01$"))
    expect(page.locator("#count")).to_have_text("2 of 3 topics")

    # A fresh viewer of the link asks the server for that experiment only.
    sockets = []
    other = new_page()
    other.on("websocket", lambda ws: sockets.append(ws))
    frames: list[str] = []
    other.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(f)))
    other.goto(page.url)
    expect(other.locator("#experiment")).to_have_value("cxi01")
    expect(other.locator("#grid .card-topic")).to_have_text(["cxi/a", "cxi/b"])
    assert "experiment=cxi01" in sockets[0].url
    # Still lists every experiment (from api/topics), so the user can switch.
    expect(other.locator("#experiment option")).to_have_text(["All experiments", "amo02", "cxi01"])

    # Publishes of other experiments are not even sent to the filtered viewer.
    service.publisher.publish("amo/c", "amo02", png("c2"))
    service.publisher.publish("cxi/a", "cxi01", png("a2"))
    expect(card(other, "cxi/a").locator(".card-seq")).to_have_text("#2")
    headers = [json.loads(f) for f in frames if isinstance(f, str)]
    assert not [h for h in headers if h.get("topic") == "amo/c"]

    other.select_option("#experiment", "")
    expect(other).to_have_url(service.url)
    expect(other.locator("#grid a.card:visible")).to_have_count(3)
    expect(card(other, "amo/c").locator(".card-seq")).to_have_text("#2")
    # The first viewer kept amo/c hidden while filtered; widening brings its newer image.
    page.select_option("#experiment", "")
    expect(card(page, "amo/c")).to_be_visible()
    expect(card(page, "amo/c").locator(".card-seq")).to_have_text("#2")


def test_filter_by_text_is_case_insensitive_in_the_url_and_restored(service, page, new_page):
    service.publisher.publish("cxi/detector/sum", "cxi01", png("a"))
    service.publisher.publish("cxi/Detector/max", "cxi01", png("b"))
    service.publisher.publish("cxi/laser", "cxi01", png("c"))
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(f)))
    page.goto(service.url)
    expect(page.locator("#grid a.card")).to_have_count(3)

    page.fill("#query", "DETECT")
    expect(page).to_have_url(re.compile(r"\?q=DETECT$"))
    expect(page.locator("#grid .card-topic:visible")).to_have_text(
        ["cxi/Detector/max", "cxi/detector/sum"]
    )
    # Words are matched in the page (they reach descriptions too): nothing new is asked for.
    assert sent == []

    other = new_page()
    sockets = []
    other.on("websocket", lambda ws: sockets.append(ws))
    other.goto(page.url)
    expect(other.locator("#query")).to_have_value("DETECT")
    expect(other.locator("#grid .card-topic:visible")).to_have_text(
        ["cxi/Detector/max", "cxi/detector/sum"]
    )
    assert "topic=" not in sockets[0].url

    # Shell pattern characters typed by the user are literal text.
    page.fill("#query", "*")
    expect(page.locator("#empty")).to_have_text("No topic matches this filter.")
    page.fill("#query", "")
    expect(page.locator("#grid a.card:visible")).to_have_count(3)
    expect(page).to_have_url(service.url)


def test_focus_view_opens_on_click_and_closes_on_escape(service, page):
    topic = "cxi/back det/sum#1"  # a space and a '#' in a segment, '/' between them
    data = png("focus", size=(80, 60))
    service.publisher.publish(topic, "cxi01", data, "line one\nline two, the full text")
    service.publisher.publish("cxi/other", "cxi01", png("other"))
    page.goto(service.url)

    card(page, topic).click()
    focus = page.locator("#focus")
    expect(focus).to_be_visible()
    expect(page.locator("#focus-topic")).to_have_text(topic)
    expect(focus.locator("[data-focus=description]")).to_have_text(
        "line one\nline two, the full text"
    )
    expect(focus.locator("[data-focus=experiment]")).to_have_text("cxi01")
    expect(focus.locator("[data-focus=seq]")).to_have_text("1")
    expect(focus.locator("img.focus-img")).to_have_attribute(
        "alt", re.compile("cxi/back det/sum#1")
    )
    assert query(page) == {"topic": [topic]}
    assert "topic=cxi/back%20det/sum%231" in page.url  # slashes kept readable

    download = focus.locator("[data-focus=download]")
    href = download.evaluate("a => a.href")
    assert href == service.url + "api/topics/cxi/back%20det/sum%231/history/1/image"
    assert page.request.get(href).body() == data

    # Live updates reach the focus view too.
    service.publisher.publish(topic, "cxi01", png("focus 2"), "changed")
    expect(focus.locator("[data-focus=seq]")).to_have_text("2")
    expect(focus.locator("[data-focus=description]")).to_have_text("changed")

    page.keyboard.press("Escape")
    expect(focus).to_be_hidden()
    expect(page).to_have_url(service.url)
    expect(card(page, topic)).to_be_focused()

    # Keyboard only: Enter on a focused card opens it; the browser's Back closes it.
    card(page, "cxi/other").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#focus-topic")).to_have_text("cxi/other")
    page.go_back()
    expect(focus).to_be_hidden()
    expect(page).to_have_url(service.url)


def test_focus_link_opens_directly(service, page):
    service.publisher.publish("sxr/yag/screen", "sxr05", png("yag"), "the YAG screen")
    page.goto(service.url + "?topic=sxr/yag/screen")
    expect(page.locator("#focus")).to_be_visible()
    expect(page.locator("#focus-topic")).to_have_text("sxr/yag/screen")
    expect(page.locator("[data-focus=description]")).to_have_text("the YAG screen")
    expect(page.locator("#focus img.focus-img")).to_have_js_property("complete", True)
    page.keyboard.press("Escape")
    expect(page.locator("#focus")).to_be_hidden()
    expect(card(page, "sxr/yag/screen")).to_be_visible()
    expect(page).to_have_url(service.url)


def test_network_text_is_never_html(service, page):
    topic = "xss/<b>bold</b>"
    experiment = "<i>exp</i>"
    service.publisher.publish(topic, experiment, png(), XSS)
    page.goto(service.url)

    item = card(page, topic)
    expect(item.locator(".card-description")).to_have_text(XSS)
    expect(item.locator(".card-topic")).to_have_text(topic)
    expect(item.locator(".card-experiment")).to_have_text(experiment)
    expect(page.locator("#experiment option").nth(1)).to_have_text(experiment)
    item.click()
    expect(page.locator("[data-focus=description]")).to_have_text(XSS)
    expect(page.locator("#focus-topic")).to_have_text(topic)
    # Only the viewer's own images exist: none was parsed from the description.
    assert page.locator("img:not(.card-img):not(.focus-img)").count() == 0
    assert page.locator("b, i, script:not([src])").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_expired_topic_is_removed_and_the_focus_view_says_so(service, page):
    from elog_stream import Publisher

    service.publisher.publish("keep/me", "exp", png("keep"))
    page.goto(service.url)
    expect(card(page, "keep/me")).to_be_visible()
    with Publisher(service.settings.redis_url, prefix=service.settings.prefix, ttl=2) as short:
        short.publish("short/lived", "exp", png("short"))
    card(page, "short/lived").click()
    notice = page.locator("[data-focus=notice]")
    expect(notice).to_contain_text("expired")
    expect(page.locator("#focus img.focus-img")).to_be_visible()  # the last image stays
    page.keyboard.press("Escape")
    expect(card(page, "short/lived")).to_have_count(0)
    expect(card(page, "keep/me")).to_be_visible()
    expect(page.locator("#count")).to_have_text("1 topic")


def test_pause_holds_updates_until_resumed(service, page):
    service.publisher.publish("det/a", "exp", png("1"))
    page.goto(service.url)
    seq = card(page, "det/a").locator(".card-seq")
    expect(seq).to_have_text("#1")

    pause = page.locator("#pause")
    pause.click()
    expect(pause).to_have_attribute("aria-pressed", "true")
    service.publisher.publish("det/a", "exp", png("2"))
    service.publisher.publish("det/a", "exp", png("3"))
    expect(pause).to_have_text("Resume (1 new)")
    expect(seq).to_have_text("#1")

    pause.click()
    expect(pause).to_have_text("Pause")
    expect(seq).to_have_text("#3")


def test_cards_never_upscale_but_the_focus_view_fits(service, page):
    service.publisher.publish("tiny/plot", "exp", png(size=(40, 30)))
    page.goto(service.url)
    image = card(page, "tiny/plot").locator("img")
    expect(image).to_have_js_property("naturalWidth", 40)
    assert image.evaluate("i => [i.clientWidth, i.clientHeight]") == [40, 30]
    card(page, "tiny/plot").click()
    focused = page.locator("#focus img.focus-img")
    expect(focused).to_have_js_property("naturalWidth", 40)
    # Enlarged to the screen (tests/browser/test_inspect.py measures it); 1:1 on request.
    expect(page.locator("#focus .zoom-stage").first).to_have_attribute("data-mode", "fit")
    page.wait_for_function(
        "document.querySelector('#focus img').getBoundingClientRect().width > 400"
    )


def test_theme_is_dark_unless_the_system_prefers_light(service, new_page):
    def background(page: Page) -> str:
        page.goto(service.url)
        return page.evaluate("getComputedStyle(document.body).backgroundColor")

    assert background(new_page(color_scheme="dark")) == "rgb(14, 17, 22)"
    assert background(new_page(color_scheme="light")) == "rgb(244, 246, 248)"


def test_theme_choice_overrides_the_system_and_is_remembered(service, new_page):
    page = new_page(color_scheme="light")  # what kiosks without a preference report
    page.goto(service.url)
    button = page.locator("#theme")
    expect(button).to_have_text("Theme: Auto")
    body = page.locator("body")
    expect(body).to_have_css("background-color", "rgb(244, 246, 248)")
    button.click()
    expect(button).to_have_text("Theme: Dark")
    expect(body).to_have_css("background-color", "rgb(14, 17, 22)")
    page.reload()
    expect(button).to_have_text("Theme: Dark")
    expect(body).to_have_css("background-color", "rgb(14, 17, 22)")
    button.click()
    expect(button).to_have_text("Theme: Light")
    button.click()
    expect(button).to_have_text("Theme: Auto")
    expect(body).to_have_css("background-color", "rgb(244, 246, 248)")


def test_phone_width_has_one_column(service, new_page):
    for n in range(3):
        service.publisher.publish(f"phone/{n}", "exp", png(str(n), size=(400, 300)))
    page = new_page(viewport={"width": 390, "height": 844})
    page.goto(service.url)
    expect(page.locator("#grid a.card")).to_have_count(3)
    lefts = page.locator("#grid .card-item").evaluate_all(
        "items => items.map(i => Math.round(i.getBoundingClientRect().left))"
    )
    assert len(set(lefts)) == 1
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
