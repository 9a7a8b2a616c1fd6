"""Access control in the browser: the login page, and the viewer sent back to it."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from support import png, run_service
from viewer_page import card

TOKEN = "s3cret-view-token"
# The requests the server refuses once the session is gone are logged by Chromium.
REFUSED = [r"status of 401", r"WebSocket connection to .* failed", r"ERR_CONNECTION_REFUSED"]


@pytest.fixture
def guarded(settings, page_errors):
    # Each test runs its own service, which stops before the page closes.
    for pattern in REFUSED:
        page_errors.allow(pattern)
    return settings.replace(view_token=TOKEN)


def log_in(page: Page, token: str) -> None:
    field = page.locator("#token")
    expect(field).to_be_focused()
    field.fill(token)
    with page.expect_navigation():
        field.press("Enter")


def test_the_viewer_asks_for_the_token_then_shows_live_figures(guarded, publisher, page):
    publisher.publish("secure/a", "exp", png("a1"), "behind a token")
    with run_service(guarded) as service:
        page.goto(service.url)
        expect(page).to_have_url(service.url + "login")
        expect(page.locator("#login-error")).to_be_hidden()
        expect(page.locator("body")).to_have_css("background-color", "rgb(14, 17, 22)")

        log_in(page, "wrong")
        expect(page).to_have_url(service.url + "login?failed=token")
        expect(page.locator("#login-error")).to_have_text("Wrong token")
        expect(page.locator("#token")).to_have_attribute("aria-invalid", "true")

        log_in(page, TOKEN)
        expect(page).to_have_url(service.url)
        expect(page.locator("#status-text")).to_have_text("Live")
        expect(card(page, "secure/a").locator(".card-description")).to_have_text("behind a token")
        publisher.publish("secure/a", "exp", png("a2"), "published after login")
        expect(card(page, "secure/a").locator(".card-seq")).to_have_text("#2")
        expect(card(page, "secure/a").locator(".card-description")).to_have_text(
            "published after login"
        )


def test_too_many_attempts_are_explained(guarded, page):
    with run_service(guarded) as service:
        page.goto(service.url + "login")
        # 5 tries, then 1 per 5 s per address: soon refused, whatever the token (a few spare
        # tries, in case a slow machine takes 5 s for the first six).
        for _ in range(8):
            log_in(page, "wrong")
            if page.url.endswith("failed=rate"):
                break
        expect(page).to_have_url(service.url + "login?failed=rate")
        expect(page.locator("#login-error")).to_have_text("Too many attempts, wait a moment")


def test_a_lost_session_goes_back_to_the_login_page(guarded, publisher, page):
    publisher.publish("secure/a", "exp", png("a1"))
    with run_service(guarded) as service:
        port = service.server.servers[0].sockets[0].getsockname()[1]
        page.goto(service.url)
        log_in(page, TOKEN)
        expect(card(page, "secure/a")).to_be_visible()
        # An API call answered 401 (here: opening a topic fetches its history).
        page.context.clear_cookies()
        card(page, "secure/a").click()
        expect(page).to_have_url(service.url + "login")

        log_in(page, TOKEN)
        expect(card(page, "secure/a")).to_be_visible()
        expect(page.locator("#status-text")).to_have_text("Live")

    # The WebSocket closed with 4401: the service restarted with another token.
    refused: list[str] = []
    page.on("response", lambda response: response.status == 401 and refused.append(response.url))
    with run_service(guarded.replace(view_token="changed-view-token"), port=port) as service:
        expect(page).to_have_url(service.url + "login", timeout=15_000)
        expect(page.locator("#token")).to_be_focused()
    assert refused == [], "no HTTP request was refused: the socket's close code sent it there"


def test_log_out_ends_the_session(guarded, publisher, page):
    publisher.publish("secure/a", "exp", png("a1"))
    with run_service(guarded) as service:
        page.goto(service.url)
        log_in(page, TOKEN)
        expect(card(page, "secure/a")).to_be_visible()
        logout = page.get_by_role("button", name="Log out")
        expect(logout).to_be_visible()
        session = next(c for c in page.context.cookies() if c["name"] == "elog_session")
        with page.expect_navigation():
            logout.click()
        expect(page).to_have_url(service.url + "login")
        # The session is revoked by the service, not only dropped by this browser.
        page.context.add_cookies([session])
        page.goto(service.url)
        expect(page).to_have_url(service.url + "login")


def test_no_log_out_without_access_control(service, page):
    page.goto(service.url)
    expect(page.locator("#status-text")).to_have_text("Live")
    expect(page.locator("#logout")).to_be_hidden()
