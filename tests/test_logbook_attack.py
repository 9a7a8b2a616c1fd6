"""The logbook under attack: cross-origin browsers, forged sessions, ids Redis refuses, tampered
entries and keys, and a webhook receiver that never stops answering. Real Redis, real services."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
import redis
from support import DEADLINE, http_server, png, replicas, run_service, wait_for

from elog_stream import Publisher

VIEW_TOKEN = "view-token-for-the-attack"
PIN_TOKEN = "pin-token-for-the-attack"
PUBLISH_TOKEN = "publish-token-for-the-attack"
PIN = {"topic": "atk/a", "comment": "x", "author": "Ada"}


def test_browsers_on_other_origins_cannot_pin_retract_or_publish(settings, publisher) -> None:
    # Open mode (a laptop): anyone may pin, but a page on another site must not do it through
    # the user's browser: a text/plain body needs no CORS preflight, and the logbook is forever.
    publisher.publish("atk/a", "cxi-atk", png("a"))
    allowed = settings.replace(allowed_origins=("https://control.example",))
    with run_service(allowed) as service:
        url = service.url + "api/logbook"
        own = service.url.rstrip("/")
        evil = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
        forged = httpx.post(url, json=PIN, headers=evil)
        assert forged.status_code == 403 and "origin" in forged.json()["detail"]
        assert httpx.post(url, json=PIN, headers={"Origin": "null"}).status_code == 403
        published = httpx.post(
            service.url + "api/topics/atk/b?experiment=cxi-atk", content=png("b"), headers=evil
        )
        assert published.status_code == 403
        for origin in (own, "https://control.example"):
            assert httpx.post(url, json=PIN, headers={"Origin": origin}).status_code == 201
        entry = httpx.post(url, json=PIN).json()  # not a browser: no Origin
        retract = service.url + entry["url"] + "/retract"
        refused = httpx.post(retract, json={"reason": "r", "author": "Eve"}, headers=evil)
        assert refused.status_code == 403
        assert httpx.get(service.url + entry["url"]).json()["retracted"] is None
        # Reading stays open to other origins (an <img> on a dashboard).
        assert httpx.get(service.url + entry["url"], headers=evil).status_code == 200


def _forge(key_material: str, flags: str, name: str) -> str:
    """A session cookie signed the way sessions.py signs, with a key derived from one token."""
    key = hmac.new(key_material.encode(), b"elog-stream session key", "sha256").digest()
    encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    session = f"forgedsessionid.{int(time.time()) + 3600}.{flags}.{encoded}"
    return f"{session}.{hmac.new(key, session.encode(), hashlib.sha256).hexdigest()}"


def test_a_view_token_cannot_forge_a_session_that_pins(settings, publisher) -> None:
    publisher.publish("atk/a", "cxi-atk", png("a"))
    tokens = settings.replace(
        view_token=VIEW_TOKEN, pin_token=PIN_TOKEN, publish_token=PUBLISH_TOKEN
    )
    with run_service(tokens) as service:
        cookie = {"elog_session": _forge(VIEW_TOKEN, "p", "Dr. Ruth")}
        with httpx.Client(base_url=service.url, cookies=cookie) as browser:
            assert browser.post("api/logbook", json=PIN).status_code in (401, 403)
        with httpx.Client(base_url=service.url) as browser:  # a real pin session still pins
            assert browser.post("login", data={"token": PIN_TOKEN}).status_code == 303
            assert browser.post("api/logbook", json=PIN).status_code == 201
            assert browser.get("api/session").json()["grants"] == ["pin", "view"]


def test_entry_ids_redis_refuses_are_422_and_the_first_id_an_empty_page(service, publisher) -> None:
    publisher.publish("atk/a", "cxi-atk", png("a"))
    entry = httpx.post(service.url + "api/logbook", json=PIN).json()
    book = service.url + "api/logbook/cxi-atk"
    for bad in ("18446744073709551616-0", "1-18446744073709551616", "99999999999999999999-0"):
        for response in (
            httpx.get(f"{book}/entries/{bad}"),
            httpx.get(f"{book}/entries/{bad}/image"),
            httpx.post(f"{book}/entries/{bad}/retract", json={"reason": "r", "author": "A"}),
            httpx.get(book, params={"before": bad}),
        ):
            assert response.status_code == 422, (bad, response.text)
    largest = "18446744073709551615-18446744073709551615"
    assert httpx.get(f"{book}/entries/{largest}").status_code == 404
    assert [e["id"] for e in httpx.get(book, params={"before": largest}).json()["entries"]] == [
        entry["id"]
    ]
    for query in ({"before": "0-0"}, {"before": "0-0", "q": "x"}):
        page = httpx.get(book, params=query)
        assert page.status_code == 200 and page.json()["entries"] == [], page.text


def test_exports_refuse_unusable_keys_before_they_start(service, settings, publisher) -> None:
    publisher.publish("atk/a", "cxi-atk", png("a"))
    assert httpx.post(service.url + "api/logbook", json=PIN).status_code == 201
    raw = redis.Redis.from_url(settings.redis_url)
    raw.set(f"{settings.prefix}logbook:{{cxi-atk}}:retracted", "not a hash")
    raw.set(f"{settings.prefix}logbook:{{cxi-wrong}}", "not a stream")
    raw.close()
    for experiment in ("cxi-atk", "cxi-wrong"):
        for kind in ("html", "zip"):
            response = httpx.get(f"{service.url}api/logbook/{experiment}/export.{kind}")
            assert response.status_code == 409, response.text[:200]
            assert "holds a string" in response.json()["detail"]
    assert service.health().status_code == 200


def test_an_image_is_served_as_what_its_bytes_are_whatever_the_entry_says(
    service, settings, publisher
) -> None:
    publisher.publish("atk/a", "cxi-atk", png("a"))
    entry = httpx.post(service.url + "api/logbook", json=PIN).json()
    raw = redis.Redis.from_url(settings.redis_url)
    fields = {k: v for k, v in entry.items() if k not in ("id", "retracted", "url", "image_url")}
    lying = {**{k: str(v) for k, v in fields.items()}, "content_type": "image/jpeg"}
    lie = raw.xadd(f"{settings.prefix}logbook:{{cxi-atk}}", lying).decode()
    raw.close()
    image = httpx.get(f"{service.url}api/logbook/cxi-atk/entries/{lie}/image")
    assert image.status_code == 409 and "image/png" in image.json()["detail"], image.text[:200]
    exported = httpx.get(service.url + "api/logbook/cxi-atk/export.html").text
    assert "data:image/jpeg" not in exported and exported.count("data:image/png") == 1


@pytest.fixture
def endless_receiver() -> Iterator[tuple[str, threading.Event]]:
    """A receiver that accepts (200) and then sends a body that never ends."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(10 * 2**30))
            self.end_headers()
            try:
                while not stop.wait(0.05):
                    self.wfile.write(b"x" * 65536)
            except OSError:  # the service hung up: what it should do
                pass

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Handler) as base:
        try:
            yield f"{base}/inbox", stop
        finally:
            stop.set()


def test_a_webhook_answer_with_an_endless_body_is_not_read(
    redis_url, prefix, endless_receiver
) -> None:
    url, _ = endless_receiver
    with Publisher(redis_url, prefix=prefix) as publisher:
        publisher.publish("atk/a", "cxi-atk", png("a"))
        with replicas([redis_url], prefix, ELOG_LOGBOOK_WEBHOOK=url) as (replica,):
            publisher.pin("atk/a", "first", author="Ada")

            def delivered() -> float:
                return httpx.get(replica.url + "api/stats").json()["webhook_delivered"]

            wait_for(lambda: delivered() >= 1, "the 200 to count as delivered", 2 * DEADLINE)
            publisher.pin("atk/a", "second", author="Ada")
            wait_for(lambda: delivered() >= 2, "the next entry delivered", 2 * DEADLINE)
