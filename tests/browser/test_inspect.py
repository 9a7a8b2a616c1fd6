"""The focus view as an inspection tool: fit (enlarging), 1:1, wheel/pinch zoom and pan, full
screen, the collapsible details panel, and comparing two topics or two versions (split, blink),
on a desktop and on a phone (touch), in both themes."""

from __future__ import annotations

import re
import weakref
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from support import png

DESKTOP: dict[str, Any] = {"viewport": {"width": 1440, "height": 900}}
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "has_touch": True,
    "is_mobile": True,
    "device_scale_factor": 3,
}
SCREENS = {
    "desktop-dark": {**DESKTOP, "color_scheme": "dark"},
    "desktop-light": {**DESKTOP, "color_scheme": "light"},
    "phone-dark": {**PHONE, "color_scheme": "dark"},
    "phone-light": {**PHONE, "color_scheme": "light"},
}
ALL = pytest.mark.parametrize("screen", list(SCREENS))
TWO = pytest.mark.parametrize("screen", ["desktop-dark", "phone-light"])

# The geometry of one side of the focus view: the stage (the box the image is shown in, inside
# its border), the image's rendered box, and what zoom.js says of it.
GEOMETRY = """(pane) => {
  const stage = document.querySelector(`#focus [data-pane="${pane}"] .zoom-stage`);
  const img = stage.querySelector('img');
  const s = stage.getBoundingClientRect();
  const i = img ? img.getBoundingClientRect() : { x: 0, y: 0, width: 0, height: 0 };
  return {
    stage: { x: s.x + stage.clientLeft, y: s.y + stage.clientTop,
             w: stage.clientWidth, h: stage.clientHeight },
    img: { x: i.x, y: i.y, w: i.width, h: i.height },
    natural: img ? [img.naturalWidth, img.naturalHeight] : [0, 0],
    scale: Number(stage.dataset.scale), mode: stage.dataset.mode,
    pixelated: img ? img.classList.contains('pixelated') : false,
  };
}"""

# Fitted: the whole image inside the stage, touching two opposite sides of it.
FITS = f"""(pane) => {{
  const g = ({GEOMETRY})(pane);
  if (g.mode !== 'fit' || !g.img.w) return false;
  const inside = g.img.x >= g.stage.x - 1 && g.img.y >= g.stage.y - 1 &&
    g.img.x + g.img.w <= g.stage.x + g.stage.w + 1 &&
    g.img.y + g.img.h <= g.stage.y + g.stage.h + 1;
  const fills = Math.abs(g.img.w - g.stage.w) <= 1 || Math.abs(g.img.h - g.stage.h) <= 1;
  return inside && fills;
}}"""


def open_page(new_page, screen: str) -> Page:
    return new_page(**SCREENS[screen])


def geometry(page: Page, pane: str = "a") -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(GEOMETRY, pane)
    return result


def wait_fitted(page: Page, pane: str = "a") -> dict[str, Any]:
    page.wait_for_function(FITS, arg=pane)
    return geometry(page, pane)


def wait_scale(page: Page, test: str, pane: str = "a") -> None:
    """Wait until the pane's scale (s) satisfies the JS expression `test`."""
    page.wait_for_function(
        f"""(pane) => {{
          const stage = document.querySelector(`#focus [data-pane="${{pane}}"] .zoom-stage`);
          const s = Number(stage.dataset.scale);
          return {test};
        }}""",
        arg=pane,
    )


def image(page: Page, pane: str = "a"):
    return page.locator(f'#focus [data-pane="{pane}"] img')


_SESSIONS: weakref.WeakKeyDictionary[Page, Any] = weakref.WeakKeyDictionary()


def touch(page: Page, kind: str, points: list[tuple[float, float]]) -> None:
    """A real touch event (as from a touch screen) through the DevTools protocol."""
    if page not in _SESSIONS:  # one session per page: it holds the touches in progress
        _SESSIONS[page] = page.context.new_cdp_session(page)
    _SESSIONS[page].send(
        "Input.dispatchTouchEvent",
        {
            "type": kind,
            "touchPoints": [{"x": x, "y": y, "id": n} for n, (x, y) in enumerate(points)],
        },
    )


def pinch(page: Page, cx: float, cy: float, start: float, end: float) -> None:
    """Two fingers about (cx, cy), from `start` apart to `end` apart."""
    touch(page, "touchStart", [(cx - start / 2, cy), (cx + start / 2, cy)])
    for step in range(1, 6):
        half = (start + (end - start) * step / 5) / 2
        touch(page, "touchMove", [(cx - half, cy), (cx + half, cy)])
    touch(page, "touchEnd", [])


def drag(page: Page, screen: str, x: float, y: float, dx: float, dy: float) -> None:
    """Drag from (x, y) by (dx, dy): a finger on the phone, the mouse on the desktop."""
    if screen.startswith("phone"):
        touch(page, "touchStart", [(x, y)])
        for step in range(1, 6):
            touch(page, "touchMove", [(x + dx * step / 5, y + dy * step / 5)])
        touch(page, "touchEnd", [])
    else:
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + dx, y + dy, steps=5)
        page.mouse.up()


@ALL
def test_fit_enlarges_1to1_is_pixel_size_zoom_and_pan(service, new_page, screen):
    for n in (1, 2):  # two versions: the history scrubber is shown, as in the real world
        service.publisher.publish("scan/small", "exp", png(f"small {n}", size=(300, 200)), "")
    page = open_page(new_page, screen)
    page.goto(service.url + "?topic=scan/small")
    expect(image(page)).to_have_attribute("data-seq", "2")
    expect(page.locator("#focus [data-focus=scrub]")).to_be_visible()

    # Fit: enlarged until it touches two sides of the image area, aspect ratio kept.
    fitted = wait_fitted(page)
    assert fitted["natural"] == [300, 200]
    assert fitted["scale"] > 1.2, "a small figure is enlarged to fill the screen"
    assert fitted["img"]["w"] / fitted["img"]["h"] == pytest.approx(1.5, rel=0.01)
    assert fitted["img"]["w"] == pytest.approx(300 * fitted["scale"], abs=1)
    level = page.locator("#focus [data-zoom=level]")
    expect(level).to_have_text(f"{round(fitted['scale'] * 100)}%")
    expect(page.locator("#focus [data-zoom=fit]")).to_have_attribute("aria-pressed", "true")
    if screen.startswith("desktop"):
        # Most of a 1440 px screen, beside the details panel.
        assert fitted["stage"]["w"] > 900 and fitted["img"]["w"] > 900
    else:
        assert fitted["img"]["w"] == pytest.approx(fitted["stage"]["w"], abs=1)
        # The image area reaches the bottom of the screen, but for a strip of the details.
        bottom = fitted["stage"]["y"] + fitted["stage"]["h"]
        assert 844 - 70 < bottom < 844 - 20

    # 1:1 (key 1): natural size, centred.
    page.keyboard.press("1")
    expect(page.locator("#focus [data-pane=a] .zoom-stage")).to_have_attribute(
        "data-mode", "actual"
    )
    actual = geometry(page)
    assert (actual["img"]["w"], actual["img"]["h"]) == (pytest.approx(300), pytest.approx(200))
    assert not actual["pixelated"] or screen.startswith("phone")  # 3 device px on the phone
    expect(level).to_have_text("100%")
    expect(page.locator("#focus [data-zoom=actual]")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("0")
    wait_fitted(page)

    stage = fitted["stage"]
    cx, cy = stage["x"] + stage["w"] / 2, stage["y"] + stage["h"] / 2
    if screen.startswith("desktop"):
        # The wheel zooms about the pointer: the image point under it stays under it.
        px, py = cx + 100, cy + 50
        before = geometry(page)
        u = (px - before["img"]["x"]) / before["scale"]
        page.mouse.move(px, py)
        page.mouse.wheel(0, -400)
        wait_scale(page, f"s > {before['scale'] * 1.5}")
        after = geometry(page)
        assert after["mode"] == "free"
        assert after["img"]["x"] + u * after["scale"] == pytest.approx(px, abs=1.5)
        assert after["pixelated"], "zoomed in: image pixels drawn as crisp squares"
    else:
        # Two fingers spread apart zoom in.
        before = geometry(page)
        pinch(page, cx, cy, 60, 240)
        wait_scale(page, f"s > {before['scale'] * 2.5}")
        after = geometry(page)
        assert after["mode"] == "free"
        # Pinched about the middle: the middle of the image stays there.
        middle = after["img"]["x"] + after["img"]["w"] / 2
        assert middle == pytest.approx(cx, abs=2)
    expect(level).to_have_text(f"{round(after['scale'] * 100)}%")

    # Dragging pans by as much as the pointer moved.
    drag(page, screen, cx, cy, -40, 30)
    page.wait_for_function(
        f"""() => Math.abs(({GEOMETRY})('a').img.x - {after["img"]["x"] - 40}) < 1.5"""
    )
    panned = geometry(page)
    assert panned["img"]["y"] == pytest.approx(after["img"]["y"] + 30, abs=1.5)
    assert panned["scale"] == after["scale"]

    # Double-click: back to fit; again: 1:1.
    page.locator("#focus [data-pane=a] .zoom-stage").dblclick(position={"x": 20, "y": 20})
    wait_fitted(page)
    page.locator("#focus [data-pane=a] .zoom-stage").dblclick()
    expect(level).to_have_text("100%")

    # + and - keys and buttons step the zoom; a new image keeps it (live updates never move it).
    page.keyboard.press("+")
    wait_scale(page, "Math.abs(s - 1.25) < 1e-3")
    page.locator("#focus [data-zoom=in]").click()
    wait_scale(page, "Math.abs(s - 1.5625) < 1e-3")
    page.keyboard.press("-")
    wait_scale(page, "Math.abs(s - 1.25) < 1e-3")
    held = geometry(page)
    service.publisher.publish("scan/small", "exp", png("small 3", size=(300, 200)), "")
    expect(image(page)).to_have_attribute("data-seq", "3")
    assert geometry(page)["img"] == held["img"]


def test_a_wide_figure_uses_the_full_width(service, new_page):
    service.publisher.publish("scan/wide", "exp", png("wide", size=(1920, 200)), "")
    page = open_page(new_page, "desktop-dark")
    page.goto(service.url + "?topic=scan/wide")
    page.locator("#focus [data-focus=details]").click()  # the whole width for the image
    fitted = wait_fitted(page)
    assert fitted["img"]["w"] == pytest.approx(fitted["stage"]["w"], abs=1)
    assert fitted["stage"]["w"] > 1440 - 60
    assert fitted["img"]["h"] == pytest.approx(fitted["img"]["w"] * 200 / 1920, abs=1)


@ALL
def test_full_screen_with_f_and_esc_leaves_it_first(service, new_page, screen):
    service.publisher.publish("scan/full", "exp", png("full", size=(300, 200)), "")
    page = open_page(new_page, screen)
    page.goto(service.url + "?topic=scan/full")
    expect(image(page)).to_have_attribute("data-seq", "1")
    wait_fitted(page)
    button = page.locator("#focus [data-zoom=fullscreen]")
    expect(button).to_have_attribute("aria-pressed", "false")

    page.keyboard.press("f")
    page.wait_for_function("document.fullscreenElement?.dataset.focus === 'media'")
    expect(button).to_have_attribute("aria-pressed", "true")
    expect(button).to_have_text("Exit full screen")
    # The image area is the whole screen now, and the image refits to it.
    full = wait_fitted(page)
    viewport = page.viewport_size
    assert viewport is not None
    assert full["stage"]["w"] > viewport["width"] - 40

    page.keyboard.press("Escape")
    page.wait_for_function("document.fullscreenElement === null")
    expect(button).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#focus")).to_be_visible()  # Esc left full screen, not the view
    wait_fitted(page)
    page.keyboard.press("Escape")
    expect(page.locator("#focus")).to_be_hidden()


@ALL
def test_details_panel_collapses_and_is_remembered(service, new_page, screen):
    service.publisher.publish("scan/details", "exp", png("d", size=(300, 200)), "what it shows")
    page = open_page(new_page, screen)
    page.goto(service.url + "?topic=scan/details")
    info = page.locator("#focus [data-focus=info]")
    toggle = page.locator("#focus [data-focus=details]")
    expect(info).to_contain_text("what it shows")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    shown = wait_fitted(page)
    media = page.locator("#focus [data-focus=media]").bounding_box()
    box = info.bounding_box()
    assert media is not None and box is not None
    if screen.startswith("phone"):
        assert box["y"] >= media["y"] + media["height"] - 1, "on a phone the details go below"
    else:
        assert box["x"] >= media["x"] + media["width"] - 1, "on a desktop, beside the image"

    toggle.click()
    expect(info).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(toggle).to_have_text("Show details")
    if screen.startswith("desktop"):
        page.wait_for_function(f"({GEOMETRY})('a').stage.w > {shown['stage']['w'] + 200}")
        wider = wait_fitted(page)
        assert wider["img"]["w"] > shown["img"]["w"], "the image takes the freed width"

    page.reload()
    expect(image(page)).to_have_attribute("data-seq", "1")
    expect(info).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(info).to_be_visible()
    page.reload()
    expect(info).to_contain_text("what it shows")
    expect(toggle).to_have_attribute("aria-expanded", "true")


@ALL
def test_compare_two_topics_from_the_url_live_and_in_step(service, new_page, screen):
    service.publisher.publish("cam/left", "exp", png("L1", size=(300, 200)), "left")
    service.publisher.publish("cam/right", "exp", png("R1", size=(300, 200), color="darkred"), "")
    service.publisher.publish("cam/other", "exp", png("O1"), "")
    page = open_page(new_page, screen)
    page.goto(service.url + "?topic=cam/left&compare=cam/right")
    panes = page.locator("#focus [data-focus=panes]")
    expect(panes).to_have_attribute("data-layout", "split")
    expect(image(page, "a")).to_have_attribute("data-seq", "1")
    expect(image(page, "b")).to_have_attribute("data-seq", "1")
    expect(image(page, "b")).to_have_attribute("alt", re.compile("cam/right"))
    label_a = page.locator("#focus [data-pane=a] .pane-label")
    label_b = page.locator("#focus [data-pane=b] .pane-label")
    expect(label_a).to_have_text(re.compile(r"^cam/left · #1 · \d\d:\d\d:\d\d · live$"))
    expect(label_b).to_have_text(re.compile(r"^cam/right · #1 · \d\d:\d\d:\d\d · live$"))
    a, b = wait_fitted(page, "a"), wait_fitted(page, "b")
    # Side by side on a landscape screen, one above the other on a portrait one.
    if screen.startswith("desktop"):
        assert b["stage"]["x"] >= a["stage"]["x"] + a["stage"]["w"]
    else:
        assert b["stage"]["y"] >= a["stage"]["y"] + a["stage"]["h"]

    # Both live.
    service.publisher.publish("cam/left", "exp", png("L2", size=(300, 200)), "left")
    service.publisher.publish("cam/right", "exp", png("R2", size=(300, 200), color="darkred"))
    service.publisher.publish("cam/right", "exp", png("R3", size=(300, 200), color="darkred"))
    expect(image(page, "a")).to_have_attribute("data-seq", "2")
    expect(image(page, "b")).to_have_attribute("data-seq", "3")
    expect(label_b).to_have_text(re.compile(r"^cam/right · #3 · "))

    # Zoom and pan in one side: the other follows.
    page.keyboard.press("+")
    page.keyboard.press("+")
    wait_scale(page, f"Math.abs(s - {a['scale'] * 1.5625}) < 1e-3", "a")
    wait_scale(page, f"Math.abs(s - {b['scale'] * 1.5625}) < 1e-3", "b")
    before = geometry(page, "b")
    stage = before["stage"]
    drag(page, screen, stage["x"] + stage["w"] / 2, stage["y"] + stage["h"] / 2, 30, 20)
    page.wait_for_function(
        f"""() => {{
          const g = ({GEOMETRY});
          const a = g('a'), b = g('b');
          const ua = (a.stage.x - a.img.x) / a.img.w, ub = (b.stage.x - b.img.x) / b.img.w;
          return b.img.x > {before["img"]["x"] + 20} && Math.abs(ua - ub) < 0.005;
        }}"""
    )

    # The URL reopens the same comparison; the picker changes it.
    assert page.url.endswith("?topic=cam/left&compare=cam/right")
    pick = page.locator("#focus [data-compare=pick]")
    expect(pick).to_have_value("cam/right")
    scrub = page.locator("#focus [data-scrub=position]")
    expect(scrub).to_have_text(re.compile(r"^#2 · 2 of 2 · "))  # both versions are listed
    pick.focus()
    expect(pick.locator("option")).to_have_text(
        ["No comparison", "cam/other", "cam/right", re.compile(r"^#2 · "), re.compile(r"^#1 · ")]
    )
    pick.select_option("cam/other")
    expect(image(page, "b")).to_have_attribute("alt", re.compile("cam/other"))
    expect(page).to_have_url(re.compile(r"\?topic=cam/left&compare=cam/other$"))
    pick.select_option("")
    expect(panes).to_have_attribute("data-layout", "single")
    expect(page).to_have_url(re.compile(r"\?topic=cam/left$"))


@TWO
def test_compare_two_versions_of_a_topic(service, new_page, page_errors, screen):
    page_errors.allow(r"status of 404")  # the version no longer kept, at the end
    for n in range(1, 6):
        service.publisher.publish("scan/v", "exp", png(f"v{n}", size=(300, 200)), f"version {n}")
    page = open_page(new_page, screen)
    page.goto(service.url + "?topic=scan/v&compare=@2")
    expect(page.locator("#focus [data-focus=panes]")).to_have_attribute("data-layout", "split")
    expect(image(page, "a")).to_have_attribute("data-seq", "5")
    expect(image(page, "b")).to_have_attribute("data-seq", "2")
    expect(image(page, "b")).to_have_js_property("complete", True)
    label_b = page.locator("#focus [data-pane=b] .pane-label")
    expect(label_b).to_have_text(re.compile(r"^scan/v · #2 · \d\d:\d\d:\d\d · pinned version$"))
    expect(page.locator("#focus [data-compare=pick]")).to_have_value("@2")
    same = page.evaluate(
        """async () => {
          const img = document.querySelector('#focus [data-pane=b] img');
          const body = await (await fetch(img.src)).arrayBuffer();
          return [...new Uint8Array(body)];
        }"""
    )
    assert bytes(same) == png("v2", size=(300, 200))

    # Side A follows live; the pinned version stays.
    service.publisher.publish("scan/v", "exp", png("v6", size=(300, 200)), "version 6")
    expect(image(page, "a")).to_have_attribute("data-seq", "6")
    expect(page.locator("#focus [data-pane=a] .pane-label")).to_have_text(
        re.compile(r"^scan/v · #6 · .* · live$")
    )
    expect(image(page, "b")).to_have_attribute("data-seq", "2")

    # Scrubbing side A back works beside it.
    page.keyboard.press("ArrowLeft")
    expect(image(page, "a")).to_have_attribute("data-seq", "5")
    expect(page.locator("#focus [data-pane=a] .pane-label")).to_have_text(
        re.compile(r" · kept version$")
    )

    # A version no longer kept says so.
    page.goto(service.url + "?topic=scan/v&compare=@999")
    expect(label_b).to_have_text("Update #999 of scan/v is no longer kept")


@ALL
def test_blink_alternates_and_b_steps(service, new_page, screen):
    service.publisher.publish("scan/b", "exp", png("one", size=(300, 200)), "")
    service.publisher.publish("scan/b", "exp", png("two", size=(300, 200)), "")
    page = open_page(new_page, screen)
    page.goto(service.url + "?topic=scan/b&compare=@1&blink=1")
    panes = page.locator("#focus [data-focus=panes]")
    button = page.locator("#focus [data-compare=blink]")
    expect(panes).to_have_attribute("data-layout", "blink")
    expect(button).to_have_attribute("aria-pressed", "true")
    expect(image(page, "b")).to_have_attribute("data-seq", "1")
    expect(image(page, "a")).to_have_attribute("data-seq", "2")
    # Both in the same place; they take turns.
    assert geometry(page, "a")["stage"] == geometry(page, "b")["stage"]
    expect(panes).to_have_attribute("data-blinking", "true")
    expect(panes).to_have_attribute("data-shown", "b")
    expect(panes).to_have_attribute("data-shown", "a")
    expect(image(page, "b")).not_to_be_visible()
    expect(panes).to_have_attribute("data-shown", "b")
    expect(image(page, "b")).to_be_visible()
    expect(image(page, "a")).not_to_be_visible()
    assert (
        page.evaluate("import(new URL('js/compare.js', location.href)).then((m) => m.BLINK_MS)")
        == 500
    )

    # B holds it and steps one side at a time.
    page.keyboard.press("b")
    expect(panes).to_have_attribute("data-blinking", "false")
    shown = panes.get_attribute("data-shown")
    page.keyboard.press("b")
    expect(panes).not_to_have_attribute("data-shown", shown or "")
    page.keyboard.press("b")
    expect(panes).to_have_attribute("data-shown", shown or "")
    expect(button).to_have_text("Blink (held)")

    # The button: blinking again, then side by side.
    button.click()
    expect(panes).to_have_attribute("data-blinking", "true")
    button.click()
    expect(panes).to_have_attribute("data-layout", "split")
    expect(page).to_have_url(re.compile(r"\?topic=scan/b&compare=@1$"))
    expect(image(page, "a")).to_be_visible()
    expect(image(page, "b")).to_be_visible()
    button.click()
    expect(page).to_have_url(re.compile(r"\?topic=scan/b&compare=@1&blink=1$"))
