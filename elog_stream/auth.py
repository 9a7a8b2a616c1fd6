"""Access control: every route declares the access it needs; a request is identified once.

Everything is open by default (a laptop needs none of it); each setting closes one part:

- ``view_token``: viewing (API reads, images, the viewer's files, the WebSocket, the API docs)
  needs it as ``Authorization: Bearer <token>``, or a browser session from ``POST /login``.
- ``publish_token``: publishing over HTTP needs it as a Bearer header (it also grants viewing).
  Without a publish token, publishing needs whatever viewing needs, except that a browser
  session never grants publishing.
- ``pin_token``: grants viewing and pinning to the logbook (which the publish scope also
  grants); a browser session made with a token that may pin may pin too.
- ``read_only``: publishing and pinning over HTTP are refused to everyone.
- ``allowed_origins``: browser WebSockets, and browser requests that pin or publish, from
  other origins than the page's own are refused (cross-site WebSocket hijacking, cross-site
  request forgery: a plain-text POST needs no CORS preflight); these extra origins are also
  allowed.

Routes declare their needs with ``Requires(Access.VIEW)`` (a FastAPI dependency), the viewer's
static files through ``ViewerFiles``; docs/protocol.md has the table, and a test checks every
route of the app against it. A missing credential is 401, an insufficient one 403.

Tokens are compared in constant time and never logged. Sessions are signed with a key derived
from all the tokens and expire after ``session_max_age``; logging out revokes the session in
this process (sessions.py). The login and logout routes are in login.py.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, WebSocket, WebSocketException
from fastapi.staticfiles import StaticFiles
from pydantic import SecretStr
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from .config import Settings
from .ratelimit import RateLimiter
from .sessions import Session, Sessions

COOKIE = "elog_session"
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403

# The viewer's files that the login page needs; every other file needs viewing.
PUBLIC_FILES = frozenset({"/style.css", "/favicon.svg", "/js/login.js", "/js/theme.js"})
# The viewer's pages (the live figures, the logbook): the unidentified go to the login page.
PAGES = frozenset({"/", "/index.html", "/logbook.html"})

_SCOPE_KEY = "elog.identity"


class Access(StrEnum):
    """What a route needs."""

    PUBLIC = "public"
    VIEW = "view"
    PIN = "pin"  # to the logbook: pin and retract entries
    PUBLISH = "publish"


class Credential(StrEnum):
    """How a request identified itself."""

    NONE = "none"  # no token, no session
    INVALID = "invalid"  # a Bearer token that is not one of ours
    VIEW_TOKEN = "view-token"
    PUBLISH_TOKEN = "publish-token"
    PIN_TOKEN = "pin-token"
    SESSION = "session"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is, as far as access goes: its credential and what it grants."""

    credential: Credential
    grants: frozenset[Access]

    @property
    def rate_key(self) -> str | None:
        """The rate-limit key of a request with a valid token (else limit by address)."""
        if self.credential in (
            Credential.VIEW_TOKEN,
            Credential.PUBLISH_TOKEN,
            Credential.PIN_TOKEN,
        ):
            return f"token:{self.credential}"
        return None


Denial = tuple[int, str]  # HTTP status, reason
_TOKENS = (Credential.VIEW_TOKEN, Credential.PUBLISH_TOKEN, Credential.PIN_TOKEN)
_WRITES = frozenset({Access.PIN, Access.PUBLISH})  # refused to browsers of other origins
_VERB = {Access.VIEW: "viewing", Access.PIN: "pinning", Access.PUBLISH: "publishing"}


class AccessPolicy:
    """Identifies requests and decides whether they may have an Access.

    One per app (``app.state.access``); it also owns the login failure limiter and the
    sessions.
    """

    def __init__(self, settings: Settings) -> None:
        self._view = _secret(settings.view_token)
        self._publish = _secret(settings.publish_token)
        self._pin = _secret(settings.pin_token)
        self.read_only = settings.read_only
        self.allowed_origins = frozenset(settings.allowed_origins)
        # Signed with all the tokens: a view token alone cannot make a session that may pin.
        secret = "\0".join(token or "" for token in (self._view, self._pin, self._publish))
        self.sessions = Sessions(secret, settings.session_max_age) if self._view else None
        self.login_failures = RateLimiter(rate=0.2, burst=5)

    @property
    def enabled(self) -> bool:
        """Whether any token is configured."""
        return any(token is not None for token in (self._view, self._publish, self._pin))

    def identify(self, connection: HTTPConnection) -> Identity:
        """The request's identity, worked out once per request."""
        identity = connection.scope.get(_SCOPE_KEY)
        if identity is None:
            identity = self._identify(connection)
            connection.scope[_SCOPE_KEY] = identity
        return cast(Identity, identity)

    def _identify(self, connection: HTTPConnection) -> Identity:
        token = bearer(connection)
        if token and self.enabled:
            return self.token_identity(token)
        if self.sessions is not None:
            session = self.session(connection)
            if session is not None:
                pin = (Access.PIN,) if session.may_pin else ()
                return self._identity(Credential.SESSION, Access.VIEW, *pin)
            return self._identity(Credential.NONE)
        anonymous = (Access.PUBLISH,) if self._publish is None else ()
        return self._identity(Credential.NONE, Access.VIEW, *anonymous)

    def token_identity(self, token: str) -> Identity:
        """What the Bearer token ``token`` grants (INVALID when it is none of ours)."""
        if matches(token, self._publish):
            return self._identity(Credential.PUBLISH_TOKEN, Access.VIEW, Access.PUBLISH)
        if matches(token, self._view):
            extra = (Access.PUBLISH,) if self._publish is None else ()
            return self._identity(Credential.VIEW_TOKEN, Access.VIEW, *extra)
        if matches(token, self._pin):
            return self._identity(Credential.PIN_TOKEN, Access.VIEW, Access.PIN)
        return self._identity(Credential.INVALID)

    def _identity(self, credential: Credential, *grants: Access) -> Identity:
        allowed = {Access.PUBLIC, *grants}
        if Access.PUBLISH in allowed:
            allowed.add(Access.PIN)  # whoever may publish may pin
        if self.read_only:
            allowed -= {Access.PUBLISH, Access.PIN}
        return Identity(credential, frozenset(allowed))

    def denial(self, connection: HTTPConnection, access: Access) -> Denial | None:
        """None if the request may have ``access``, else (HTTP status, reason)."""
        identity = self.identify(connection)
        if access in identity.grants:
            return None
        if access in (Access.PUBLISH, Access.PIN) and self.read_only:
            return 403, f"this service is read-only: {_VERB[access]} over HTTP is disabled"
        if identity.credential is Credential.INVALID:
            return 401, "the Bearer token is not valid here"
        if identity.credential is Credential.NONE:
            if access is Access.VIEW:
                return 401, "a view token is required"
            if access is Access.PIN:
                return 401, "a publish or pin token is required (Authorization: Bearer <token>)"
            return 401, "a publish token is required (Authorization: Bearer <token>)"
        return 403, f"this {identity.credential.replace('-', ' ')} does not allow {_VERB[access]}"

    def session(self, connection: HTTPConnection) -> Session | None:
        """The request's valid browser session, if it has one."""
        cookie = connection.cookies.get(COOKIE)
        if cookie is None or self.sessions is None:
            return None
        return self.sessions.parse(cookie)

    def token_valid(self, token: str) -> bool:
        """Whether ``token`` is the view, publish or pin token."""
        return any(matches(token, ours) for ours in (self._view, self._publish, self._pin))

    def origin_allowed(self, connection: HTTPConnection) -> bool:
        origin = connection.headers.get("origin")
        if origin is None:  # not a browser
            return True
        if origin.rstrip("/") in self.allowed_origins:
            return True
        return urlsplit(origin).netloc == connection.headers.get("host")


class Requires:
    """A route's declared access, as a FastAPI dependency: ``Depends(Requires(Access.VIEW))``.

    HTTP requests are refused with 401/403 and a JSON reason; WebSockets are accepted and
    closed with 4401/4403, since a browser cannot read why a handshake was refused.
    """

    def __init__(self, access: Access) -> None:
        self.access = access

    async def __call__(self, connection: HTTPConnection) -> None:
        policy: AccessPolicy = connection.app.state.access
        denial = policy.denial(connection, self.access)
        websocket = connection.scope["type"] == "websocket"
        if (
            denial is None
            and (websocket or self.access in _WRITES)
            and not policy.origin_allowed(connection)
        ):
            what = "WebSocket" if websocket else f"{_VERB[self.access]} from this"
            denial = 403, f"{what} origin not allowed"
        if websocket:
            if denial is not None:
                await cast(WebSocket, connection).accept()
                code = CLOSE_UNAUTHORIZED if denial[0] == 401 else CLOSE_FORBIDDEN
                raise WebSocketException(code, denial[1])
        elif denial is not None:
            headers = {"WWW-Authenticate": "Bearer"} if denial[0] == 401 else None
            raise HTTPException(denial[0], denial[1], headers=headers)


def needs(access: Access) -> list[Any]:
    """``dependencies=`` of a route that needs ``access``."""
    return [Depends(Requires(access))]


def declared_access(dependencies: Sequence[Any]) -> Access | None:
    """The Access a route declared with ``needs``, if any (for checks of the route table)."""
    for dependency in dependencies:
        if isinstance(dependency.dependency, Requires):
            return dependency.dependency.access
    return None


class ViewerFiles(StaticFiles):
    """The viewer's static files: those of PUBLIC_FILES for everyone, the rest need VIEW.

    A visitor without a session who opens the viewer is sent to the login page.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        if scope["type"] == "http" and path not in PUBLIC_FILES:
            policy: AccessPolicy = scope["app"].state.access
            denial = policy.denial(HTTPConnection(scope), Access.VIEW)
            if denial is not None:
                response: Response
                if denial[0] == 401 and path in PAGES:
                    response = RedirectResponse(root_path(scope) + "/login", 303)
                else:
                    headers = {"WWW-Authenticate": "Bearer"} if denial[0] == 401 else None
                    response = JSONResponse({"detail": denial[1]}, denial[0], headers=headers)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def bearer(connection: HTTPConnection) -> str:
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def matches(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def root_path(scope: Scope) -> str:
    return str(scope.get("root_path", ""))
