"""Optional access control: view and publish tokens, read-only mode, WebSocket origin check.

Everything is off by default (a laptop needs none of it); each setting turns one part on:

Settings (``Settings`` fields, ``ELOG_*`` variables):

- ``view_token``: the API, images, OpenAPI and the WebSocket need it, as
  ``Authorization: Bearer <token>`` or as the session cookie that ``POST /login`` sets.
- ``publish_token``: HTTP publishing needs it as a Bearer header (it also grants viewing).
- ``read_only``: HTTP publishing is refused.
- ``allowed_origins``: browser WebSockets from other origins than the page's own are refused
  (cross-site WebSocket hijacking); these extra origins are also allowed.

Tokens are compared in constant time and never logged; the cookie holds an HMAC of the view
token, not the token.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from starlette.datastructures import Headers
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings, web_directory

COOKIE = "elog_session"
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403

# Reachable without a token: the login page and what it needs, and the health check.
_PUBLIC = (
    "/login",
    "/logout",
    "/healthz",
    "/style.css",
    "/favicon.svg",
    "/js/login.js",
    "/js/theme.js",
)


def token_matches(given: str, expected: str | None) -> bool:
    """Constant-time comparison; never true when no token is expected."""
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def grants_view(settings: Settings, token: str) -> bool:
    """Whether ``token`` is the view token or the publish token (which also grants viewing)."""
    return token_matches(token, settings.view_token) or token_matches(token, settings.publish_token)


def session_value(view_token: str) -> str:
    """The cookie value proving the view token was given (an HMAC, not the token)."""
    return hmac.new(view_token.encode(), b"elog-stream view session", hashlib.sha256).hexdigest()


def bearer(headers: Headers) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class AccessControl:
    """ASGI middleware enforcing an AccessPolicy on HTTP requests and WebSockets."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        headers = Headers(scope=scope)
        denial = None
        if scope["type"] == "websocket" and not self._origin_allowed(headers):
            denial = (CLOSE_FORBIDDEN_ORIGIN, 403, "WebSocket origin not allowed")
        elif scope["type"] == "http" and scope["method"] == "POST" and path.startswith("/api/"):
            denial = self._publish_denial(headers)
        elif not path.startswith(_PUBLIC) and not self._may_view(headers):
            denial = (CLOSE_UNAUTHORIZED, 401, "a view token is required")
        if denial is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await _close_websocket(receive, send, denial[0], denial[2])
        elif path in ("", "/", "/index.html") and denial[1] == 401:
            await RedirectResponse(scope.get("root_path", "") + "/login", 303)(scope, receive, send)
        else:
            extra = {"WWW-Authenticate": "Bearer"} if denial[1] == 401 else {}
            response = JSONResponse({"detail": denial[2]}, denial[1], headers=extra)
            await response(scope, receive, send)

    def _may_view(self, headers: Headers) -> bool:
        settings = self.settings
        if settings.view_token is None:
            return True
        token = bearer(headers)
        if token:
            return grants_view(settings, token)
        cookie = SimpleCookie(headers.get("cookie", "")).get(COOKIE)
        return cookie is not None and hmac.compare_digest(
            cookie.value, session_value(settings.view_token)
        )

    def _publish_denial(self, headers: Headers) -> tuple[int, int, str] | None:
        if self.settings.read_only:
            return (0, 403, "this service is read-only: publishing over HTTP is disabled")
        if self.settings.publish_token is None:
            return None
        if token_matches(bearer(headers), self.settings.publish_token):
            return None
        return (0, 401, "a publish token is required (Authorization: Bearer <token>)")

    def _origin_allowed(self, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is None:  # not a browser
            return True
        if origin.rstrip("/") in self.settings.allowed_origins:
            return True
        return urlsplit(origin).netloc == headers.get("host")


async def _close_websocket(receive: Receive, send: Send, code: int, reason: str) -> None:
    # Accept, then close with a code: a browser cannot read why an HTTP 403 refused it.
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": code, "reason": reason})


router = APIRouter(include_in_schema=False)

_MAX_FORM_BYTES = 4096


@router.get("/login")
async def login_page() -> FileResponse:
    return FileResponse(web_directory() / "login.html")


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the form's token; on success set the session cookie and go to the viewer."""
    service = request.app.state.service
    settings: Settings = service.settings
    root = request.scope.get("root_path", "")
    wait = service.login_limiter.retry_after(_client(request))
    if wait:
        return RedirectResponse(f"{root}/login?failed=rate", 303)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return JSONResponse({"detail": "login form too large"}, 413)
    token = parse_qs(body.decode("utf-8", errors="replace")).get("token", [""])[0]
    if settings.view_token is None:
        return RedirectResponse(f"{root}/", 303)
    if not (
        token_matches(token, settings.view_token) or token_matches(token, settings.publish_token)
    ):
        return RedirectResponse(f"{root}/login?failed=token", 303)
    response = RedirectResponse(f"{root}/", 303)
    response.set_cookie(
        COOKIE,
        session_value(settings.view_token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=f"{root}/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    root = request.scope.get("root_path", "")
    response = RedirectResponse(f"{root}/login", 303)
    response.delete_cookie(COOKIE, path=f"{root}/")
    return response


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
