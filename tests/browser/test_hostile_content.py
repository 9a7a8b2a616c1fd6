"""A hash in Redis that claims to hold HTML or script never runs on the service's origin."""

from __future__ import annotations

import hashlib

import redis
from conftest import ARTIFACTS
from playwright.sync_api import expect
from support import png, run_service

SCRIPT = b"<script>window.pwned = true; document.title = 'pwned'; fetch('/api/topics')</script>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="window.pwned = true"></svg>'
HOSTILE = {
    "xss/html": (SCRIPT, "text/html"),
    "xss/javascript": (b"window.pwned = true", "text/javascript"),
    "xss/svg": (SVG, "image/svg+xml"),
}


def test_stored_html_script_or_svg_is_never_served(settings, new_page, page_errors):
    page_errors.allow(r"status of 409")  # Chromium logs the refused navigations,
    page_errors.allow(r"status of 404")  # its request for /favicon.ico,
    page_errors.allow(r"Applying inline style violates")  # and its image/JSON viewer's styles
    page_errors.allow(r"CSP violation: style-src-attr blocked inline")
    raw = redis.Redis.from_url(settings.redis_url)
    lying_png = png("real")
    for topic, (data, content_type) in {**HOSTILE, "xss/png": (lying_png, "text/html")}.items():
        raw.hset(
            settings.keys.topic(topic),
            mapping={
                "experiment": "e",
                "description": "written by hand",
                "pngimage": data,
                "content_type": content_type,
                "updated_at": "1764079268.125",
                "digest": hashlib.sha256(data).hexdigest(),
                "seq": 1,
            },
        )
    raw.close()
    with run_service(settings) as service:
        page = new_page()
        for topic in HOSTILE:
            response = page.goto(f"{service.url}api/topics/{topic}/image")
            assert response is not None and response.status == 409
            assert response.headers["content-type"] == "application/json"
            assert page.evaluate("window.pwned") is None
            assert page.title() != "pwned"
        response = page.goto(f"{service.url}api/topics/xss/png/image")
        assert response is not None and response.status == 200
        assert response.headers["content-type"] == "image/png"
        assert page.evaluate("window.pwned") is None

        viewer = new_page()
        viewer.goto(service.url)
        expect(viewer.locator("#grid a.card")).to_have_count(1)
        expect(viewer.locator('#grid a.card[data-topic="xss/png"]')).to_be_visible()
        viewer.screenshot(path=ARTIFACTS / "hostile_content_viewer.png")
        viewer.close()  # before the service stops, or it would log its reconnection attempts
